"""`python -m hippo_tasks ...` is `hd ...`.

The image has one PEX file, services.pex, and runs `hd` as `services.pex -m hippo_tasks`:
hd.pex holds the same dependency set, and a second copy of it was 46 MB of the image.
"""

if __name__ == "__main__":  # a tool that imports every module must not run the CLI
    from hippo_tasks.entry import cli  # as the `hd` script: Ctrl+C, the daemon's seed

    cli()
