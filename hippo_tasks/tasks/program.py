"""The `hd` command (console script and PEX entry point): the same tasks as `invoke`."""

from __future__ import annotations

from invoke.program import Program

from hippo_tasks import __version__
from hippo_tasks.tasks import ns


def main() -> None:
    Program(namespace=ns, version=__version__, name="hd", binary="hd").run()
