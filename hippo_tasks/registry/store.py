"""`.hippodrome/registry.json`: who runs what, shared by the daemon and every task.

Written atomically (temp file + rename) under an exclusive file lock, so a reader never
sees half a file and two writers never lose each other's update. A process is ours
only if both its PID and its start time match what we recorded: after a reboot or a
long pause a PID may belong to somebody else, and we never signal a stranger.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hippo_contract.flock_wait import flock_within
from hippo_tasks.errors.state_dir import (
    RegistryLockedError,
    SharedStateDirError,
    StateDirError,
)
from hippo_tasks.model.textfile import (
    Unopenable,
    Unusable,
    open_regular_for_reading,
    private_dir,
    read_small_text,
)
from hippo_tasks.registry.schema import validate
from hippo_tasks.supervision.scope import (
    all_pids,
    daemon_log_folder,
    opened_to_write,
    start_ticks,
)

VERSION = 1
Data = dict[str, Any]


def identity(pid: int) -> float | None:
    """The process's start time, or None when no such process exists.

    On Linux, seconds since boot, read from /proc (start ticks / clock ticks), so
    `hd status` need not import psutil; elsewhere, psutil's epoch time.

    Not the epoch time psutil gives on Linux too: that adds /proc/stat's btime, which
    is the wall clock minus the time since boot, and moves whenever the wall clock is
    stepped (NTP after a resume, a VM restored from a snapshot, a date set by hand).
    After such a step no recorded process matched any more: `hd status` took the
    running daemon for dead and ended its services as leftovers. (A process of an
    earlier boot would have to have the same pid and have started at the same tick.)
    """
    if sys.platform == "linux":
        return _proc_identity(pid)
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _proc_identity(pid: int) -> float | None:
    """When PID started, in seconds since boot; None for a zombie or no such process."""
    ticks = start_ticks(pid) if pid > 0 else None
    return None if ticks is None else ticks / os.sysconf("SC_CLK_TCK")


EPOCH_SHAPED = 1e9
"""A recorded start time this large is epoch time (a registry written before start
times were counted from boot, or by psutil elsewhere), not seconds since boot."""


def boot_time() -> float | None:
    """This boot's wall-clock start (/proc/stat's btime), None off Linux."""
    try:
        with open("/proc/stat", "rb") as fh:
            return next((float(line.split()[1]) for line in fh if line.startswith(b"btime")),
                        None)
    except OSError:
        return None


def is_same_process(pid: int | None, create_time: float | None) -> bool:
    if not pid or create_time is None:
        return False
    now = identity(pid)
    if now is None:
        return False
    if sys.platform == "linux" and create_time >= EPOCH_SHAPED:  # an older registry's
        boot = boot_time()
        if boot is None:
            return False
        now += boot
    return abs(now - create_time) < 0.05


def empty(root: Path) -> Data:
    return {"version": VERSION, "project_root": str(root), "daemon": None, "services": {},
            "failure": None, "resources": []}


def refuse_linked_state_dir(root: Path) -> None:
    """Refuse a `.hippodrome` that is a symbolic link (SharedStateDirError says why):
    one lstat when it is a plain folder. Checked by the registry and the lifecycle lock,
    before either makes anything in it."""
    state = root / ".hippodrome"
    if os.path.islink(state):
        raise SharedStateDirError(str(state), os.path.realpath(state))


def private_lock(fd: int) -> None:
    """Only its owner may open a project's lock files (registry.lock, lifecycle.lock):
    anyone who can read a file can flock it, and another user holding a world-readable
    lifecycle.lock kept every `up`, `down` and command of the owner's waiting 300 s "for
    `up` (pid N)" (adv34 v/4). One made before (0644) is narrowed by its owner."""
    with contextlib.suppress(OSError):
        info = os.fstat(fd)
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)


LOCK_WAIT_S = 5.0
"""How long a command waits for the registry's lock before going on without it."""
_HELD_PAST: set[str] = set()
"""Registry locks a wait in this process gave up on: the next reads and writes try
only briefly. Each waited LOCK_WAIT_S: `up` took 20 s to say "locked ... for 5 s",
and `down` 20 s in silence (adv36 f/4)."""


def registry_locked(lock: str, waited: float) -> str:
    return (f"another process has held the registry's lock {lock} for over {waited:g} s (a "
            f"suspended `hd` or daemon? `fuser -v {shlex.quote(lock)}` names it)")


