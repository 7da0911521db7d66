"""One `up`, `down` or `down --force` at a time for a project root.

Held from pre-flight until the daemon is registered and serving (or has exited): a
second `up` then finds the first one's daemon and exits 7, and a `down` issued while an
`up` is still starting waits and then stops what it started, instead of saying
"nothing to stop" and letting the stack come up behind it. The detached daemon inherits
the lock's file descriptor and closes it once it serves, so the lock outlives the `up`
process that took it; an flock dies with the last process holding it, so a crash never
leaves the project locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from hippo_contract.flock_wait import flock_within
from hippo_contract.small_file import kind_of
from hippo_tasks.errors import LifecycleBusyError
from hippo_tasks.errors.state_dir import StateDirError
from hippo_tasks.model.textfile import open_regular
from hippo_tasks.registry.store import identity, private_lock, refuse_linked_state_dir

WAIT_S = 300.0


class LifecycleLock:
    def __init__(self, project_root: Path) -> None:
        self.root = project_root
        self.path = project_root / ".hippodrome" / "lifecycle.lock"
        self.fd: int | None = None
        self.waited_for: str | None = None
        """Who held the lock while this one waited for it (`down` (pid N)), if anyone."""
        self.given_up: str | None = None
        """Why acquire went on without the lock (its `give_up`), if it did."""
        self.started = identity(os.getpid())  # when its command was given
        """When this process started (see down_meanwhile)."""

    def acquire(self, what: str, say: Callable[[str], None] = print,
                wait: float = WAIT_S, required: bool = True,
                give_up: Callable[[], str | None] | None = None) -> None:
        """`required=False` (down): where the lock cannot even be created (a read-only
        `.hippodrome`), go on without it; no `up` can run there to race with.
        `give_up`, asked each second of a wait: why to go on without the lock (a
        holder that can never let go of it), or None."""
        refuse_linked_state_dir(self.root)
        try:
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = _open_lock_file(self.path, os.O_RDWR | os.O_CREAT)
            private_lock(fd)
        except OSError as exc:
            if not required:
                say(f"cannot lock {self.path} ({exc.strerror or exc}); going on without it")
                return
            if exc.errno == errno.EINVAL:  # a named pipe there: `up` took it (adv53 F7)
                raise StateDirError(str(self.path), f"{_kind_at(self.path)}, not a file") \
                    from None
            raise StateDirError.from_os(exc, self.path.parent) from None

        def waiting() -> None:
            if self.waited_for is None:
                self.waited_for = self._described(fd)
                say(f"waiting for {self.waited_for} to finish starting or stopping this "
                    "stack")

        deadline = time.monotonic() + wait
        while not flock_within(fd, min(1.0, max(0.0, deadline - time.monotonic())),
                               waiting, poll=0.05):
            why = give_up() if give_up is not None else None
            if why is not None:
                say(f"not waiting for the lock any more: {why}")
                self.given_up = why
                os.close(fd)
                return
            if time.monotonic() >= deadline:
                holder = self._described(fd)
                os.close(fd)
                raise LifecycleBusyError(str(self.root), holder, wait)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"`{what}` (pid {os.getpid()})".encode(), 0)
        self.fd = fd

    @staticmethod
    def _holder(fd: int) -> str:
        with contextlib.suppress(OSError):
            text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            if text:
                return text
        return "another `up` or `down`"

    def _described(self, fd: int) -> str:
        """Who holds the lock: as its text names them once that is a live process, else
        a process of another kind. The text an earlier holder left (`down` (pid N), N
        long gone) was named as the one waited for, while some other program held the
        lock (adv36 f/3)."""
        live = _live_holder(fd)
        if live is not None:
            return live
        return (f"a process that is not Hippodrome's `up` or `down` but holds {self.path} "
                f"(`fuser -v {shlex.quote(str(self.path))}` names it)")

    def down_meanwhile(self) -> bool:
        """A `down` started after this process held the lock before it: an `up` queued
        behind another took the lock after a later `hd down` had stopped the stack and
        said so, and started a fresh stack a second after it (adv52 J/2). The `down`
        came last: it wins. Told by when each process started, not by what happened
        while this one waited: an `up` slow to start on a loaded machine (over a second
        to reach the lock) read the `down`'s mark as already there and started the
        stack all the same."""
        last = last_down_started(self.root)
        # (one of this very process is an earlier task of the same command line:
        # `invoke down up`, the restart idiom, refused its own `up`)
        return self.started is not None and last is not None and \
            last.started >= self.started and last.pid != os.getpid()

    def mark_down(self) -> None:
        """A `down` holding the lock leaves when it started, for the `up`s started
        before it (down_meanwhile); the latest such time is kept."""
        mine = identity(os.getpid())
        if mine is None:
            return
        path = self.root / ".hippodrome" / DOWNS
        with contextlib.suppress(OSError):
            try:
                fd = _open_lock_file(path, os.O_RDWR | os.O_CREAT)
            except OSError as exc:
                # A named pipe, a link, a socket or a folder there (read as no mark):
                # the mark was never left, and an `up` queued behind this `down` started
                # the stack again after it (adv54 F1). Made a file again, by the holder
                # of the lock, the one writer: a folder moved aside (kept, as a corrupt
                # registry is), anything else, which holds nothing, removed.
                if exc.errno not in (errno.EINVAL, errno.ELOOP, errno.EISDIR, errno.ENXIO):
                    raise
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rename(path, path.with_name(f"{DOWNS}.corrupt-{time.time_ns()}"))
                else:
                    os.unlink(path)
                fd = _open_lock_file(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            try:
                last = _started_in(fd)
                kept = last if last is not None and last.started > mine else \
                    DownMark(mine, os.getpid())
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{_boot_id()} {kept.started:.3f} {kept.pid}\n".encode(), 0)
            finally:
                os.close(fd)

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    @contextlib.contextmanager
    def held(self, what: str, say: Callable[[str], None] = print,
             required: bool = True) -> Iterator[LifecycleLock]:
        self.acquire(what, say, required=required)
        try:
            yield self
        finally:
            self.release()


def _open_lock_file(path: Path, flags: int) -> int:
    """The lock or the `downs` file, never through a link and only a regular file (else
    EINVAL): a named pipe put at `lifecycle.lock` held `hd status`, `start` and `logs`
    in their open for ever (adv53 F7)."""
    return open_regular(path, flags, "not a regular file", mode=0o600)


def _kind_at(path: Path) -> str:
    try:
        return kind_of(os.lstat(path).st_mode)
    except OSError:
        return "not a file"


DOWNS = "downs"
"""When the latest `down` to hold the project's lifecycle lock started, in
`.hippodrome/downs`: this boot's id, the start time (identity's seconds), its pid."""


class DownMark(NamedTuple):
    started: float
    pid: int


def last_down_started(root: Path) -> DownMark | None:
    try:
        fd = _open_lock_file(root / ".hippodrome" / DOWNS, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _started_in(fd)
    finally:
        os.close(fd)


def _started_in(fd: int) -> DownMark | None:
    """The mark in an open `downs` file: None for one unreadable, empty or damaged, or
    written in another boot (start times count from boot on Linux: an earlier boot's
    would stop every `up` of this one)."""
    try:
        boot, started_text, pid_text = os.pread(fd, 200, 0).decode("ascii").split()
        started, pid = float(started_text), int(pid_text)
    except (OSError, ValueError):
        return None
    # A time to come (damaged, `inf`) would stop every `up` of this boot, and each
    # `down` keeps the latest: never taken.
    if boot != _boot_id() or not math.isfinite(started) or started > _now() + 1:
        return None
    return DownMark(started, pid)


def _now() -> float:
    """Now, as identity counts: seconds since boot on Linux, else epoch time."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, ValueError, IndexError), \
                open("/proc/uptime", encoding="ascii") as fh:
            return float(fh.read().split()[0])
    return time.time()


