"""The detached daemon as a fork of `hd up`, not a new interpreter.

A new interpreter (`python -m hippo_tasks.daemon`) starts Python again and imports
again everything `hd up` has just imported and run to check the stack (the model, the
stack file's parse, the registry, the port checks): ~80 ms before the first service
could start, which every service then waits for. Forked, the daemon starts from that
state. Measured over 8 interleaved rounds of 10 toys: launch -> first spawn 0.285 ->
0.207 s, launch -> every toy answering 1.066 -> 0.986 s; the daemon's PSS grows by
0.8 MB (16.6 -> 17.4 MB), the CLI's own modules it keeps.

`launch.spawn_daemon` forks only where that is safe and cheap: one thread (a fork
copies only the calling one), and no invoke loaded (`invoke up` carries invoke's
megabytes, which the daemon would keep for the stack's whole life); otherwise, and
with HIPPODROME_DAEMON_EXEC=1, it starts the interpreter as before. Both run the same
`daemon.main.main`, with the stack plan `up` read and checked: in memory here, through a
pipe to the new interpreter (launch.py), so the stack file is read once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from hippo_tasks.daemon import keep_openssl_out
from hippo_tasks.daemon.seed import EXEC_ENV
from hippo_tasks.out_of_memory import OUT_OF_MEMORY, is_out_of_memory

if TYPE_CHECKING:
    from hippo_tasks.model.plan import StackPlan
    from hippo_tasks.supervision.ownership import OwnershipSoon

EXIT_CRASHED = 70
"""The child's status when the daemon's main raised instead of returning (EX_SOFTWARE)."""


def fork_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    return (hasattr(os, "fork") and environ.get(EXEC_ENV, "") != "1"
            and "invoke" not in sys.modules and threading.active_count() == 1)


class ForkedDaemon:
    """The parent's handle on the forked daemon: what `up` uses of a Popen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, status unknown
                self.returncode = EXIT_CRASHED
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"daemon pid {self.pid}", timeout or 0.0)
            time.sleep(0.01)
        return code


def open_daemon_log(log: Path) -> int:
    """The daemon's output, opened in `up`, whose output is flushed now: a daemon made
    from it (a fork, or the seed it hands this to) never writes the CLI's buffer too."""
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        for stream in (sys.stdout, sys.stderr):  # never None: `hd` opened /dev/null on a
            stream.flush()  # closed one; a flush that fails is the caller's, as before
    except BaseException:
        os.close(out)
        raise
    return out


def fork_daemon(argv: list[str], cwd: Path, env: dict[str, str], log: Path,
                keep_fd: int | None, tls: bool, plan: StackPlan | None) -> ForkedDaemon:
    """Fork; the child becomes the daemon (`daemon.main.main(argv)`, running `plan`)
    and never returns here. The log is opened before the fork, so a log that cannot be
    opened is the caller's OSError, as with Popen."""
    out = open_daemon_log(log)
    try:
        pid = os.fork()
    except BaseException:
        os.close(out)
        raise
    if pid:
        os.close(out)
        return ForkedDaemon(pid)
    become_daemon(argv, cwd, env, out, keep_fd, tls, plan)  # never returns


def keep_only(keep: set[int], soon: OwnershipSoon | None) -> None:
    """Close every descriptor from 3 up but `keep`, as close_fds with pass_fds does. Not
    while a seed's cgroup is still being made in its thread (`soon`): the descriptors of
    its probe's spawn were closed under it, and the run fell back to process-group mode
    without a word (`[Errno 9] Bad file descriptor`, once in ~60 starts: adv52 J/6)."""
    if soon is not None:
        soon.wait()
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 4096)


def become_daemon(argv: list[str], cwd: Path, env: dict[str, str], out: int,
                  keep_fd: int | None, tls: bool, plan: StackPlan | None,
                  soon: OwnershipSoon | None = None) -> NoReturn:
    """`soon`: the run's cgroup, begun already (a seed, primed with the run's token)."""
    code = EXIT_CRASHED
    try:
        os.setsid()  # as start_new_session: Ctrl+C in the shell of `up` never reaches it
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        # None of these is 0-2: `hd` opens /dev/null on a closed stdio first (program.py).
        keep_only({null, out} | ({keep_fd} if keep_fd is not None else set()), soon)
        os.close(null)
        os.close(out)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        if not tls:  # as daemon/__main__.py
            keep_openssl_out()
        from hippo_tasks.supervision.ownership import OwnershipSoon

        if soon is None:
            soon = OwnershipSoon()  # beside the imports below (its docstring says why)
        from hippo_tasks.daemon.main import main

        code = main(argv, soon, plan)
    except SystemExit as exc:  # as Python's own exit reads it
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 2
    except BaseException as exc:
        if is_out_of_memory(exc):  # `up --detach` shows it as the daemon's output (R/6)
            with contextlib.suppress(OSError, MemoryError):
                print(f"hippodrome: {OUT_OF_MEMORY}", file=sys.stderr)
        else:
            import traceback

            traceback.print_exc()
    finally:
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
        finally:
            os._exit(code)
