"""`hd up / down / status / start / stop / restart`: thin over the daemon API."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hippo_tasks.errors import (
    DaemonEndedError,
    DaemonNotRunningError,
    DaemonUnreachableError,
    EventsLeftError,
    ProductionGuardError,
    StateDirError,
    UnlistedDaemonError,
    UsageError,
)
from hippo_tasks.events import hooks
from hippo_tasks.registry.lifecycle_lock import LifecycleLock
from hippo_tasks.registry.store import Registry, daemon_alive, identity, is_same_process
from hippo_tasks.tasks.context import build_options, resolve_root
from hippo_tasks.tasks.declare import task
from hippo_tasks.tasks.output import RED, TaskExit, handles_errors, paint

if TYPE_CHECKING:  # the machinery for starting a stack is imported where `up` uses it
    from invoke.context import Context


UP_HELP = {
    "profile": "core | ecom | full (default core)",
    "cell": "local | staging | prod (default local)",
    "table-prefix": "DynamoDB table prefix (default dev-{git branch}-)",
    "project-root": "project folder (default: nearest parent with hippodrome.toml or tasks.py)",
    "enable-events": "tunnel + EventBridge rule to real AWS (see README, Events)",
    "seed": "seed data once the stack is ready (--no-seed to skip)",
    "only": "comma-separated services to start (with what they depend on)",
    "port-offset": "shift every port by N (or HIPPODROME_PORT_OFFSET)",
    "detach": "return once every blocking service is ready; the daemon keeps running",
    "yes": "confirm --cell prod when stdin is not a terminal",
    "quiet": "foreground: only Hippodrome's own lines and services' warning/error lines",
    "show": "foreground: only these services' lines, comma-separated (the files get all)",
    "record": "record webhook deliveries to .hippodrome/events/ (--no-record to turn off)",
}


def _guard_prod(cell: str, yes: bool) -> None:
    if cell != "prod":
        return
    print(paint("WARNING: Connecting to PRODUCTION cell!", RED, sys.stderr), file=sys.stderr)
    if not yes and not sys.stdin.isatty():
        raise ProductionGuardError()


@task(help=UP_HELP)
@handles_errors
def up(c: Context, profile: str = "core", cell: str = "local", table_prefix: str = "",
       project_root: str = "", enable_events: bool = False, seed: bool = True,
       only: str | None = None,
       port_offset: str | None = None, detach: bool = False, yes: bool = False,
       quiet: bool = False, show: str = "", record: bool = True) -> None:
    """Start the control daemon and the profile's services in dependency order."""
    _guard_prod(cell, yes)
    if not enable_events:  # which makes a token of its own
        hooks.webhook_token()  # one no request can send: refused before anything starts
    if detach and (quiet or show):
        raise UsageError("--quiet and --show shape the foreground terminal; a detached "
                         "stack's output is in its log files: `hd logs --service NAME`")
    root = resolve_root(project_root)
    lock = LifecycleLock(root)
    lock.acquire("up", _say)
    try:
        _up_locked(root, lock, profile, cell, table_prefix, enable_events, seed, only,
                   port_offset, detach, quiet=quiet, show=show, record=record)
    finally:
        lock.release()


def _up_locked(root: Path, lock: LifecycleLock, profile: str, cell: str, table_prefix: str,
               enable_events: bool, seed: bool, only: str | None, port_offset: str | None,
               detach: bool, *, quiet: bool = False, show: str = "",
               record: bool = True) -> None:
    """`up` while holding the project's lifecycle lock; the lock is let go as soon as
    the daemon serves (detached: the daemon lets go of the copy it inherited)."""
    from hippo_tasks.daemon.launch import prepare
    from hippo_tasks.model.plan import left_out_dependencies
    from hippo_tasks.supervision.ownership import hand_run_token

    registry = Registry(root)
    hooks.recover(registry, _say)
    hand_run_token(str(root))  # before anything `up` starts itself (the events tunnel)
    token = hooks.prepare_token() if enable_events else None
    opts = build_options(root=root, profile=profile, cell=cell, table_prefix=table_prefix,
                         only=only, offset=port_offset, skip=() if seed else ("seed",),
                         record=record)
    print(f"hippodrome | project {root}  profile {opts.profile}  cell {opts.cell}  "
          f"table prefix {opts.table_prefix}", flush=True)
    plan, registry = prepare(opts, registry=registry)
    for line in left_out_dependencies(plan):
        _say(line)
    shown = _shown_services(show, plan.names)
    session = hooks.start_session(plan, registry, token, _say) if token else None
    if detach:
        try:
            from hippo_tasks.tasks.detached import up_detached

            pid = up_detached(plan, registry, lock, tls=session is not None)
        except BaseException:
            if session is not None:
                session.close()
            raise
        if session is not None:
            try:
                session.hand_over(pid)  # the daemon deletes them when it shuts down
            except StateDirError as exc:  # the stack runs: not "nothing was started" (q/6)
                _say(f"warning: the --enable-events resources could not be handed to the "
                     f"daemon in {exc.path} ({exc.problem}): `hd down` deletes them, but "
                     "the daemon alone (a kill, a crash) will not")
        return
    from hippo_tasks.daemon.main import run_engine  # the engine, only when we become it
    from hippo_tasks.supervision.printer import TerminalPrinter, use_colour

    printer = TerminalPrinter(sys.stdout.buffer, use_colour(), names=plan.names, quiet=quiet,
                              show=shown)
    printer.answer_signals()  # SIGUSR1 / Ctrl+T (SIGINFO): the dashboard line again
    try:
        code = run_engine(plan, registry, printer, on_serving=lock.release)
    finally:
        if session is not None:
            session.close()
    if code:
        raise TaskExit(code)