class Registry:
    def __init__(self, project_root: Path) -> None:
        self.root = project_root
        self.dir = project_root / ".hippodrome"
        self.path = self.dir / "registry.json"
        self.lock_path = self.dir / "registry.lock"
        self.warnings: list[str] = []
        self._swept = False

    def file_key(self) -> tuple[int, int, int] | None:
        """(inode, mtime, size) of registry.json, None without one: it changes whenever
        the file is replaced or written (writes are atomic renames), so a waiter can
        skip reading an unchanged file and the daemon can see another's write."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def state_dir_exists(self) -> bool:
        """Whether `.hippodrome` is there, so a reader or `down` need not make it. A file
        of that name is an error naming it, not "no registry": a stack's state cannot
        be there, and saying "nothing running" would hide why every `up` fails."""
        if self.dir.is_dir():
            self._not_shared()
            return True
        if os.path.lexists(self.dir):
            raise StateDirError(str(self.dir), "Not a directory")
        return False

    def _not_shared(self) -> None:
        refuse_linked_state_dir(self.root)

    @contextlib.contextmanager
    def locked(self, write: bool = True, wait: float = LOCK_WAIT_S) -> Iterator[None]:
        """The registry's file lock. Where `.hippodrome` cannot be written (read-only
        file system, no permission) a reader goes on without it, since no writer can
        exist there either; a writer gets a StateDirError naming the folder. A reader
        where no `.hippodrome` exists makes none (`hd status` in $HOME left one there).

        Held by a process that is stopped (Ctrl+Z, SIGSTOP) mid-write, the lock was
        waited for without end, and `hd down` hung against the very daemon it had to
        end. After `wait` seconds a reader reads without it (a write replaces the file
        whole, by rename, so a reader sees one version or the other) and a writer gets
        a StateDirError; the daemon's own writes wait briefly and are retried."""
        if not write and not self.dir.is_dir():
            yield
            return
        self._not_shared()
        try:
            private_dir(self.dir)  # never the project folder
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            private_lock(fd)
        except OSError as exc:
            if write:
                raise StateDirError.from_os(exc, self.dir) from None
            yield
            return
        key = str(self.lock_path)
        try:
            held = flock_within(fd, min(wait, 0.05) if key in _HELD_PAST else wait)
            if held:
                _HELD_PAST.discard(key)
            elif key not in _HELD_PAST:
                _HELD_PAST.add(key)
                if not write:
                    print(f"hippodrome | {registry_locked(key, wait)}: reading the registry "
                          "without it", file=sys.stderr, flush=True)
            if not held and write:
                raise RegistryLockedError(key, registry_locked(key, LOCK_WAIT_S))
            yield
        finally:
            os.close(fd)  # closing lets go of the lock

    def _read_unlocked(self, move: bool = True) -> Data:
        """`move=False`: a registry that would be moved aside (damaged, another folder's)
        is left where it is, and read as empty."""
        if not self.state_dir_exists():  # a file there is not a corrupt registry to move
            return empty(self.root)
        try:
            raw = read_small_text(self.path)  # a named pipe here would hang every command
        except FileNotFoundError:
            return empty(self.root)
        except Unopenable as exc:  # another user's stack, say: not corrupt, not ours to move
            raise StateDirError.from_os(exc.error, self.path, reading=True) from None
        except (Unusable, UnicodeDecodeError) as exc:
            if move:
                self._move_aside(str(exc))
            return empty(self.root)
        except OSError as exc:
            raise StateDirError.from_os(exc, self.path) from None
        try:
            data = validate(json.loads(raw))
        except (ValueError, RecursionError) as exc:
            # ValueError covers bad UTF-8, bad JSON, over-long integers and Invalid shapes.
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            if move:
                self._move_aside(reason)
            return empty(self.root)
        recorded = data.get("project_root")
        where = _daemon_folder(data, self.root)
        if where is None and isinstance(recorded, str) and \
                not _same_folder(recorded, self.root, data):
            where = recorded
        if where:
            if move:
                self._move_aside("", foreign=where)
            return empty(self.root)
        base = empty(self.root)
        base.update(data)
        return base

    def _move_aside(self, reason: str, foreign: str = "") -> None:
        """Keep an unusable file for a post-mortem and start from an empty registry.
        Nothing in it is acted on: a pid from an unreadable file proves nothing, and
        one from another folder's file (a project copied with `cp -a` while its stack
        ran) names that folder's stack, which a command run here must never stop."""
        kind = "foreign" if foreign else "corrupt"
        stamp = int(time.time())
        aside = self.path.with_name(f"registry.json.{kind}-{stamp}")
        for n in range(2, 1000):  # never over another one kept in the same second
            try:
                os.link(self.path, aside)
            except FileExistsError:
                aside = self.path.with_name(f"registry.json.{kind}-{stamp}-{n}")
                continue
            except OSError:  # no hard links here: replace, as before
                with contextlib.suppress(OSError):
                    os.replace(self.path, aside)
                break
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            break
        if foreign.endswith(" (deleted)"):
            self.warnings.append(
                f"warning: {self.path} names the stack started here before this folder was "
                f"deleted or replaced (restored from a copy?); moved it to {aside.name}. That "
                "stack still runs: `hd down` stops it.")
            return
        if foreign:
            self.warnings.append(
                f"warning: {self.path} was written for the stack in {foreign}, not this "
                f"folder (it was copied here with the project); moved it to {aside.name} "
                "and started from an empty registry. Nothing it names was signalled: to "
                f"stop that stack, run `hd down` in {foreign}.")
            return
        self.warnings.append(
            f"warning: {self.path} was corrupt ({reason}); moved it to {aside.name} and "
            "started from an empty registry. No process was signalled because of it; "
            "`hd doctor` lists anything still holding the stack's ports."
        )

    def read(self) -> Data:
        with self.locked(write=False):
            return self._read_unlocked()

    def peek(self) -> Data:
        """read(), leaving a registry it would move aside where it is, for the command's
        own read to find and say what it was (a `down`'s look before it stops anything:
        it moved a copied registry aside in silence, and the stop then said "no daemon
        was running" instead of whose registry it was)."""
        with self.locked(write=False):
            return self._read_unlocked(move=False)

    def _write_unlocked(self, data: Data) -> None:
        """Atomic (temp file + rename); a full or read-only disk is a StateDirError and
        leaves the previous file whole.

        The temporary file is named by pid, not by tempfile: every write holds the
        registry's lock (no two writers, threads included, at once), and tempfile
        pulled random and shutil (bz2, lzma) into the daemon for its whole life. What a
        crashed writer left under that name (or a symlink planted there) is removed,
        never written through; so, at a process's first write, is another pid's."""
        tmp = str(self.dir / f".registry-{os.getpid()}.tmp")
        try:
            private_dir(self.dir)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StateDirError.from_os(exc, self.dir) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise StateDirError.from_os(exc, self.path) from None
            raise
        if not self._swept:
            self._swept = True
            self._sweep_temporaries()

    def _sweep_temporaries(self) -> None:
        """Remove what writers killed mid-write (kill -9 between open and rename) left:
        a writer holds the lock from its temporary file's making to its rename, and so
        does the caller now, so any other is a dead writer's. Once per Registry: a
        listing of `.hippodrome` at every write would be paid on the daemon's hot path
        for a file left once in dozens of kill -9 loops."""
        with contextlib.suppress(OSError):
            for name in os.listdir(self.dir):
                if name.startswith(".registry-") and name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(self.dir / name)

    def write(self, data: Data) -> None:
        with self.locked():
            self._write_unlocked(data)

    def update(self, change: Callable[[Data], None], wait: float = LOCK_WAIT_S) -> Data:
        with self.locked(wait=wait):
            data = self._read_unlocked()
            change(data)
            self._write_unlocked(data)
            return data


