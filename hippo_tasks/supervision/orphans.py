"""The orphan guard: a tiny watcher process that ends our children if we die.

A signal handler cannot run after `kill -9`, and PR_SET_PDEATHSIG reaches only direct
children, not `sh -c "python3 app.py"`'s python. So the daemon starts, in a session of
its own, a small process that reads process-group IDs from a pipe. The daemon holds the
only write end; when the daemon dies for any reason the kernel closes it, the guard
reads EOF, and it ends every group it was told about (SIGTERM, then SIGKILL after
GRACE seconds). A clean shutdown says `bye` first, and the guard exits quietly.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import IO

GRACE = 1.0

_GUARD_SOURCE = r"""
import os, signal, sys, time
groups = set()
for line in sys.stdin:
    op, arg = line[:1], line[1:].strip()
    if op == "+":
        groups.add(int(arg))
    elif op == "-":
        groups.discard(int(arg))
    elif op == "b":
        sys.exit(0)

def alive(pg):
    try:
        os.killpg(pg, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False

for pg in groups:
    try:
        os.killpg(pg, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline and any(alive(pg) for pg in groups):
    time.sleep(0.02)
for pg in groups:
    try:
        os.killpg(pg, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
"""


class OrphanGuard:
    def __init__(self, grace: float = GRACE) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _GUARD_SOURCE, str(grace)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        assert self._proc.stdin is not None
        self._pipe: IO[bytes] = self._proc.stdin

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, line: str) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            self._pipe.write(line.encode() + b"\n")
            self._pipe.flush()

    def track(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def close(self) -> None:
        """Clean shutdown: every group is already ended; let the guard go."""
        self._send("b")
        with contextlib.suppress(OSError, ValueError):
            self._pipe.close()
        try:
            self._proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