def _say(line: str) -> None:
    print(f"hippodrome | {line}", flush=True)


def _shown_services(show: str, names: tuple[str, ...]) -> tuple[str, ...] | None:
    """`--show a,b` checked against the stack: None shows every service."""
    from hippo_tasks.errors import did_you_mean

    if not show.strip():
        return None
    wanted = tuple(n.strip() for n in show.split(",") if n.strip())
    for name in wanted:
        if name not in names:
            raise UsageError(f"--show names '{name}', which is not in this stack (services: "
                             f"{', '.join(names)}){did_you_mean(name, names)}")
    return wanted



@task(help={"force": "clean up from the registry without the daemon (kills recorded groups)",
            "project-root": UP_HELP["project-root"]})
@handles_errors
def down(c: Context, force: bool = False, project_root: str = "") -> None:
    """Stop every service and the daemon."""
    from hippo_tasks.registry.store import daemon_log_writers

    try:
        root = resolve_root(project_root)
    except UsageError:  # a folder deleted under its running stack: `rm -rf proj`
        gone = Path(project_root).expanduser().absolute() if project_root else None
        if gone is None or gone.exists() or not daemon_log_writers(gone):
            raise
        # ... its daemon still writes the deleted daemon.log: "no such folder", exit 2,
        # and the stack ran on, its ports held, with no word of a way out (q/8).
        _kill_unlisted_daemons(gone) if force else _stop_unlisted_daemons(gone)
        print(f"hippodrome | stack stopped, daemon exited (its folder {gone} is gone)")
        return
    try:
        state_dir = Registry(root).state_dir_exists()
    except StateDirError:  # a file where `.hippodrome` belongs
        moved = _renamed_state_writer(root)  # `mv .hippodrome x` first, not `rm` (r/2)
        if not daemon_log_writers(root) and moved is None:
            raise
        # ... put there under a running stack: down and down --force said "nothing was
        # started or stopped", exit 10, and left it running (q/5).
        also = [moved[0]] if moved is not None else []
        _kill_unlisted_daemons(root, also=also) if force else \
            _stop_unlisted_daemons(root, also=also)
        print("hippodrome | stack stopped, daemon exited")
        _say(f"a file stands where {root / '.hippodrome'} belongs (the stack's state "
             "folder): move it away before the next `hd up`")
        return
    # No .hippodrome: none is made for the lock (it stayed behind) unless a process
    # still writes this folder's daemon.log, deleted with it (`git clean -xdf`, `rm -rf
    # .hippodrome`): "nothing to stop", exit 0, left that stack running.
    if not state_dir and not daemon_log_writers(root) and not _state_moved_back(root):
        print("hippodrome | no daemon was running; nothing to stop")
        return
    with LifecycleLock(root).held("down --force" if force else "down", _say, required=False):
        left = _down_locked(root, force)
    if left:  # the stack is down, the job is not: the last line, and no exit 0
        raise EventsLeftError(left)


def _renamed_state_writer(root: Path) -> tuple[int, str] | None:
    """(pid, path) of the daemon of a `.hippodrome` renamed or moved away (`mv
    .hippodrome x`, `mv .hippodrome ../backup`): it runs in this folder, writes a
    `daemon.log` wherever that went, and writes this folder's `.logs/` (its run's log
    files). All three, so no other program is ever taken for it."""
    from hippo_tasks.supervision.scope import all_pids, opened_to_write

    here, logs = str(root), str(root / ".logs") + "/"
    for pid in all_pids():
        with contextlib.suppress(OSError, ValueError, StopIteration):
            if pid == os.getpid() or os.readlink(f"/proc/{pid}/cwd") != here:
                continue
            log, runs = None, False
            for fd in os.listdir(f"/proc/{pid}/fd"):
                path = os.readlink(f"/proc/{pid}/fd/{fd}").removesuffix(" (deleted)")
                if path.endswith("/daemon.log") and opened_to_write(pid, fd):
                    log = path
                elif path.startswith(logs) and opened_to_write(pid, fd):
                    runs = True
            if log is not None and runs:
                return pid, log
    return None


