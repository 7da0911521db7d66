"""A service's processes, found and ended: the part of ownership the orphan guard runs.

Standard library only, and nothing from this package: the orphan guard runs this very
file in a bare interpreter (`python -I -S`) to clean up after `kill -9` of the daemon,
so every module it imports is memory the guard holds for the stack's whole life (it
avoids typing, pathlib and subprocess on purpose). `ownership.py` decides how a
daemon marks its services; this file knows how to find and end what carries a mark.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

TYPE_CHECKING = False  # typing itself is 2 MB in the bare guard; mypy still reads the block
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

RUN_ENV = "HIPPODROME_RUN"
"""`<token>/<service>`: inherited by every descendant of a service."""
TUNNEL_MARK = ".events-tunnel"
"""The EventBridge tunnel's name under the run's token (events/tunnel.py): a service
name starts with a letter."""
POLL_S = 0.01


# ---- facts about one process, from /proc ------------------------------------------------

def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 is the state)."""
    read = stat_and_image(pid)
    return None if read is None else read[1]


def stat_and_image(pid: int) -> tuple[str, list[str]] | None:
    """What names the program PID runs now, and stat_fields: an exec changes it (the
    command name; where /proc shows them, the addresses of its code, stack, heap,
    arguments and environment, placed anew for each program unless address-space
    randomisation is off; then still the environment's size and place)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    end = raw.rfind(b")")
    fields = raw[end + 2:].decode("ascii", "replace").split()
    where = " ".join(fields[23:26] + fields[42:49])  # start_code..start_stack, start_data..env_end
    return f"{where} {raw[raw.find(b'(') + 1:end]!r}", fields


def is_stopped(pid: int) -> bool:
    """SIGSTOP'd, Ctrl+Z'd or held by a debugger (state T or t): it will not answer."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] in ("T", "t")


