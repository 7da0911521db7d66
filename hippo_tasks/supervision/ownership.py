"""Which processes belong to a service, and ending them: the one place that decides.

A process group is not proof of ownership: any child can call setsid() and leave it,
and a group ID outlives the process that gave it its number. So every service run gets
two marks the child cannot lose by accident:
- a cgroup v2 directory of its own, where the daemon can create one (root, a delegated
  subtree): the kernel keeps every descendant in it, setsid or not, and `cgroup.kill`
  ends them all at once;
- in any case, `HIPPODROME_RUN=<token>/<service>` in its environment, which every
  descendant inherits; the token is random per daemon, so matching it is proof.
Where no cgroup can be made (macOS, a container without delegation), a Scope is the
processes carrying the mark plus the members of the service's process group, and the
daemon is a child subreaper so escaped children stay its own.

Standard library only, and no imports from this package: the orphan guard runs this
very file in a bare interpreter (`python -I -S`) to clean up after `kill -9` of the
daemon, and `invoke down --force` uses it from a fresh process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

RUN_ENV = "HIPPODROME_RUN"
MODE_ENV = "HIPPODROME_CGROUP"
"""`off` forces the process-group fallback (CI runs the suite both ways); `auto` (default)."""
POLL_S = 0.01
PR_SET_CHILD_SUBREAPER = 36


# ---- facts about one process, from /proc ------------------------------------------------

def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 is the state)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2:].decode("ascii", "replace").split()


def start_ticks(pid: int) -> int | None:
    """When PID started, in clock ticks since boot; None if gone or a zombie. Together
    with the PID this names one process for as long as the machine is up."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_zombie(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] in ("Z", "X")


def run_mark(pid: int) -> str | None:
    """The HIPPODROME_RUN value in a process's environment, if it has one."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = fh.read()
    except OSError:
        return None
    key = RUN_ENV.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key):].decode("utf-8", "replace")
    return None


def all_pids() -> list[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return [int(n) for n in names if n.isdigit()]


_TABLE: tuple[float, dict[int, tuple[int, str | None]]] = (-1.0, {})
TABLE_TTL = 0.02
"""Many scopes poll at once while a stack stops: they share one reading of /proc
(~7 ms for 100 processes) per TABLE_TTL instead of reading it each."""


def process_table(max_age: float = TABLE_TTL) -> dict[int, tuple[int, str | None]]:
    """Live (non-zombie) processes: pid -> (process group, HIPPODROME_RUN mark)."""
    global _TABLE
    now = time.monotonic()
    if now - _TABLE[0] <= max_age:
        return _TABLE[1]
    me = os.getpid()
    table: dict[int, tuple[int, str | None]] = {}
    for pid in all_pids():
        fields = stat_fields(pid)
        if pid == me or fields is None or fields[0] in ("Z", "X"):
            continue
        table[pid] = (int(fields[2]), run_mark(pid))
    _TABLE = (now, table)
    return table


def marked_pids(prefix: str, max_age: float = 0.0) -> list[int]:
    """Live processes whose mark equals `prefix` or starts with `prefix/`."""
    return sorted(pid for pid, (_, mark) in process_table(max_age).items()
                  if mark is not None and (mark == prefix or mark.startswith(prefix + "/")))


def group_pids(pgid: int, max_age: float = 0.0) -> list[int]:
    """Live members of a process group (killpg(pg, 0) would count zombies too)."""
    return sorted(pid for pid, (group, _) in process_table(max_age).items() if group == pgid)


def group_has_members(pgid: int) -> bool:
    """Cheap first look: any process (zombies too) still in the group?"""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def send(pids: Iterable[int], sig: int) -> int:
    sent = 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            sent += 1
    return sent


# ---- cgroup v2 ---------------------------------------------------------------------------

def cgroup2_mount() -> Path | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return Path(left.split(" ")[4])
    except OSError:
        return None
    return None


def own_cgroup() -> str | None:
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


def cgroup_pids(path: Path) -> list[int]:
    """Every process in a cgroup and the cgroups below it."""
    out: list[int] = []
    for dirpath, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError), open(os.path.join(dirpath, "cgroup.procs")) as fh:
            out += [int(x) for x in fh.read().split()]
    return out


def cgroup_populated(path: Path) -> bool:
    try:
        with open(path / "cgroup.events") as fh:
            return "populated 1" in fh.read()
    except FileNotFoundError:
        return False
    except OSError:
        return bool(cgroup_pids(path))


def cgroup_kill(path: Path) -> None:
    """SIGKILL everything in the cgroup: `cgroup.kill` (Linux 5.14+) or one by one."""
    try:
        with open(path / "cgroup.kill", "w") as fh:
            fh.write("1")
        return
    except OSError:
        pass
    send(cgroup_pids(path), signal.SIGKILL)


def remove_cgroup(path: Path) -> None:
    """rmdir the tree bottom-up; a cgroup that still holds a process stays (EBUSY)."""
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda t: -len(t[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def is_hippodrome_cgroup(path: Path, token: str) -> bool:
    """A recorded cgroup path we may act on: a real cgroup2 directory named for our
    daemon's token (never a path the registry file alone made up)."""
    mount = cgroup2_mount()
    if mount is None or not token:
        return False
    try:
        real = path.resolve()
        real.relative_to(mount.resolve())
    except (OSError, ValueError):
        return False
    return f"hippodrome-{token}" in real.parts and (real / "cgroup.procs").exists()


