"""`python -m hippo_platform.seed.probes --project-root DIR [--full] [--fuzz] ...`: `hd
probes` (probe_pass), imported only under command_exit's guard."""

import sys

from hippo_platform.seed.command_exit import run_module

if __name__ == "__main__":
    sys.exit(run_module("hippo_platform.seed.probe_pass", "probes"))