def _state_moved_back(root: Path, within: float = 3.0) -> bool:
    """`.hippodrome` renamed under the running stack (`mv .hippodrome x`): its daemon,
    which runs in this folder and writes `x/daemon.log`, makes `.hippodrome` again at
    its next look (2 s). `down` said "nothing to stop" in between, and the stack ran
    on (q/14). Whether one was found, and its state is back."""
    writer = _renamed_state_writer(root)
    if writer is None:
        return False
    _say(f"pid {writer[0]} runs here and writes {writer[1]}: the stack's state folder was "
         "moved or renamed; waiting for its daemon to write .hippodrome again")
    registry = Registry(root)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if registry.state_dir_exists() and daemon_alive(registry.read()):
            return True
        time.sleep(0.1)
    return registry.state_dir_exists()


def _down_locked(root: Path, force: bool) -> int:
    """Stop the stack; how many `--enable-events` resources could not be deleted."""
    from hippo_tasks.daemon.client import DaemonClient

    registry = Registry(root)
    if not force:
        try:
            client = DaemonClient.for_project(root)
            born = identity(client.pid)  # now: a daemon asked to stop leaves the registry
            client.shutdown()
            _say(f"stopping the stack (daemon pid {client.pid})...")
            _wait_daemon_gone(registry, client.pid, born)
            _end_what_a_dead_daemon_left(registry, client.pid)
            hooks.wait_for_owners(registry, _say)
            left = hooks.recover(registry, _say)
            print("hippodrome | stack stopped, daemon exited")
            return left
        except DaemonEndedError as exc:  # killed while it answered: what it left, now
            print(f"hippodrome | {exc.message()}\nhippodrome | cleaning up from the registry")
        except DaemonNotRunningError as exc:
            if exc.detail:
                print(f"hippodrome | {exc.detail}")
            stopped = _stop_unlisted_daemons(root)
            hooks.wait_for_owners(registry, _say)
            left = hooks.recover(registry, _say)
            print("hippodrome | stack stopped, daemon exited" if stopped else
                  "hippodrome | no daemon was running; nothing to stop")
            return left
        except DaemonUnreachableError as exc:
            if _finishing_a_shutdown(registry, exc.pid):
                _say(f"the daemon (pid {exc.pid}) no longer listens but is still ending: "
                     "it is finishing a shutdown an earlier `hd down` (or a signal) began; "
                     "waiting for it")
                _wait_daemon_gone(registry, exc.pid, identity(exc.pid))
                _end_what_a_dead_daemon_left(registry, exc.pid)
                hooks.wait_for_owners(registry, _say)
                left = hooks.recover(registry, _say)
                print("hippodrome | stack stopped, daemon exited")
                return left
            print(f"hippodrome | {exc.message()}\nhippodrome | cleaning up from the registry")
    from hippo_tasks.registry.cleanup import force_down
    from hippo_tasks.registry.store import daemon_alive

    # The registry names no daemon while one writes this folder's daemon.log (`git
    # clean -xdf` a moment ago): "nothing to clean", exit 0, left the stack running.
    stopped = force and not daemon_alive(registry.read()) and _kill_unlisted_daemons(root)
    for line in force_down(registry):
        if not (stopped and line.startswith("nothing to clean")):
            _say(line)
    if stopped:
        print("hippodrome | stack stopped, daemon exited")
    return hooks.recover(registry, _say, force=True)


def _finishing_a_shutdown(registry: Registry, pid: int) -> bool:
    """The recorded daemon still writes this folder's daemon.log but has closed its
    port: only a daemon past its shutdown's last answer does that (it deletes its
    `--enable-events` resources, ends its tunnel, then exits). After a killed `hd down`,
    the next one told the user to kill it and ran a forced clean-up beside its own (x/9)."""
    from hippo_tasks.registry.cleanup import holds_daemon_port
    from hippo_tasks.registry.store import writes_daemon_log

    daemon = registry.read().get("daemon") or {}
    return daemon.get("pid") == pid and writes_daemon_log(pid, registry.root, writing=True) \
        and not holds_daemon_port(pid, daemon)