# ---- a service's processes --------------------------------------------------------------

class Scope:
    """The processes of one service run, whatever they did to their group or session."""

    def __init__(self, mark: str, cgroup: Path | None = None, pgid: int | None = None,
                 proven: Iterable[tuple[int, int]] = ()) -> None:
        self.mark = mark
        self.cgroup = cgroup
        self.pgid = pgid
        self.proven = tuple(proven)
        """(pid, start ticks) pairs known to be ours by identity alone."""

    def members(self, max_age: float = 0.0) -> list[int]:
        if self.cgroup is not None:
            return cgroup_pids(self.cgroup)
        found = set(marked_pids(self.mark, max_age)) if self.mark else set()
        if self.pgid:
            found.update(group_pids(self.pgid, max_age))
        found.update(pid for pid, ticks in self.proven if start_ticks(pid) == ticks)
        return sorted(found)

    def empty(self) -> bool:
        """While polling: the cgroup's own flag; else the group first (one syscall),
        and only once it is empty the shared process-table reading (escapees)."""
        if self.cgroup is not None:
            return not cgroup_populated(self.cgroup)
        if self.pgid and group_has_members(self.pgid) and group_pids(self.pgid, TABLE_TTL):
            return False
        if self.members(TABLE_TTL):
            return False
        return not self.members()  # "empty" is never said on a stale reading

    def signal(self, sig: int) -> int:
        return send(self.members(), sig)

    def kill(self) -> None:
        if self.cgroup is not None:
            cgroup_kill(self.cgroup)
        else:
            self.signal(signal.SIGKILL)


def end_scopes(scopes: list[Scope], grace: float,
               note: Callable[[Scope, str], None] = lambda s, m: None) -> None:
    """Synchronous escalation for callers without an event loop (the guard, `down
    --force`, the tunnel): SIGTERM everything, SIGKILL what is left after `grace`,
    return once all are empty (or 5 more seconds passed)."""
    for scope in scopes:
        scope.signal(signal.SIGTERM)
        scope.signal(signal.SIGCONT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not all(s.empty() for s in scopes):
        time.sleep(POLL_S)
    for scope in scopes:
        if not scope.empty():
            note(scope, f"ignored SIGTERM for {grace:g}s: sent SIGKILL")
            scope.kill()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not all(s.empty() for s in scopes):
        time.sleep(POLL_S)
        for scope in scopes:
            if not scope.empty():
                scope.kill()
    for scope in scopes:
        if scope.cgroup is not None:
            remove_cgroup(scope.cgroup)


class Placement:
    """The environment mark, and the cgroup the forked child moves itself into."""

    def __init__(self, env: dict[str, str], procs_fd: int | None) -> None:
        self.env = env
        self._fd = procs_fd

    @property
    def preexec(self) -> Callable[[], None] | None:
        fd = self._fd
        if fd is None:
            return None

        def enter() -> None:  # runs in the forked child: "0" means "me"
            os.write(fd, b"0")

        return enter

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


# ---- the mode of one daemon --------------------------------------------------------------

class Ownership:
    """How one daemon run marks and finds its services' processes."""

    def __init__(self, token: str, base: Path | None, why_not: str = "") -> None:
        self.token = token
        self.base = base
        self.why_not = why_not

    @property
    def mode(self) -> str:
        return "cgroup" if self.base is not None else "process-group"

    def describe(self) -> str:
        if self.base is not None:
            return (f"cgroup v2, one per service under {self.base.parent}: every "
                    "descendant is caught, setsid or not")
        return ("process groups + child subreaper + environment mark "
                f"({self.why_not}): a child that clears its environment AND leaves its "
                "process group AND outlives its parent's supervision is not caught")

    def scope(self, service: str, pgid: int | None = None) -> Scope:
        mark = f"{self.token}/{service}"
        return Scope(mark, self.base / service if self.base is not None else None, pgid)

    def placement(self, service: str) -> Placement:
        """What puts a new child in its scope before it runs a single instruction."""
        env = {RUN_ENV: f"{self.token}/{service}"}
        if self.base is None:
            return Placement(env, None)
        path = self.base / service
        path.mkdir(exist_ok=True)
        return Placement(env, os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))

    def close(self) -> None:
        if self.base is not None:
            remove_cgroup(self.base)


