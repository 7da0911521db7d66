"""How the stack's commands (`hd seed`, `hd probes`) end when their output or their user
goes away: as every `hd` command does, not with a traceback.

`hd seed > /dev/full` seeded, wrote both files, then printed a traceback ending in
`OSError: [Errno 28]`, exit 1; `hd probes | head -1` a BrokenPipeError traceback; Ctrl+C
a KeyboardInterrupt one (adv28 k/9). The exit codes are hd's: 120 when the output could
not be written (said on stderr), 141 when its reader went away (nothing more said), 130
on Ctrl+C.

The guard covers the program's imports too: a Ctrl+C in the 0.3-0.8 s its modules take
to load printed an import traceback (adv29 n/6), so the entry modules (`seed/__main__`,
`seed/probes`) import nothing but this before it.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Callable


def run(main: Callable[[], int], prog: str, interrupted: str = "") -> int:
    """`main()`'s exit code, or the code and one sentence for the ends above. Started with
    its output closed (`hd seed >&-`), Python has no sys.stdout at all: it writes to
    nowhere, as `hd status >&-` does (adv29 n/4)."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the process's life
    try:
        code = main()
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        _quiet_stdout()
        print(f"{prog}: interrupted (Ctrl+C){interrupted}", file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT, errno.EFBIG):
            raise
        _quiet_stdout()
        print(f"{prog}: the output could not be written: {exc}", file=sys.stderr, flush=True)
        return 120


def run_module(module: str, prog: str, interrupted: str = "") -> int:
    """`run` of `module`'s `main()`, imported under the guard."""
    return run(lambda: importlib.import_module(module).main(), prog, interrupted)


def _quiet_stdout() -> None:
    """What Python would still flush at exit goes nowhere: a second failure there printed
    `Exception ignored ... BrokenPipeError` after the sentence."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