def _kill_unlisted_daemons(root: Path, grace: float = 5.0, also: list[int] | None = None
                           ) -> bool:
    """`down --force`'s end for daemons the registry does not name: asked to stop (they
    end their services), killed after `grace` (their guard then ends the services).
    Whether there was one."""
    from hippo_tasks.errors import UnlistedDaemonError

    try:
        return _stop_unlisted_daemons(root, timeout=grace, also=also)
    except UnlistedDaemonError as exc:
        for pid in exc.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _say(f"pid {', '.join(map(str, exc.pids))} did not stop within {grace:g}s of "
             "SIGTERM: killed (its guard ends the services)")
        return True


def _stop_unlisted_daemons(root: Path, timeout: float = 120.0, also: list[int] | None = None
                           ) -> bool:
    """Daemons of this project the registry does not name (it was damaged, and their
    daemon could not write it again: a read-only `.hippodrome`, a stopped daemon):
    proven ours by the daemon.log they write, asked to stop as `hd up`'s Ctrl+C does
    (SIGTERM: the daemon ends its services), and waited for. A registry truncated under
    a running stack made `down` say "nothing to stop" and leave everything running."""
    from hippo_tasks.registry.store import daemon_log_writers, writes_daemon_log
    from hippo_tasks.supervision.scope import start_ticks

    asked = {}
    for pid in [*daemon_log_writers(root), *(also or ())]:
        born = start_ticks(pid)
        if born is None or pid in asked or (
                pid not in (also or ()) and not writes_daemon_log(pid, root, writing=True)):
            continue
        _say(f"the registry names no daemon, but pid {pid} writes this project's "
             ".hippodrome/daemon.log: stopping it and its services (SIGTERM)")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)  # a stopped one hears it too
        asked[pid] = born
    deadline = time.monotonic() + timeout
    while any(start_ticks(p) == born for p, born in asked.items()):
        if time.monotonic() >= deadline:
            raise UnlistedDaemonError([p for p, born in asked.items()
                                       if start_ticks(p) == born], timeout)
        time.sleep(0.05)
    return bool(asked)


def _end_what_a_dead_daemon_left(registry: Registry, pid: int) -> None:
    """A daemon that died mid-stop (kill -9) left its entry, and services its guard is
    still ending: `down` said "stack stopped" with one still running. What the registry
    proves ours is ended here, before that is said."""
    data = registry.read()
    if (data.get("daemon") or {}).get("pid") != pid:
        return  # it finished its stop and cleared its entry
    from hippo_tasks.registry.cleanup import clean_stale, leftovers

    # It may have stopped every service and only failed to write (a full or read-only
    # disk): that was said as "ended before it finished", above "stack stopped".
    finished = not leftovers(data)[1]
    _say(f"the daemon (pid {pid}) stopped the stack but could not clear its registry entry"
         if finished else f"the daemon (pid {pid}) ended before it finished stopping the "
         "stack")
    for line in clean_stale(registry, data):
        if not (finished and line.startswith("found a stale registry entry")):
            _say(line)


def _wait_daemon_gone(registry: Registry, pid: int, born: float | None,
                      timeout: float = 120.0) -> None:
    """Until the daemon left the registry and its process has ended: it removes its
    entry before its interpreter exits, and `down` must not return while it lives.
    `born` is its start, read before it was asked to stop: read after, from a registry
    it had already cleared, it was none, and `down` returned while the daemon lived."""
    from hippo_tasks.supervision.scope import is_stopped
    from hippo_tasks.tasks.detached import STOPPED_GIVE_UP_S

    deadline = time.monotonic() + timeout
    stopped_since: float | None = None
    while time.monotonic() < deadline:
        data = registry.read()
        daemon = data.get("daemon") or {}
        if (daemon.get("pid") != pid or not daemon_alive(data)) \
                and not is_same_process(pid, born):
            return
        # Stopped (SIGSTOP, a debugger) mid-shutdown, it would never finish: waited on
        # for the whole 120 s, where a `down` that finds it stopped gives up in 10.
        stopped_since = (stopped_since or time.monotonic()) if is_stopped(pid) else None
        if stopped_since is not None and time.monotonic() - stopped_since >= STOPPED_GIVE_UP_S:
            raise DaemonUnreachableError(str(daemon.get("url") or "its address"), pid,
                                         f"stopped (SIGSTOP, Ctrl+Z or a debugger) for "
                                         f"{STOPPED_GIVE_UP_S:g}s while it shut the stack down")
        time.sleep(0.05)
    url = str(daemon.get("url") or "its address")
    raise DaemonUnreachableError(url, pid, f"still shutting the stack down {timeout:g}s after "
                                           "it was asked (a large stack may need longer: run "
                                           "`hd down` again to keep waiting)")