def establish(token: str, want: str | None = None) -> Ownership:
    """Make this daemon's cgroup, or say why not and use the fallback."""
    want = (want if want is not None else os.environ.get(MODE_ENV, "auto")).strip().lower()
    if want in ("off", "0", "no", "false"):
        own = Ownership(token, None, f"{MODE_ENV}={want}")
    else:
        base, why = _make_base(token)
        own = Ownership(token, base, why)
    if own.base is None:
        become_subreaper()
    return own


def probe_mode() -> Ownership:
    """What a daemon started now would use (for `invoke doctor`); leaves nothing behind
    and does not make the caller a subreaper."""
    want = os.environ.get(MODE_ENV, "auto").strip().lower()
    if want in ("off", "0", "no", "false"):
        return Ownership("doctor", None, f"{MODE_ENV}={want}")
    base, why = _make_base(f"doctor{os.getpid()}")
    own = Ownership("doctor", base, why)
    own.close()
    return own


def _make_base(token: str) -> tuple[Path | None, str]:
    if not sys.platform.startswith("linux"):
        return None, f"no cgroups on {sys.platform}"
    mount, mine = cgroup2_mount(), own_cgroup()
    if mount is None or mine is None:
        return None, "no cgroup v2 hierarchy is mounted"
    base = mount / mine.lstrip("/") / f"hippodrome-{token}"
    try:
        base.mkdir()
    except OSError as exc:
        return None, f"cannot create a cgroup under {base.parent}: {exc.strerror or exc}"
    why = _try_placement(base / "probe")
    if why:
        remove_cgroup(base)
        return None, why
    return base, ""


def _try_placement(probe: Path) -> str:
    """Start one tiny process inside a fresh cgroup, the way services will be started:
    a hierarchy that lets us mkdir but not move a process in (no write access to the
    common ancestor, controllers in the way) is found here, not at a service's start."""
    exe = shutil.which("true") or sys.executable
    argv = [exe] if exe != sys.executable else [exe, "-S", "-c", "pass"]
    try:
        probe.mkdir()
        place = Placement({}, os.open(probe / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        try:
            subprocess.run(argv, preexec_fn=place.preexec, check=True, timeout=10,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        finally:
            place.close()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot start a process in a cgroup under {probe.parent.parent}: {exc}"
    finally:
        remove_cgroup(probe)
    return ""


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to us instead of to PID 1 (Linux 3.4+)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def reap_adopted(own_children: Iterable[int]) -> list[int]:
    """Collect exited orphans that were re-parented to us, leaving alone the children
    whose status someone else (a Popen) will read."""
    keep = set(own_children)
    me = os.getpid()
    reaped = []
    for pid in all_pids():
        if pid in keep:
            continue
        fields = stat_fields(pid)
        if fields is None or fields[0] != "Z" or int(fields[1]) != me:
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
    return reaped


# ---- the orphan guard's main: runs this file in a bare interpreter ------------------------

def guard_main(argv: list[str]) -> None:
    """Read until EOF; `b` means a clean shutdown (leave quietly). EOF without it means
    the daemon died: end every process of its run, cgroup and mark alike."""
    token, base, grace = argv[0], argv[1], float(argv[2])
    for line in sys.stdin:
        if line.startswith("b"):
            return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    scopes = [Scope(token)]
    if base != "-":
        root = Path(base)
        with contextlib.suppress(OSError):
            scopes += [Scope(token, p) for p in root.iterdir() if p.is_dir()]
    end_scopes(scopes, grace)
    if base != "-":
        remove_cgroup(Path(base))


if __name__ == "__main__":
    guard_main(sys.argv[1:])
