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
daemon is a child subreaper: a child that left the group and dropped its mark, and whose
parent ended, is the daemon's own, and ended at shutdown. In both modes a Scope also
takes its members' descendants (a child that left the cgroup or the group and dropped
its mark is still its parent's child).

Finding and ending the processes of a scope is scope.py, which the orphan guard runs
on its own; this module is the daemon's side: making the cgroups, the marks and the
subreaper, and saying which mode is in use.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hippo_tasks.supervision.scope import (
    RUN_ENV,
    Scope,
    all_pids,
    end_left_in,
    remove_cgroup,
    stat_fields,
)

MODE_ENV = "HIPPODROME_CGROUP"
"""`off` forces the process-group fallback (CI runs the suite both ways); `auto` (default)."""
MODE_OFF = ("off", "no", "false", "0")
MODE_WORDS = ("auto", "on", "yes", "true", "1", *MODE_OFF)
"""Every word MODE_ENV takes (`up` refuses any other: tasks/context.check_switches)."""
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
LEFT_IN_BASE_GRACE_S = 2.0
"""SIGTERM, then SIGKILL after this, for a process left in the run's own cgroup."""


def cgroup2_mount() -> Path | None:
    from hippo_tasks.mounts import mounts

    return next((Path(point) for point, kind in mounts() if kind == "cgroup2"), None)


def own_cgroup() -> str | None:
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


def cgroups_here() -> Path | None:
    """The cgroup v2 folder this process is in, where a daemon's `hippodrome-<token>`
    goes (and where a run's leftovers are looked for); None without cgroup v2."""
    mount, mine = cgroup2_mount(), own_cgroup()
    return None if mount is None or mine is None else mount / mine.lstrip("/")


def run_cgroup(token: str) -> Path | None:
    """Where the run of `token` has its cgroup (made or not); None without cgroup v2."""
    parent = cgroups_here()
    return None if parent is None else parent / f"hippodrome-{token}"


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

ENTER = ('{ echo 0 > "$1"; } 2>/dev/null || '
         '{ echo "hippodrome: cannot move into the cgroup $1" >&2; exit 126; }; '
         'shift; exec "$@"')
"""Run by /bin/sh in the new child: `echo` is a builtin, so writing 0 moves the shell
itself into the cgroup, and `exec` keeps its pid for the real command. A Python
preexec_fn would do the same, but forces fork() instead of vfork(): 4 ms instead of 1
of a 30 MB daemon's event loop, per spawn. The shell's $0 is `hippodrome`: an exec it
could not do read `/sys/fs/cgroup/.../cgroup.procs: 1: exec: ./run.sh: not found`."""


class Placement:
    """The environment mark, and the cgroup the new child moves itself into before
    the service's own program runs a single instruction."""

    def __init__(self, env: dict[str, str], procs: str | None) -> None:
        self.env = env
        self.procs = procs

    def wrap(self, argv: list[str]) -> list[str]:
        if self.procs is None:
            return argv
        return ["/bin/sh", "-c", ENTER, "hippodrome", self.procs, *argv]


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
                f"({self.why_not}): a child that leaves its process group, clears its "
                "environment and outlives its parent is ended at `hd down`, not with its "
                "service")

    def scope(self, service: str, pgid: int | None = None,
              leader: int | None = None) -> Scope:
        mark = f"{self.token}/{service}"
        return Scope(mark, self.base / service if self.base is not None else None, pgid,
                     leader=leader)

    def placement(self, service: str) -> Placement:
        """What puts a new child in its scope before it runs a single instruction."""
        env = {RUN_ENV: f"{self.token}/{service}"}
        if self.base is None:
            return Placement(env, None)
        path = self.base / service
        path.mkdir(exist_ok=True)
        return Placement(env, str(path / "cgroup.procs"))

    def close(self, given_up: Callable[[Iterable[int]], set[int]] = lambda pids: set()
              ) -> None:
        """Remove the run's cgroups, once every service is stopped, and first end what is
        left in them (scope.end_left_in) but what a stop already gave up on."""
        if self.base is not None:
            end_left_in(self.base, LEFT_IN_BASE_GRACE_S, given_up)
            remove_cgroup(self.base)


def sweep_leftovers(root: str, keep: str | None = None) -> list[Path]:
    """Remove the empty cgroups of this project's earlier runs (`hippodrome-<tag>...`,
    the tag from its folder) that nothing else would: a daemon killed between making
    its cgroup and its guard's start left `hippodrome-<token>/probe` for good (adv34
    v/7). `hd down` calls it once its stack is stopped, holding the lifecycle lock (no
    daemon of this project is being made); `keep`: a live daemon's, left alone. rmdir
    removes empty cgroups only, so nothing that holds a process is touched."""
    parent = cgroups_here()
    if parent is None:
        return []
    removed = []
    try:
        found = sorted(parent.glob(f"hippodrome-{project_tag(root)}*"))
    except OSError:
        return []
    for base in found:
        if str(base) == keep or base.is_symlink() or not base.is_dir():
            continue
        remove_cgroup(base)
        if not base.exists():
            removed.append(base)
    return removed