def _same_folder(recorded: str, root: Path, data: Data) -> bool:
    """Whether the registry's project_root is this folder: the same resolved path, the
    same directory reached another way (a bind mount), or a folder that no longer
    exists: the project was moved here with its stack running, and this registry is
    the only handle on that stack. That last only when its daemon writes this folder's
    daemon.log (or runs no more): a copy made while the stack ran, its original then
    renamed, took the original's stack for its own, and `hd down` there stopped it.
    A folder that exists again at that path (a fresh clone after `mv proj proj.old`)
    is the same case when the run is dead and that folder's registry does not name its
    token: this registry is still the only handle on what the dead run left, which
    was otherwise left running for good, set aside here as foreign and unknown there
    (adv31 r/7). A copy whose original still names the run stays foreign."""
    if recorded == str(root) or _same_bytes(recorded, root):
        return True
    daemon = data.get("daemon") or {}
    try:
        if os.path.samefile(recorded, root):
            return True
    except FileNotFoundError:
        return not daemon_alive(data) or writes_daemon_log(int(daemon["pid"]), root)
    except (OSError, ValueError):
        return False
    if not daemon and not data.get("services"):  # names nothing: after a clean `down`
        return True  # (renamed, a fresh clone at the old path: "copied here"; r/6)
    return not daemon_alive(data) and not _names_run(Path(recorded), daemon.get("token"))


