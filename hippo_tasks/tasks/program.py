"""The `hd` command (console script and PEX entry point): the same tasks as `invoke`."""

from __future__ import annotations

import sys

from invoke.program import Program

from hippo_tasks import __version__
from hippo_tasks.tasks import ns
from hippo_tasks.tasks.output import EXIT_PIPE_CLOSED, quiet_stdout


def main() -> None:
    """Run the program; a reader that closed the pipe ends it quietly (`hd --list | head`)."""
    try:
        Program(namespace=ns, version=__version__, name="hd", binary="hd").run()
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
        sys.exit(EXIT_PIPE_CLOSED)