def project_tag(root: str) -> str:
    """8 hex digits of the project folder's real path, as bytes (32-bit FNV-1a: no
    import). A path recorded under a UTF-8 locale and read under another (the C
    locale) cannot be encoded back: realpath raised, a traceback for `hd status`."""
    try:
        raw = os.fsencode(root)
    except UnicodeError:
        raw = root.encode("utf-8", "surrogateescape")
    h = 0x811C9DC5
    for byte in os.path.realpath(raw):
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"{h:08x}"


def new_token(root: str) -> str:
    """A daemon run's ownership token: its project's tag, then 16 random hex digits.
    The token was as public as a pid (in /proc/PID/cgroup, the guard's command line),
    so a registry of another folder carrying a live stack's token had that stack ended
    by a mere `hd status` there: cleanup now takes only a token tagged with the
    registry's own folder (registry/cleanup.py)."""
    return project_tag(root) + os.urandom(8).hex()


RUN_TOKEN_ENV = "HIPPODROME_RUN_TOKEN"
"""The token `up` made for the daemon it is about to start (`hand_run_token`)."""


def hand_run_token(root: str) -> str:
    """A new token for the run `up` is making, put in the environment for the daemon
    it starts: what `up` itself starts before the daemon exists (the events tunnel)
    carries this run's mark, so the orphan guard ends it too after a `kill -9` of the
    daemon. The tunnel outlived the daemon, still pointing at its port."""
    token = os.environ[RUN_TOKEN_ENV] = new_token(root)
    return token


def take_run_token(root: str) -> str:
    """The token `up` handed over for this project, else a new one. Taken out of the
    environment, so no service (or a stack it starts in turn) can inherit and share it."""
    handed = os.environ.pop(RUN_TOKEN_ENV, "")
    tag = project_tag(root)
    if len(handed) == len(tag) + 16 and handed.startswith(tag) and all(
            c in "0123456789abcdef" for c in handed):
        return handed
    return new_token(root)


def establish(token: str, want: str | None = None) -> Ownership:
    """Make this daemon's cgroup, or say why not and use the fallback."""
    want = (want if want is not None else os.environ.get(MODE_ENV, "auto")).strip().lower()
    if want in MODE_OFF:
        own = Ownership(token, None, f"{MODE_ENV}={want}")
    else:
        base, why = _make_base(token)
        own = Ownership(token, base, why)
    if own.base is None:
        # Only here: prctl needs ctypes, 0.45 MB of the daemon's memory for its whole
        # life and a few ms of its start; in cgroup mode the cgroup holds every child.
        become_subreaper()
    return own


class OwnershipSoon:
    """establish() in a thread, begun as the daemon process starts.

    Making the cgroup and starting the probe process in it took 8-18 ms that the first
    service waited for, after the daemon's imports (40-55 ms, measured in a forked
    daemon); run beside them, it is done by the time the engine asks. A daemon that
    ends before its engine takes the result must `discard` it (the cgroup is removed)."""

    def __init__(self, token: str | None = None) -> None:
        """`token`: the run's, given by `up` to its seed (daemon/seed.py); else taken
        from the environment `up` gave the daemon."""
        # the daemon runs in its project's folder
        self.token = token if token is not None else take_run_token(os.getcwd())
        self._result: Ownership | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name="hd-ownership", daemon=True)
        try:
            self._thread.start()
        except RuntimeError:  # no thread to spare (the process limit): do it here and now
            self._thread = None
            self._run()

    def _run(self) -> None:
        try:
            self._result = establish(self.token)
        except BaseException as exc:  # handed to the thread that takes the result
            self._error = exc

    def wait(self) -> None:
        """Until establish is done, its result left to `take`."""
        if self._thread is not None:
            self._thread.join()

    def take(self) -> Ownership:
        self.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.take().close()


def remove_base(token: str, within: float = 0.2) -> None:
    """Remove the run's cgroup made by a process that was killed before it could (the
    seed of an `up` that failed, a daemon ended before its guard began): its probe's sh
    may still be leaving it, for `within` seconds at most. A cgroup that still holds a
    process stays (its guard's to end)."""
    base = run_cgroup(token)
    if base is None:
        return
    deadline = time.monotonic() + within
    while True:
        remove_cgroup(base)
        if not base.exists() or time.monotonic() > deadline:
            return
        time.sleep(0.005)


