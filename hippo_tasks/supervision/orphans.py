"""The orphan guard: a tiny watcher process that ends our services if the daemon dies.

A signal handler cannot run after `kill -9`, and PR_SET_PDEATHSIG reaches only direct
children. So the daemon starts, in a session of its own, a small interpreter that runs
scope.py's `guard_main` and blocks reading a pipe whose only write end the daemon
holds. When the daemon dies for any reason the kernel closes it, the guard reads EOF,
and it ends every process of the daemon's run: everything in its cgroups, and every
process carrying its ownership mark (setsid and double-forked children included).
A clean shutdown says `b` (bye) first, and the guard exits quietly.

While it waits, the guard is /bin/sh reading the pipe; only at EOF does it exec the
interpreter that does the work (scope.py's `guard_main`, in a bare `python -I -S`).
A waiting Python cost the stack 4.4 MB PSS for as long as it ran, a waiting sh 0.5 MB;
the ending is the same code as before, started ~20 ms later.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

from hippo_tasks.supervision import scope

GRACE = 1.0
WAIT_THEN_END = ('while IFS= read -r line; do case "$line" in b*) exit 0;; '
                 'a*) set -- "$@" "${line#a }";; esac; done; exec "$@"')
"""sh: `b` on the pipe is a clean shutdown; `a PID TICKS` an orphan the daemon adopted,
kept as one more argument; EOF without `b` execs the Python that ends everything (its
stdin is at EOF already, so it starts ending at once)."""


def _guard_source() -> str:
    """scope.py's own text (from a file or from inside a PEX alike)."""
    spec = importlib.util.find_spec(scope.__name__)
    loader = spec.loader if spec is not None else None
    source = loader.get_source(scope.__name__) if loader is not None and \
        hasattr(loader, "get_source") else None
    if not source:
        raise RuntimeError("cannot read the source of hippo_tasks.supervision.scope")
    return str(source)


def _interpreter() -> str:
    """The real interpreter behind this venv's `python` symlink: the guard execs it only
    when the daemon dies, maybe long after the venv went (hd.pex's venv under PEX_ROOT
    removed, `rm -rf ~/.cache`, a venv recreated), and then `kill -9` of the daemon left
    every service running. `-I -S` and a stdlib-only script need nothing of the venv."""
    real = os.path.realpath(sys.executable)
    return real if os.access(real, os.X_OK) else sys.executable


def _program(source: str) -> tuple[list[str], int | None]:
    """How the guard's Python is given scope.py: as a file it holds open (a memfd, run as
    `/proc/self/fd/N`), so its command line is a few words; its source after `-c` put 14 KB
    into every `ps` line of it (adv30 p's notes), as it still does where there is no
    memfd. (The words and the descriptor to pass and close, if any.)"""
    try:
        fd = os.memfd_create("hippodrome-guard", 0)  # no CLOEXEC: kept through both execs
    except (AttributeError, OSError):
        return ["-c", source], None
    try:
        data = memoryview(source.encode())
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        os.close(fd)
        return ["-c", source], None
    return [f"/proc/self/fd/{fd}"], fd  # /dev/fd may be missing in a bare container


class OrphanGuard:
    def __init__(self, token: str, base: Path | None = None, grace: float = GRACE) -> None:
        """`token`: the mark (prefix) whose processes it ends; `base`: the run's cgroup
        folder, whose every cgroup it ends too (None: marks only)."""
        where = str(base) if base is not None else "-"
        # No environment of the user's: `python -I -S` reads none, and sh needs none to
        # exec an absolute path. A large one (CI tokens, certificates) with the guard's
        # own ~14 KB command line went over ARG_MAX, E2BIG, and `up` said "cannot write
        # /bin/sh" (adv24 c/9). Nor the run's mark: the guard must not end itself.
        env = {"PATH": os.defpath, "LC_ALL": "C"}
        program, fd = _program(_guard_source())
        try:
            self._proc = subprocess.Popen(
                ["/bin/sh", "-c", WAIT_THEN_END, "hippodrome-guard", _interpreter(), "-I",
                 "-S", *program, token, where, str(grace)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                pass_fds=() if fd is None else (fd,),
                env=env,
            )
        finally:
            if fd is not None:
                os.close(fd)
        assert self._proc.stdin is not None
        self._pipe: IO[bytes] = self._proc.stdin

    @property
    def pid(self) -> int:
        return self._proc.pid

    def exited(self) -> bool:
        """Killed or crashed: the daemon then has no one to end its services after it."""
        return self._proc.poll() is not None

    def adopt(self, pid: int, ticks: int) -> None:
        """`pid` (started at `ticks`) is ours to end too: an orphan the daemon adopted as
        a subreaper, which carries no mark and is in no cgroup, so the guard would not
        find it after a kill -9 of the daemon (adv30 p/1)."""
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            self._pipe.write(f"a {pid} {ticks}\n".encode())
            self._pipe.flush()

    @property
    def closing(self) -> bool:
        """`close` has begun: the daemon is done with its guard, and makes no other."""
        return self._pipe.closed

    def close(self, clean: bool = True) -> None:
        """`clean`: every service is already ended; let the guard go. Otherwise close
        the pipe without a word, and wait while the guard ends what is left."""
        if clean:
            with contextlib.suppress(BrokenPipeError, ValueError, OSError):
                self._pipe.write(b"b\n")
                self._pipe.flush()
        with contextlib.suppress(OSError, ValueError):
            self._pipe.close()
        try:
            self._proc.wait(2.0 if clean else GRACE + 10.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
