"""Cleaning up from the registry alone: for a dead daemon, or `down --force`.

The file's word is never proof. A process is signalled only when it is provably ours:
- it sits in a cgroup named for the recorded daemon's token (ownership.py), or
- it carries that token in its HIPPODROME_RUN environment mark.
A PID and start time that match are not proof: anyone can read them in /proc and copy
them into a file. A registry without a token (written before marks existed, or by hand)
has its live pids said, not signalled.
A recorded process group ID is never signalled as such: once its leader has exited the
number proves nothing, and a zombie leader says nothing about who else is in the group.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from hippo_tasks.errors.state_dir import StateDirError
from hippo_tasks.registry import outlived
from hippo_tasks.registry.store import (
    Data,
    Registry,
    boot_time,
    daemon_alive,
    is_same_process,
    stranger_daemon,
    writes_daemon_log,
)
from hippo_tasks.supervision.ownership import is_hippodrome_cgroup, project_tag
from hippo_tasks.supervision.scope import (
    Scope,
    end_scopes,
    group_pids,
    marked_pids,
    remove_cgroup,
    run_mark,
    start_ticks,
    stat_fields,
)

GRACE = 2.0


def _token(data: Data) -> str:
    """The recorded token, when it may be acted on: one tagged with the registry's own
    folder (ownership.new_token), or an untagged one from before tags (16 digits,
    which no tagged run's marks can match). A live stack's token copied into another
    folder's registry had that stack ended from there."""
    daemon = data.get("daemon") or {}
    token = daemon.get("token")
    if not (isinstance(token, str) and token.isalnum()):
        return ""
    if len(token) == 16:
        return token
    root = data.get("project_root")
    return token if isinstance(root, str) and token[:8] == project_tag(root) else ""


def leftovers(data: Data) -> tuple[list[Scope], dict[str, list[int]]]:
    """The scopes to end, and which live processes each recorded service still has."""
    token = _token(data)
    scopes: list[Scope] = []
    names: dict[str, list[int]] = {}
    if token:
        scopes.append(Scope(token))  # every process marked for this daemon run
        for pid in marked_pids(token):
            mark = run_mark(pid) or ""
            names.setdefault(mark.partition("/")[2] or "?", []).append(pid)
        daemon = data.get("daemon") or {}
        base = daemon.get("cgroup")
        if isinstance(base, str) and is_hippodrome_cgroup(Path(base), token):
            try:  # the daemon, finishing its own stop meanwhile, may remove it now: a
                subs = list(Path(base).iterdir())  # `down --force` raced it to a traceback
            except OSError:
                subs = []
            for sub in subs:
                if sub.is_dir() and is_hippodrome_cgroup(sub, token):
                    scope = Scope("", sub)
                    if scope.members():
                        names.setdefault(sub.name, []).extend(scope.members())
                    scopes.append(scope)
    return scopes, {n: sorted(set(p)) for n, p in names.items()}


def orphaned_groups(data: Data, written: float | None) -> dict[str, list[int]]:
    """Live members of a service's recorded process group whose main process (the
    group's leader) is gone, in the session that leader made, by service: to be named
    by `hd down`, never signalled. In process-group mode, after a `kill -9` of the
    daemon, a child that cleared its environment (`env -i`) and stayed in its service's
    group carries nothing else of the stack, and frozen, it outlived every `down` with
    no word (adv65 F2). A group's number proves less than a mark: not while any process
    has that pid (the kernel gives no pid that a live group still holds, so the group
    is not ours), nor for a member that started before the leader did, or after the
    registry was last `written` (its wall-clock time): the group's number may have been
    given to a stranger's session since the daemon died, whose leader exited, leaving a
    `sleep` it started (adv67 F2). Nor from a registry of another boot."""
    services = data.get("services")
    boot = boot_time()
    if not _token(data) or not isinstance(services, dict) or not _this_boot(data) or \
            written is None or boot is None:
        return {}
    hertz = os.sysconf("SC_CLK_TCK")
    found: dict[str, list[int]] = {}
    for name, entry in services.items():
        if not isinstance(entry, dict):
            continue
        pgid, created = entry.get("pgid"), entry.get("create_time")
        if not (isinstance(pgid, int) and not isinstance(pgid, bool) and pgid > 1
                and entry.get("pid") == pgid and isinstance(created, float | int)
                and not isinstance(created, bool)) or start_ticks(pgid) is not None:
            continue
        members = [pid for pid in group_pids(pgid) if _session(pid) == pgid and
                   (ticks := start_ticks(pid)) is not None and
                   created * hertz - 1 <= ticks <= (written + 1.0 - boot) * hertz]
        if members:
            found[name] = members
    return found


SAME_BOOT_S = 120.0
"""How far this boot's start may be from the one a registry's daemon implies (its wall
clock start less its seconds since boot) for the registry to be of this boot: its own
start-up, and a wall clock stepped a little since (NTP)."""


def _this_boot(data: Data) -> bool:
    """The registry was written in this boot, as far as its daemon's two start times
    tell: a registry from another boot named a group whose number now holds a stranger's
    processes, in a session whose leader had exited (a `nohup` job's), and `down` named
    them as the stack's. Unknown is no."""
    daemon = data.get("daemon") or {}
    started, created = daemon.get("started_at"), daemon.get("create_time")
    if not (isinstance(started, float | int) and isinstance(created, float | int)) or \
            isinstance(started, bool) or isinstance(created, bool):
        return False
    boot = boot_time()
    return boot is not None and abs(started - created - boot) < SAME_BOOT_S


def _session(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[3]) if fields is not None else None


def unproven(data: Data) -> list[str]:
    """Live pids a registry without a token of this folder's names as services: such a
    file comes from a Hippodrome before marks existed, was written by hand, or was
    copied from another folder, and a pid and start time anyone can read in /proc prove
    nothing. Said, never signalled; and a process that another run's mark shows to be a
    service of a stack (a copied registry names that stack's live services) is not one
    to advise ending (adv41 L/2)."""
    if _token(data):
        return []
    recorded = (data.get("daemon") or {}).get("token")
    tagged = isinstance(recorded, str) and recorded.isalnum() and len(recorded) > 16
    why = ("was written for another folder (its ownership token is another project's: a "
           "copy, or a backup restored here)" if tagged else "carries no ownership token")
    lines = []
    for name, entry in (data.get("services") or {}).items():
        pid, created = entry.get("pid"), entry.get("create_time")
        if not (isinstance(pid, int) and isinstance(created, float | int) and
                is_same_process(pid, created)):
            continue
        mark = run_mark(pid)
        if mark:
            service = mark.partition("/")[2] or "?"
            lines.append(f"the registry names pid {pid} as service '{name}', but it {why}, "
                         f"and pid {pid} is service '{service}' of another Hippodrome run "
                         "(its process carries that run's mark): it was not signalled; if "
                         "that stack is running, `hd down` in its folder ends it, and if its "
                         "daemon is gone, `hd down --force` there")
        else:
            lines.append(f"the registry names pid {pid} as service '{name}' but {why}, so "
                         "it was not signalled; if it is a leftover of this stack, end it "
                         f"yourself (kill {pid})")
    return lines


def end_leftovers(data: Data, grace: float = GRACE, state_dir: Path | None = None,
                  written: float | None = None) -> list[str]:
    """`state_dir`: where what outlives SIGKILL is listed for every later `down` (the
    registry that proves it the stack's is cleared next), and for the lines that say
    whether anything is left. `written`: when the registry `data` was read from was
    last written (orphaned_groups)."""
    scopes, names = leftovers(data)
    seen = {pid: start_ticks(pid) for pids in names.values() for pid in pids}
    killed: list[str] = []
    end_scopes(scopes, grace, lambda s, m: killed.append(m))
    lines = [_ended(name, pids, seen) for name, pids in sorted(names.items())] + \
        unproven(data)
    left = {name: alive for name, pids in names.items()
            if (alive := [pid for pid in pids if start_ticks(pid) == seen[pid]])}
    for name, pids in orphaned_groups(data, written).items():
        grouped = [pid for pid in pids if pid not in left.get(name, [])]
        if grouped:
            lines.append(f"leftover '{name}': pid {', '.join(map(str, grouped))} still runs "
                         "in its process group (it carries no mark: named, not signalled)")
            left[name] = sorted({*left.get(name, []), *grouped})
    if left and state_dir is not None:
        outlived.remember(state_dir, left)
    if killed:
        lines.append(f"some leftovers ignored SIGTERM for {grace:g}s: sent SIGKILL")
    base = (data.get("daemon") or {}).get("cgroup")
    token = _token(data)
    if token and isinstance(base, str) and is_hippodrome_cgroup(Path(base), token):
        remove_cgroup(Path(base))
    return lines


def _ended(name: str, pids: list[int], seen: dict[int, int | None]) -> str:
    """What became of a service's leftovers: "stopped" named a frozen one that SIGKILL
    could not end, and the line under it then said it still ran (adv65 F3)."""
    left = [pid for pid in pids if seen[pid] is not None and start_ticks(pid) == seen[pid]]
    gone = [pid for pid in pids if pid not in left]
    said = f"stopped leftover '{name}' (pids {', '.join(map(str, gone))})" if gone else \
        f"leftover '{name}'"
    if left:
        said += (f"{';' if gone else ':'} pid {', '.join(map(str, left))} outlived SIGKILL "
                 "and still runs")
    return said


def clean_stale(registry: Registry, data: Data) -> list[str]:
    """After a dead daemon: end what it left running, clear its entries. A live one
    provably not this folder's (stranger_daemon): its entries are only cleared. Quiet
    if clean."""
    daemon = data.get("daemon")
    if daemon is None and not data.get("services"):
        return []
    stranger = stranger_daemon(data, registry.root)
    if daemon_alive(data) and not stranger:
        return []
    lines = []
    if stranger:
        pid = (daemon or {}).get("pid")
        lines.append(f"found a stale registry entry: pid {pid} (recorded as the daemon) "
                     "runs, but is not this project's daemon (it writes no "
                     ".hippodrome/daemon.log here and runs elsewhere: a registry from "
                     "another boot, or a copy); it was not signalled")
        # Forgotten only: nothing it names is ended on this judgement (a daemon of ours
        # that could not open its daemon.log would write its registry again in 2 s).
        return lines + _clear_entries(registry)
    if daemon:
        lines.append(f"found a stale registry entry: daemon pid {daemon.get('pid')} is gone")
    lines += end_leftovers(data, state_dir=registry.dir, written=_written(registry))
    if daemon:  # stopped, it outlived its daemon and every `down` (adv66 F5); after the
        _wake_guard(daemon)  # leftovers' end, so what it would end is said here first
    lines += _clear_entries(registry)
    return lines


def force_down(registry: Registry) -> list[str]:
    """`down --force`: end the daemon (if ours), then every process of its run."""
    data = registry.read()
    lines = list(registry.warnings)
    daemon: dict[str, Any] = data.get("daemon") or {}
    if daemon_alive(data):
        pid = int(daemon["pid"])
        if holds_daemon_port(pid, daemon) and writes_daemon_log(pid, registry.root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            lines.append(f"killed daemon pid {pid}")
            _wake_guard(daemon)
        else:
            lines.append(
                f"pid {pid}, recorded as the daemon, is running but does not listen on "
                f"the daemon's port {daemon.get('port')} with this project's "
                ".hippodrome/daemon.log as its output: it was not signalled (the "
                "registry may come from another run, and the pid be someone else's). "
                f"If it is a hung Hippodrome daemon, end it yourself: kill {pid}")
    lines += end_leftovers(data, state_dir=registry.dir, written=_written(registry))
    if daemon and not daemon_alive(data):
        _wake_guard(daemon)
    lines += _clear_entries(registry)
    if not lines and not outlived.still_alive(registry.dir):  # `down` names those last
        lines.append("nothing to clean: no recorded process is running")
    return lines


def _written(registry: Registry) -> float | None:
    """When the registry file was last written, before it is cleared."""
    try:
        return registry.path.stat().st_mtime
    except OSError:
        return None


def _wake_guard(daemon: dict[str, Any]) -> None:
    """SIGCONT the run's orphan guard, proven by its command line (its name and the run's
    token): a stack stopped whole (a freezer, `kill -STOP` of every process) left it
    stopped for ever once the daemon was killed; awake, it reads the end of its pipe and
    ends what is left of the run, then itself."""
    pid, token = daemon.get("guard_pid"), daemon.get("token")
    if not isinstance(pid, int) or not isinstance(token, str) or not token:
        return
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return
    if b"hippodrome-guard" in argv and token.encode() in argv:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)


def holds_daemon_port(pid: int, daemon: dict[str, Any]) -> bool:
    """Half the proof that a live recorded daemon pid is the daemon: a pid and start
    time that match can still be copied or forged into the file with a stranger's
    values, but a daemon listens on its port for its whole life, hung or not. The port
    comes from the same file, so the other half is that its stderr is this project's
    daemon.log (store.writes_daemon_log): a stranger listening on a forged port was
    killed."""
    from hippo_tasks.supervision.ports import holder_of

    port = daemon.get("port")
    return isinstance(port, int) and holder_of(port)[0] == pid


def _clear_entries(registry: Registry) -> list[str]:
    """Forget the dead run; an unwritable registry is said, not fatal: what was ended
    stays ended, and entries naming gone processes are harmless."""
    try:
        registry.update(_clear)
    except StateDirError as exc:  # its own sentence says "nothing was started or stopped"
        return [f"could not clear the registry ({exc.path}: {exc.problem}): it still names "
                "processes that are gone, which is harmless; the next command that can "
                "write it clears them"]
    return []


def _clear(data: Data) -> None:
    data["daemon"] = None
    data["services"] = {}