def probe_mode() -> Ownership:
    """What a daemon started now would use (for `hd doctor`); leaves nothing behind
    and does not make the caller a subreaper."""
    want = os.environ.get(MODE_ENV, "auto").strip().lower()
    if want in MODE_OFF:
        return Ownership("doctor", None, f"{MODE_ENV}={want}")
    base, why = _make_base(f"doctor{os.getpid()}")
    own = Ownership("doctor", base, why)
    own.close()
    return own


def _make_base(token: str) -> tuple[Path | None, str]:
    if not sys.platform.startswith("linux"):
        return None, f"no cgroups on {sys.platform}"
    base = run_cgroup(token)
    if base is None:
        return None, "no cgroup v2 hierarchy is mounted"
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
    import subprocess  # only at daemon start

    try:
        probe.mkdir()
        place = Placement({}, str(probe / "cgroup.procs"))
        # wait() without a timeout blocks in waitpid; run(timeout=) polls with sleeps,
        # 15 ms of a start every service waits for. No command after the move: the
        # wrapper's `exec` with nothing to run returns, and its one sh cannot hang (the
        # second sh exec'd after it cost the first service 0.7 ms: 1.7 -> 1.0 ms).
        code = subprocess.Popen(place.wrap([]), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).wait()
        if code != 0:
            raise subprocess.CalledProcessError(code, "/bin/sh")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot start a process in a cgroup under {probe.parent.parent}: {exc}"
    finally:
        remove_cgroup(probe)
    return ""


def _libc() -> Any:
    """The C library, for prctl(2) (Linux only); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def become_subreaper(on: bool = True) -> bool:
    """Orphaned descendants are re-parented to us instead of to PID 1 (Linux 3.4+).
    `on=False` gives that up: a process that ran a stack in-process (the tests) and goes
    on without a reaper would keep every later orphan as its zombie."""
    libc = _libc()
    try:
        return libc is not None and bool(
            libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0)
    except AttributeError:
        return False


def ending_with_this_process() -> Callable[[], None] | None:
    """A preexec_fn for a child a command waits on in the foreground (`hd seed`'s seeding
    program, `hd probes`', `hd e2e`'s pytest): it gets SIGTERM when this process dies.
    `kill PID` or `kill -9` of the command alone (not its process group, as Ctrl+C
    reaches) left the child running to the end, seeding a stack the user had given up
    on (adv56). None where there is no prctl: the child runs as any would. The library
    is loaded here, before the fork; a parent gone before the child asked is seen by
    the child's new parent pid."""
    libc = _libc()
    if libc is None or not hasattr(libc, "prctl"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def children() -> list[int]:
    """Our children, zombies included: every thread's /proc children list (a few small
    reads), or where the kernel has none, a scan of /proc."""
    me = os.getpid()
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{me}/task"):
            with open(f"/proc/{me}/task/{tid}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        out = []
        for pid in all_pids():
            fields = stat_fields(pid)
            if fields is not None and int(fields[1]) == me:
                out.append(pid)
    return out


def _not_ours_by_birth(fields: list[str]) -> bool:
    """A child in another session than ours: a service's (each is a session leader)
    or one of theirs, adopted; not what the daemon runs itself in its own session (the
    stack's probes or seed command, git)."""
    return int(fields[3]) != os.getsid(0)


def reap_adopted(own_children: Iterable[int], before: set[int]) -> set[int]:
    """Collect exited orphans that were re-parented to us: zombies that were zombies
    at the last look already (`before`, HOUSEKEEPING_S ago), so that no Popen is
    waiting to read their status. One reaped at once, on SIGCHLD, took the status of
    the `hd probes` the daemon ran for an MCP client, and a failing run was answered
    ok (exit code 0). A zombie's pid cannot be reused, so one seen twice is the same
    process. Returns the zombies left for the next look."""
    keep = set(own_children)
    left = set()
    for pid in children():
        if pid in keep:
            continue
        fields = stat_fields(pid)
        if fields is None or fields[0] != "Z":
            continue
        if pid not in before:
            left.add(pid)
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
    return left


def adopted(own_children: Iterable[int]) -> list[int]:
    """Live orphans re-parented to us: children we never started. A service's child
    that left its cgroup or group, dropped its mark and lost its parent ends up here,
    its service unknown; the daemon ends these once every service has stopped."""
    keep = set(own_children)
    out = []
    for pid in children():
        if pid in keep:  # before its stat: 40 reads a call were 4 ms of the daemon's idle
            continue     # time at each housekeeping tick in process-group mode
        fields = stat_fields(pid)
        if fields is not None and fields[0] not in ("Z", "X") and _not_ours_by_birth(fields):
            out.append(pid)
    return out


# ---- the orphan guard's main: runs this file in a bare interpreter ------------------------