def _names_run(folder: Path, token: object) -> bool:
    """`folder`'s own registry names the run of `token` (read as it is, unchecked: any
    doubt counts as naming it, so nothing is taken from a folder that may own it)."""
    if not isinstance(token, str) or not token:
        return True
    try:  # without blocking: a named pipe there held every command in the copy
        with open_regular_for_reading(folder / ".hippodrome" / "registry.json",
                                      follow_links=True) as fh:
            raw = fh.read(1 << 22)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return token.encode() in raw


def _same_bytes(recorded: str, root: Path) -> bool:
    """The same path written under another locale: a registry written under UTF-8
    names `app-日本`, which a latin-1 locale reads as other characters (and cannot
    encode back), so its own folder's registry was set aside as a copy's."""
    with contextlib.suppress(UnicodeError):
        return recorded.encode("utf-8", "surrogateescape") == os.fsencode(root)
    return False


def _daemon_folder(data: Data, root: Path) -> str | None:
    """Where the live daemon this registry names runs, judged by what the registry
    cannot forge: "" when it is this folder (it writes this folder's daemon.log, or runs
    in it, wherever project_root says); the other folder when it writes that folder's
    daemon.log; None when no daemon runs, the process is no Hippodrome daemon (a
    stranger's pid: `down` says so), or its /proc entries cannot be read (another
    user's process, no /proc): then project_root decides, as it did.

    project_root alone proved nothing: a project moved while its stack ran, then copied
    back to its old path (`cp -a`), had the copy's `hd down` stop the moved stack,
    and the moved folder's own registry set aside as foreign; a registry copied with
    project_root edited did the same."""
    daemon = data.get("daemon") or {}
    if not daemon_alive(data):
        return None
    pid = int(daemon["pid"])
    # The daemon reading its own registry, and the usual case (its stderr is this
    # folder's daemon.log: one readlink) first: every registry read takes this path.
    if pid == os.getpid():
        return ""
    if writes_daemon_log(pid, root):
        # ... unless it runs in a folder deleted since, and this one was made at its
        # path (restored from a backup, the registry with it): that stack is stranded,
        # and was shown running here while nothing of it could start (adv31 r/1).
        return f"{root} (deleted)" if _runs_in_deleted(pid) else ""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError):
        return None
    with contextlib.suppress(OSError):
        if os.path.samefile(cwd, root):
            return ""
    return daemon_log_folder(pid, fds)


def _runs_in_deleted(pid: int) -> bool:
    """The process's working folder was deleted (the kernel names it `... (deleted)`)."""
    try:
        return os.readlink(f"/proc/{pid}/cwd").endswith(" (deleted)")
    except (OSError, ValueError):
        return False


def daemon_log_names(root: Path) -> tuple[str, ...]:
    """What /proc shows for a descriptor on this project's daemon.log (writes_daemon_log);
    worked out once per scan of every process, not once per process."""
    log = str(root / ".hippodrome" / "daemon.log")
    names: tuple[str, ...] = (log, log + " (deleted)")
    if os.path.islink(root / ".hippodrome"):  # refused now; a stack from before it runs
        real = os.path.realpath(log)  # on, its output named by the kernel (adv25 d/3);
        if os.path.basename(os.path.dirname(real)) != ".hippodrome":  # never another
            names += (real, real + " (deleted)")  # project's, whose daemon that is
    return names