def _boot_id() -> str:
    """This boot's id ("-" where there is none: start times are epoch times there)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or "-"
    except OSError:
        return "-"


def release_inherited(fd: int | None) -> Callable[[], None]:
    """For the detached daemon: close the lock `up` handed over, once, when serving."""
    def release() -> None:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    return release


def _live_holder(fd: int, settle: float = 0.2) -> str | None:
    """Who holds the lock, as its text names them, once that names a live process;
    None if it still does not after `settle` s. The holder writes its name just after
    it takes the lock: in between, the text is the previous holder's, so an `up` that
    had just taken it was read as the `down` before it, and not waited for (adv34 v/3);
    a holder that never writes one (another program) is not waited for."""
    deadline = time.monotonic() + settle
    while True:
        text = LifecycleLock._holder(fd)
        pid = text.rpartition("(pid ")[2].rstrip(")")
        if pid.isdigit() and _alive(int(pid)) and _may_hold(fd, int(pid)):
            return text
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _may_hold(fd: int, pid: int) -> bool:
    """Whether `pid` may be the process that took the lock on `fd`'s file: the kernel's
    list of locks (/proc/locks) names the taker. The text naming some live process
    (`up` (pid 1), left by another program) was trusted while `flock` held the lock
    (adv37 t/4). True where the list says nothing of this file (another pid namespace,
    no /proc): the text is all there is. A lock `up` handed to its daemon stays listed
    under `up`'s pid, which the text names."""
    try:
        info = os.fstat(fd)
        key = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            takers = {int(parts[4]) for line in fh
                      if len(parts := line.split()) > 5 and parts[1] == "FLOCK"
                      and parts[5] == key and parts[4].isdigit()}
    except OSError:
        return True
    return not takers or pid in takers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _on_stderr(line: str) -> None:
    """stdout is `hd status --json`'s document, `hd logs`' lines, `hd mcp`'s protocol."""
    print(f"hippodrome | {line}", file=sys.stderr, flush=True)


def wait_for_up(root: Path, say: Callable[[str], None] = _on_stderr,
                wait: float = WAIT_S) -> bool:
    """True once an `up` that holds this project's lifecycle lock has let go of it (its
    daemon serves, or it failed); False at once where no `up` holds it. `hd restart`,
    `status` or `stop` from a second terminal while `hd up` was still starting the stack
    said no daemon ran ("Start the stack with `hd up`") of a stack running a moment
    later, where `down` waited for that `up` (adv32 t's notes). One open and one flock
    where nothing holds it; the file is never made here (a read-only `.hippodrome`)."""
    try:
        fd = _open_lock_file(root / ".hippodrome" / "lifecycle.lock", os.O_RDONLY)
    except OSError:  # none: no `up` ever ran here, or none can lock it (not a file)
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False  # nobody holds it (closing the fd lets go)
        except BlockingIOError:
            pass
        except OSError:
            return False
        holder = _live_holder(fd)
        # A `down` (its stack is going, so "no daemon" is the answer), or this very
        # process (`down` reads the registry while it holds the lock): no wait.
        if holder is None or not holder.startswith("`up`") or \
                f"(pid {os.getpid()})" in holder:
            return False
        if not flock_within(fd, wait, lambda: say(f"waiting for {holder} to finish "
                                                  "starting this stack"), poll=0.05):
            raise LifecycleBusyError(str(root), holder, wait)
        return True
    finally:
        os.close(fd)