def start_ticks(pid: int) -> int | None:
    """When PID started, in clock ticks since boot; None if gone or a zombie. Together
    with the PID this names one process for as long as the machine is up."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def ticks_of(pids: Iterable[int]) -> dict[int, int]:
    """pid -> start ticks of those of `pids` alive now: what names each for later."""
    found = {}
    for pid in pids:
        ticks = start_ticks(pid)
        if ticks is not None:
            found[pid] = ticks
    return found


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


def opened_to_write(pid: int, fd: str) -> bool:
    """fdinfo's flags: the descriptor was opened for writing (OSError, StopIteration or
    ValueError when it cannot be read)."""
    with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as fh:
        flags = next(line for line in fh if line.startswith("flags:")).split()[1]
    return int(flags, 8) & (os.O_WRONLY | os.O_RDWR) != 0


DAEMON_LOG_TAIL = "/.hippodrome/daemon.log"


def daemon_log_folder(pid: int, fds: list[str] | None = None) -> str | None:
    """The project folder whose `.hippodrome/daemon.log` the process writes (a
    Hippodrome daemon's, detached or foreground), or None."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd") if fds is None else fds
    except OSError:
        return None
    for fd in ["2", *fds]:
        with contextlib.suppress(OSError, ValueError, StopIteration):
            log = os.readlink(f"/proc/{pid}/fd/{fd}").removesuffix(" (deleted)")
            if log.endswith(DAEMON_LOG_TAIL) and opened_to_write(pid, fd):
                return log.removesuffix(DAEMON_LOG_TAIL)
    return None


def all_pids() -> list[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return [int(n) for n in names if n.isdigit()]


_MARKS: dict[int, tuple[int, str, str | None]] = {}
"""pid -> (start ticks, program image, mark) as the last reading of /proc found them. A
process's environment is read once: again only when it is a new process under that pid
(start ticks) or has exec'd a program since (stat_and_image), the one way a process
without a mark can take one (a container's init exec'ing its command with the mark
passed on). Reading a process's environment waits on its memory map: 10-45 ms each for
processes still starting up (a machine that starts dozens a second: CI's), and a stop
read every environment of the machine at least twice."""

_TABLE: tuple[float, float, dict[int, tuple[int, str | None, int, int]], bool] = (
    -1.0, -1.0, {}, False)
"""The last reading of /proc: when it began, when it ended, what it found, and whether
it read every process born while it ran (_passes)."""
TABLE_TTL = 0.02
"""Many scopes poll at once while a stack stops: they share one reading of /proc
(~7 ms for 100 processes) per TABLE_TTL instead of reading it each."""


RELISTS = 4
"""/proc is listed again after each pass, and what was born meanwhile read, until a
listing shows nothing new (at most this many times). A process that forked and exited
between the listing and the look at it was not in the reading, nor its child, born
after the listing: a service process that re-forked itself every 20 ms, keeping its
mark and leaving its group or cgroup, was never in a reading once the machine was busy
(a pass over 200 processes then outlasts 20 ms), and `hd stop` and `hd down` left it
running (adv35 x/1). The passes after the first read only the newborn: fast, so a
process is missed only if it forks and exits within about a millisecond of its birth."""


CHAIN_READINGS = 8
"""Readings a stop's "empty?" takes, each after one whose marked processes had all
ended since it, before it says "not yet" (Scope._no_marked_left)."""
CHAIN_LOOK_S = 0.1
"""Nor longer than this (the stop polls again a moment later)."""

FREEZE_READINGS = 8
"""Readings of a scope's members while its killing stops them (Scope._frozen): a chain
that re-forks every few ms is caught within two or three."""


def process_table(max_age: float = TABLE_TTL, begun_after: float = -1.0
                  ) -> dict[int, tuple[int, str | None, int, int]]:
    """Live (non-zombie) processes: pid -> (process group, HIPPODROME_RUN mark, start
    ticks, parent pid), from a reading at most `max_age` old that began after
    `begun_after` (time.monotonic())."""
    global _TABLE, _MARKS
    now = time.monotonic()
    if now - _TABLE[0] <= max_age and _TABLE[0] > begun_after:
        return _TABLE[2]
    me = os.getpid()
    table: dict[int, tuple[int, str | None, int, int]] = {}
    marks: dict[int, tuple[int, str, str | None]] = {}
    unread: list[int] = []
    for listed in _passes(unread):
        for pid in listed:
            read = _read(pid) if pid != me else None
            if read is None:
                continue
            marks[pid], fields = read
            table[pid] = (int(fields[2]), read[0][2], read[0][0], int(fields[1]))
    _TABLE, _MARKS = (now, time.monotonic(), table, not unread), marks
    return table


def _passes(unread: list[int] | None = None) -> Iterator[list[int]]:
    """The pids in /proc, then at each pass those born since, until a pass finds none
    (at most RELISTS more: others' processes are born meanwhile too); `unread` gets
    those of the pass it did not make."""
    listed, seen = all_pids(), set()
    for _ in range(RELISTS + 1):
        yield listed
        seen.update(listed)
        listed = [pid for pid in all_pids() if pid not in seen]
        if not listed:
            return
    if unread is not None:
        unread += listed


def _read(pid: int) -> tuple[tuple[int, str, str | None], list[str]] | None:
    """(start ticks, program image, mark) and the stat fields of a live process (None
    for a zombie or one gone); its environment read only when _MARKS lacks it, or when
    it is this process's own child and had no mark: an orphan of a service adopted by
    the daemon (process-group mode) that exec'd itself with its mark back, with
    randomisation off and an environment of the same size, changed nothing else, and
    `hd stop -s` left it running (adv48 A/6)."""
    read = stat_and_image(pid)
    if read is None or read[1][0] in ("Z", "X"):
        return None
    image, fields = read
    ticks = int(fields[19])
    known = _MARKS.get(pid)
    if known is None or known[:2] != (ticks, image) or (known[2] is None and (
            int(fields[1]) == os.getpid() or
            (_AFRESH_SINCE is not None and ticks >= _AFRESH_SINCE))):
        known = (ticks, image, run_mark(pid))
        if known[2] is None and start_ticks(pid) != ticks:
            return None  # it ended as it was read: an ended process shows no environment
    return known, fields


_AFRESH_SINCE: int | None = None
"""Start ticks from which _read takes no "unmarked" from _MARKS (read_marks_afresh)."""


def read_marks_afresh(since: int | None) -> None:
    """While `since` is set, the environment of every process born since (in clock
    ticks: the daemon's own start) that had no mark is read at every reading: during a
    stack's shutdown no mark an exec gave a process is missed. Not every process's: a
    process older than the run cannot have inherited its mark, and a marked one stays
    the run's (its pid and start ticks unchanged); reading all of them made `hd down`
    of a 100-link chain take 11-15 s, four readings of /proc per link (adv49 B/4)."""
    global _AFRESH_SINCE
    _AFRESH_SINCE = since


def reading_ended() -> float:
    """When the last reading of /proc ended: one begun after it sees every process that
    was born while it ran (see Scope.empty)."""
    return _TABLE[1]


def reading_complete() -> bool:
    """Whether the last reading read every process alive when it ended: its last pass
    found none born since the one before (a chain re-forking with no pause at all
    keeps adding one, and each reading stopped short of it)."""
    return _TABLE[3]


def _marked(mark: str | None, prefix: str) -> bool:
    return mark is not None and (mark == prefix or mark.startswith(prefix + "/"))


def marked_pids(prefix: str, max_age: float = 0.0) -> list[int]:
    """Live processes whose mark equals `prefix` or starts with `prefix/`."""
    return sorted(pid for pid, (_, mark, _, _) in process_table(max_age).items()
                  if _marked(mark, prefix))


def pids_by_mark(prefix: str, max_age: float = 0.0) -> dict[str, list[int]]:
    """marked_pids, by their mark."""
    found: dict[str, list[int]] = {}
    for pid, (_, mark, _, _) in sorted(process_table(max_age).items()):
        if mark is not None and _marked(mark, prefix):
            found.setdefault(mark, []).append(pid)
    return found


def still_marked(prefix: str, table: dict[int, tuple[int, str | None, int, int]]
                 ) -> list[int]:
    """marked_pids from `table` (a shared reading), less those that ended since: each
    is checked by its start ticks (one small read), so a process gone since the reading
    is not counted and a pid reused by a stranger is never named."""
    return sorted(pid for pid, (_, mark, ticks, _) in table.items()
                  if _marked(mark, prefix) and start_ticks(pid) == ticks)


def group_pids(pgid: int, max_age: float = 0.0) -> list[int]:
    """Live members of a process group (killpg(pg, 0) would count zombies too)."""
    return sorted(pid for pid, (group, _, _, _) in process_table(max_age).items()
                  if group == pgid)


def descendants(roots: Iterable[int],
                table: dict[int, tuple[int, str | None, int, int]]) -> dict[int, int]:
    """Every live descendant of `roots` (not the roots) in `table` (a process_table):
    pid -> start ticks. A child that left both its service's cgroup (or group) and its
    mark (`env -i`, a sanitising launcher) is still its parent's child until that
    parent ends."""
    children: dict[int, list[int]] = {}
    for pid, (_, _, _, ppid) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, int] = {}
    todo = [pid for root in roots for pid in children.get(root, ())]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = table[pid][2]
            todo += children.get(pid, ())
    return found


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

def cgroup_pids(path: str | Path) -> list[int]:
    """Every process in a cgroup, and in the cgroups below it if it has any (a listing
    of a cgroup directory is ~30 control files: skip it when cgroup.stat says none)."""
    out: list[int] = []
    try:
        with open(os.path.join(path, "cgroup.procs")) as fh:
            out += [int(x) for x in fh.read().split()]
        with open(os.path.join(path, "cgroup.stat")) as fh:
            nested = "nr_descendants 0" not in fh.read()
    except OSError:
        return out
    if nested:
        for dirpath, _dirs, _files in os.walk(path):
            if os.path.samefile(dirpath, path):
                continue
            with contextlib.suppress(OSError), \
                    open(os.path.join(dirpath, "cgroup.procs")) as fh:
                out += [int(x) for x in fh.read().split()]
    return out


def cgroup_populated(path: str | Path) -> bool:
    try:
        with open(os.path.join(path, "cgroup.events")) as fh:
            return "populated 1" in fh.read()
    except FileNotFoundError:
        return False
    except OSError:
        return bool(cgroup_pids(path))


def cgroup_kill(path: str | Path) -> None:
    """SIGKILL everything in the cgroup: `cgroup.kill` (Linux 5.14+) or one by one."""
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as fh:
            fh.write("1")
        return
    except OSError:
        pass
    send(cgroup_pids(path), signal.SIGKILL)


def remove_cgroup(path: str | Path) -> None:
    """rmdir the tree bottom-up; a cgroup that still holds a process stays (EBUSY)."""
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda t: -len(t[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)



# ---- a service's processes --------------------------------------------------------------

class Scope:
    """The processes of one service run, whatever they did to their group, session,
    cgroup or environment.

    A child that leaves the cgroup (or the group) AND drops its mark (`env -i`, a
    launcher that cleans the environment) is still found as a descendant of a member,
    which it stays until its parent ends. `members` remembers such strays by pid and
    start ticks, so the escalation that began while their parent lived still ends them
    once it is gone. `roots` are more processes to end with the scope (and their
    descendants): what the daemon adopted as a subreaper, whose service is unknown."""

    def __init__(self, mark: str, cgroup: str | Path | None = None,
                 pgid: int | None = None, roots: Iterable[int] = (),
                 leader: int | None = None) -> None:
        """`leader`: the start ticks of the process that made group `pgid` (the
        service's main process), so a group made since under the same number is told
        apart (_group)."""
        self.mark = mark
        self.cgroup = cgroup
        self.pgid = pgid
        self.leader = leader
        self._strays: dict[int, int] = ticks_of(roots)

    def _group(self) -> int | None:
        """The process group, while it can still be the service's. Once its members
        are gone (the main process exited, a setsid child ignoring SIGTERM holding the
        stop), the kernel may give its number to a stranger that leads a group of its
        own: SIGKILL at the end of the stop went to that stranger's group (adv26 f/5).
        A live process of that pid that is not the main process means exactly that,
        and the group is given up for good."""
        if self.pgid is None or self.leader is None:
            return self.pgid
        ticks = start_ticks(self.pgid)
        if ticks is not None and ticks != self.leader:
            self.pgid = None
        return self.pgid

    def _strays_alive(self) -> list[int]:
        return [pid for pid, ticks in self._strays.items() if start_ticks(pid) == ticks]

    def members(self, max_age: float = 0.0) -> list[int]:
        """In cgroup mode the cgroup's members and the marked processes that moved
        out of it (a container runtime, `systemd-run --scope`: they keep the mark they
        inherited), read from a table at most TABLE_TTL old: the cgroup, read fresh,
        holds whatever was forked since, unless it also left within those 20 ms. Then,
        in either mode, the strays: descendants of those outside both."""
        # One reading for all of it: the descendants' look took a second one (always at
        # max_age 0, or when the first outlasted TABLE_TTL), and `empty` asked whether
        # that one was complete while the marked processes came from the first, which
        # had stopped short of a chain's newest link: "empty" with the chain running
        # (CI, stop 50).
        if self.cgroup is not None:
            table = process_table(max(max_age, TABLE_TTL))
            found = set(cgroup_pids(self.cgroup))
            if self.mark:
                found.update(still_marked(self.mark, table))
        else:
            table = process_table(max_age)
            pgid = self._group()
            found = {pid for pid, (group, mark, _, _) in table.items()
                     if (self.mark and _marked(mark, self.mark)) or (pgid and group == pgid)}
        found.update(self._strays_alive())
        for pid, ticks in descendants(found, table).items():
            if pid not in found:
                self._strays[pid] = ticks
                found.add(pid)
        return sorted(found)

    def empty(self) -> bool:
        """While polling: the cgroup's own flag, then the marked processes that left it
        and the strays; else the group first (one syscall), and only once it is empty
        the shared process-table reading (escapees).

        A marked process in the shared reading that has ended since may have forked
        first, its child born after that reading: "empty" then waits for a reading
        begun after it (_no_marked_left). A service process that re-forked itself
        every 20 ms (keeping its mark, leaving its cgroup) was found empty, and `hd
        stop` and `hd down` left it running (adv35 x/1)."""
        if self.cgroup is not None:
            if cgroup_populated(self.cgroup) or self._strays_alive():
                return False
            return not self.mark or self._no_marked_left()
        pgid = self._group()
        if pgid and group_has_members(pgid) and group_pids(pgid, TABLE_TTL):
            return False
        if self.members(TABLE_TTL):
            return False
        # "empty" is never said on a stale reading, nor on one that stopped short
        return not self.members() and reading_complete()

    def _no_marked_left(self) -> bool:
        """No process with the mark in a reading up to TABLE_TTL old, or in the reading
        after one whose marked processes have all ended since: each may have forked a
        successor first, born after that reading, and the reading after it may find
        that one gone in turn. Looked at once more only, a chain re-forking every 5 ms
        on a busy machine outlived `hd down` in 1 run of 35 (CI's rehearsal at b0840f4);
        a chain that outruns CHAIN_READINGS readings is "not empty", and its stop
        escalates to SIGKILL, which stops (Scope.kill) before it kills. Nor past
        CHAIN_LOOK_S: the daemon's loop waits on it, and readings of a /proc full of a
        chain's zombies held it for seconds (adv63)."""
        begun_after, began = -1.0, time.monotonic()
        for _ in range(CHAIN_READINGS):
            table = process_table(TABLE_TTL, begun_after)
            listed = [(pid, ticks) for pid, (_, mark, ticks, _) in table.items()
                      if _marked(mark, self.mark)]
            if not listed and reading_complete():
                return True
            if any(start_ticks(pid) == ticks for pid, ticks in listed) \
                    or time.monotonic() - began > CHAIN_LOOK_S:
                return False
            begun_after = reading_ended()
        return False

    def signal(self, *sigs: int) -> list[int]:
        """Each signal to every member, reading the members once; the members."""
        members = self.members()
        for sig in sigs:
            send(members, sig)
        return members

    def kill(self) -> None:
        """SIGKILL to every member. Outside a cgroup, each reading's members are stopped
        first (SIGSTOP), until a reading finds none still running, and then killed: a
        member that re-forked itself faster than a reading and the SIGKILL after it
        (every 5 ms) had a successor born in between each time, and outlived `hd stop`
        and `hd down` (adv44 L/2). A stopped process forks nothing, and the successor it
        forked before is in the next reading."""
        if self.cgroup is not None:
            members = self.members()  # strays are remembered before their parents die
            inside = set(cgroup_pids(self.cgroup))
            cgroup_kill(self.cgroup)
            outside = [pid for pid in members if pid not in inside]
            if outside:
                send(self._frozen(outside), signal.SIGKILL)
        else:
            send(self._frozen(self.members()), signal.SIGKILL)

    def _frozen(self, members: list[int]) -> list[int]:
        """`members` and every member found since, each stopped (SIGSTOP) the moment it
        is found: marked processes as /proc is read (a reading first and the signal
        after gave a successor every 5 ms time to be born in between), then the rest."""
        frozen: set[int] = set()
        fresh = members
        for _ in range(FREEZE_READINGS):
            send(fresh, signal.SIGSTOP)
            frozen.update(fresh)
            caught = self._stop_marked(frozen) if self.mark else False
            fresh = [pid for pid in self.members() if pid not in frozen]
            if not fresh and not caught:
                break
        return sorted(frozen)

    def _stop_marked(self, frozen: set[int]) -> bool:
        """One pass over /proc stopping each live process with this scope's mark as it
        is read (its newborns, listed after, in the same pass); whether any was new."""
        me, caught = os.getpid(), False
        for listed in _passes():
            for pid in listed:
                if pid == me or pid in frozen:
                    continue
                read = _read(pid)
                if read is None or not _marked(read[0][2], self.mark):
                    continue
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
                    frozen.add(pid)
                    caught = True
        return caught


def end_scopes(scopes: list[Scope], grace: float,
               note: Callable[[Scope, str], None] = lambda s, m: None) -> None:
    """Synchronous escalation for callers without an event loop (the guard, `down
    --force`, the tunnel): SIGTERM everything, SIGKILL what is left after `grace`,
    return once all are empty (or 5 more seconds passed)."""
    for scope in scopes:
        scope.signal(signal.SIGTERM, signal.SIGCONT)
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



def end_left_in(base: str | Path, grace: float,
                given_up: Callable[[Iterable[int]], set[int]] = lambda pids: set()) -> None:
    """End what is still in the run's own cgroup once the services' are empty: a process
    that moved itself there and cleared its environment belongs to no service's scope,
    and every `hd down` left it running, and the cgroup with it (adv35 x/2). The cgroup,
    named for the run's token, says it is ours. After the services' own ends, so none of
    theirs gets its stop signal twice."""
    left = Scope("", base)
    if left.empty():
        return
    members = left.members()
    if members and not set(members) - given_up(members):
        return  # a frozen one would hold `hd down` for the whole escalation again
    end_scopes([left], grace)


# ---- the orphan guard's main: runs this file in a bare interpreter ------------------------

def guard_main(argv: list[str]) -> None:
    """Read until EOF; `b` means a clean shutdown (leave quietly). EOF without it means
    the daemon died: end every process of its run, cgroup and mark alike, and the
    orphans it had adopted (argv after the grace, "PID TICKS" each, from the sh that
    waited: orphans.WAIT_THEN_END), each only while it is still the process it named."""
    token, base, grace = argv[0], argv[1], float(argv[2])
    for line in sys.stdin:
        if line.startswith("b"):
            return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    adopted = []
    for named in argv[3:]:
        pid, _, ticks = named.partition(" ")
        if pid.isdigit() and ticks.isdigit() and start_ticks(int(pid)) == int(ticks):
            adopted.append(int(pid))
    scopes = [Scope(token, roots=adopted)]
    if base != "-":
        with contextlib.suppress(OSError):
            scopes += [Scope(token, e.path) for e in os.scandir(base) if e.is_dir()]
    end_scopes(scopes, grace)
    if base != "-":
        end_left_in(base, grace)
        remove_cgroup(base)


if __name__ == "__main__":
    guard_main(sys.argv[1:])