def daemon_log_identity(root: Path) -> tuple[int, int] | None:
    """The (device, inode) of this project's daemon.log; None when it cannot be read, or
    is not this folder's own: a `.hippodrome` that is a link leads to another project's
    state, whose daemon is that project's (daemon_log_names says it by name), and `hd
    down` here stopped it."""
    state = root / ".hippodrome"
    if os.path.islink(state):
        return None
    try:
        st = os.lstat(state / "daemon.log")
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def writes_daemon_log(pid: int, root: Path, writing: bool = False,
                      names: tuple[str, ...] | None = None,
                      identity: tuple[int, int] | None = None) -> bool:
    """The process holds this project's .hippodrome/daemon.log open: as its stderr, as
    every detached daemon (fork or exec), or beside its terminal, as a foreground `hd
    up` (daemon/main._hold_daemon_log). Proof it is this folder's daemon that a registry
    cannot forge, since the kernel names the file where it is now (a renamed folder's
    new path). `writing`: only a descriptor opened for writing counts, so a reader
    (`hd logs`) is never taken for a daemon; fdinfo's flags say how it was opened."""
    names = daemon_log_names(root) if names is None else names

    def holds(fd: str) -> bool:
        return os.readlink(f"/proc/{pid}/fd/{fd}") in names and (
            not writing or opened_to_write(pid, fd))

    def same_file(fd: str) -> bool:
        """The very file under another name: a daemon started through a bind mount of
        the project (a dev container's /workspace) names it by that path, and `hd down
        --force` by this one left it running, its services failing (adv45 R/13). For
        stderr alone, where every detached daemon has it: one more stat a process."""
        ident = identity or daemon_log_identity(root)
        if ident is None:
            return False
        st = os.stat(f"/proc/{pid}/fd/{fd}")
        return (st.st_dev, st.st_ino) == ident and (not writing or opened_to_write(pid, fd))

    try:
        if holds("2") or same_file("2"):
            return True
        fds = os.listdir(f"/proc/{pid}/fd")
    except (OSError, ValueError, StopIteration):
        return False
    for fd in fds:
        with contextlib.suppress(OSError, ValueError, StopIteration):
            if holds(fd):
                return True
    return False


def daemon_log_writers(root: Path) -> list[int]:
    """Processes other than this one writing this project's daemon.log: its daemon (and
    an `hd up --detach` still starting one), found without the registry. A registry
    emptied or damaged while the stack ran said "no daemon", and `hd down` stopped
    nothing."""
    me, names = os.getpid(), daemon_log_names(root)
    ident = daemon_log_identity(root) or (-1, -1)  # (deleted: the names still say it)
    return [pid for pid in all_pids()
            if pid != me and writes_daemon_log(pid, root, True, names, ident)]


def stranded_daemons(root: Path) -> list[int]:
    """Daemons still writing this project's daemon.log from a folder deleted since (`rm
    -rf proj` under a running stack, then a clone or a restored copy at its path): no
    command here reaches them, and their services hold the stack's ports. `hd doctor`
    said only that the ports were busy (adv31 q's notes)."""
    return [pid for pid in daemon_log_writers(root) if _runs_in_deleted(pid)]


def stranger_daemon(data: Data, root: Path) -> bool:
    """The registry's daemon runs, by pid and start time, but is provably not this
    folder's: its /proc entries can be read, and it neither writes a daemon.log nor
    runs here (a registry from before a reboot, a copy with start times copied from
    /proc). `up` refused with "already running" (exit 7) and `doctor` said OK, while
    only `down` looked further. Another user's process (unreadable) is not judged."""
    if not daemon_alive(data):
        return False
    pid = int((data.get("daemon") or {})["pid"])
    if pid == os.getpid():
        return False
    try:  # read, not os.access: in a user namespace of its own (a toolbox, `unshare`)
        os.readlink(f"/proc/{pid}/cwd")  # access() and even a listing of fd/ say yes,
    except OSError:  # and each link is refused: a running stack was called stale, and
        return False  # `down` said "nothing to stop", exit 0 (adv24 c/2)
    return _daemon_folder(data, root) is None


def daemon_alive(data: Data) -> bool:
    daemon = data.get("daemon") or {}
    return is_same_process(daemon.get("pid"), daemon.get("create_time"))


def live_services(data: Data) -> dict[str, Data]:
    """Entries whose recorded process still runs and is still the one we started."""
    out = {}
    for name, entry in (data.get("services") or {}).items():
        if is_same_process(entry.get("pid"), entry.get("create_time")):
            out[name] = entry
    return out
