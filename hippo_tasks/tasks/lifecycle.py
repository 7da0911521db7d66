"""`hd up / down / status / start / stop / restart`: thin over the daemon API."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hippo_tasks.errors import (
    DownLeftError,
    HippoError,
    LifecycleBusyError,
    ProductionGuardError,
    StackShutDownError,
    UsageError,
)
from hippo_tasks.errors.daemon import (
    DaemonAlreadyRunningError,
    DaemonEndedError,
    DaemonNotRunningError,
    DaemonUnreachableError,
)
from hippo_tasks.errors.state_dir import SharedStateDirError, StateDirError
from hippo_tasks.events import hooks
from hippo_tasks.registry.lifecycle_lock import WAIT_S, LifecycleLock
from hippo_tasks.registry.store import Registry, daemon_alive, identity, is_same_process
from hippo_tasks.tasks.context import build_options, check_switches, resolve_root
from hippo_tasks.tasks.declare import task
from hippo_tasks.tasks.output import RED, TaskExit, handles_errors, paint
from hippo_tasks.tasks.unlisted_daemons import (
    finishing_a_shutdown,
    kill_unlisted,
    renamed_state_writer,
    say,
    state_moved_back,
    stop_unlisted,
)
from hippo_tasks.terminal_text import as_typed

if TYPE_CHECKING:  # the machinery for starting a stack is imported where `up` uses it
    from collections.abc import Iterator

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
       project_root: str | None = None, enable_events: bool = False, seed: bool = True,
       only: str | None = None,
       port_offset: str | None = None, detach: bool = False, yes: bool = False,
       quiet: bool = False, show: str | None = None, record: bool = True) -> None:
    """Start the control daemon and the profile's services in dependency order."""
    with _said_if_interrupted():  # (and waiting for another's `up` or `down`)
        _guard_prod(cell, yes)
        if not enable_events:  # which makes a token of its own
            hooks.webhook_token()  # one no request can send: refused before anything starts
        if detach and (quiet or show is not None):
            raise UsageError("--quiet and --show shape the foreground terminal; a detached "
                             "stack's output is in its log files: `hd logs --service NAME`")
        if show is not None and not show.replace(",", "").strip():  # as `--only ''` is
            raise UsageError(f"--show {show!r} names no service; give names, `--show a,b`, "
                             "or leave --show out for every service's lines")
        check_switches()
        root = resolve_root(project_root)
        lock = LifecycleLock(root)
        lock.acquire("up", say)
    try:
        if lock.down_meanwhile():
            waited = f" while this `up` waited for {lock.waited_for}" if lock.waited_for else ""
            raise StackShutDownError(f"a `hd down` given after this `up` has run{waited}: "
                                     "not starting the stack (`hd up` starts it)")
        _up_locked(root, lock, profile, cell, table_prefix, enable_events, seed, only,
                   port_offset, detach, quiet=quiet, show=show, record=record)
    finally:
        lock.release()


def _up_locked(root: Path, lock: LifecycleLock, profile: str, cell: str, table_prefix: str,
               enable_events: bool, seed: bool, only: str | None, port_offset: str | None,
               detach: bool, *, quiet: bool = False, show: str | None = None,
               record: bool = True) -> None:
    """`up` while holding the project's lifecycle lock; the lock is let go as soon as
    the daemon serves (detached: the daemon lets go of the copy it inherited)."""
    from hippo_tasks.daemon.launch import prepare
    from hippo_tasks.model.plan import left_out_dependencies
    from hippo_tasks.supervision.ownership import hand_run_token

    with _said_if_interrupted():
        registry = Registry(root)
        hooks.recover(registry, say)
        run_token = hand_run_token(str(root))  # before anything `up` starts (events tunnel)
        if detach:
            from hippo_tasks.daemon.seed import prime

            prime(run_token)  # its cgroup made while the stack is checked (daemon/seed.py)
        token = hooks.prepare_token() if enable_events else None
        opts = build_options(root=root, profile=profile, cell=cell,
                             table_prefix=table_prefix, only=only, offset=port_offset,
                             skip=() if seed else ("seed",), record=record
                             )._replace(up_started=lock.started)
        print(f"hippodrome | project {as_typed(str(root))}  profile "
              f"{as_typed(opts.profile)}  cell {as_typed(opts.cell)}  table prefix "
              f"{opts.table_prefix}", flush=True)
        plan, registry = prepare(opts, say, registry=registry,  # `hippodrome | ` lines
                                 check=lambda plan: _shown_services(show, plan.names))
        if plan.file_stamp is None:
            # said: a stack file an editor deleted and wrote again (rm, then cp) just as
            # `up` read it ran the bundled stack with no word of why (adv37 t/2)
            say(f"no hippodrome.toml in {as_typed(str(root))}: running the bundled stack "
                "(`hd init` writes a stack file of your own)")
        for line in left_out_dependencies(plan):
            say(line)
        from hippo_tasks.daemon.connections import short_of_descriptors

        short = short_of_descriptors(len(plan.services))
        if short is not None:
            say(f"warning: {short}")
        shown = _shown_services(show, plan.names)
    session = hooks.start_session(plan, registry, token, say) if token else None
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
                say(f"warning: the --enable-events resources could not be handed to the "
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


class _Signalled(BaseException):
    """A shutdown signal (SIGTERM, SIGHUP, ...) before the stack started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _signalled(signum: int, _frame: object) -> None:
    raise _Signalled(signum)


@contextlib.contextmanager
def _said_if_interrupted() -> Iterator[None]:
    """A Ctrl+C, SIGTERM or SIGHUP (any signal that shuts a stack down) while `up` waits
    for the lock or checks the stack, before anything starts: exit 128 + its number with
    the sentence every other command says. Ctrl+C was 130 in silence, or after the
    `project ...` line alone (adv58 F3); the others ended `up` by their default action,
    with no word (adv60 3). The same signals as the detached wait takes (not those
    ignored when `up` started), given back on the way out (the detached wait and the
    engine set their own)."""
    from hippo_tasks.daemon.shutdown_signals import taken_by_up

    mine: dict[int, Any] = {}
    with contextlib.suppress(ValueError):  # not the main thread: none taken
        for number in taken_by_up():
            mine[number] = signal.signal(number, _signalled)
    try:
        yield
    except (KeyboardInterrupt, _Signalled) as exc:
        number = exc.signum if isinstance(exc, _Signalled) else int(signal.SIGINT)
        name = "Ctrl+C" if number == signal.SIGINT else signal.Signals(number).name
        with contextlib.suppress(OSError):
            print(f"hippodrome: interrupted ({name}) before the stack started: nothing was "
                  "started", file=sys.stderr, flush=True)
        raise TaskExit(128 + number) from None
    finally:
        for number, before in mine.items():
            signal.signal(number, before)


def _shown_services(show: str | None, names: tuple[str, ...]) -> tuple[str, ...] | None:
    """`--show a,b` checked against the stack: None shows every service. An empty one
    (a script's unset variable) was taken for every service; `up` refuses it first."""
    from hippo_tasks.errors import did_you_mean

    if show is None:
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
def down(c: Context, force: bool = False, project_root: str | None = None) -> None:
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
        kill_unlisted(gone) if force else stop_unlisted(gone)
        print(f"hippodrome | stack stopped, daemon exited (its folder {gone} is gone)")
        return
    try:
        state_dir = Registry(root).state_dir_exists()
    except StateDirError as exc:  # a file (or another's link) where `.hippodrome` belongs
        moved = renamed_state_writer(root)  # `mv .hippodrome x` first, not `rm` (r/2)
        if not daemon_log_writers(root) and moved is None:
            raise
        # ... put there under a running stack: down and down --force said "nothing was
        # started or stopped", exit 10, and left it running (q/5).
        also = [moved[0]] if moved is not None else []
        kill_unlisted(root, also=also) if force else \
            stop_unlisted(root, also=also)
        print("hippodrome | stack stopped, daemon exited")
        say(f"{root / '.hippodrome'} is a symbolic link (to {exc.target}): remove the "
            "link before the next `hd up`"
            if isinstance(exc, SharedStateDirError) else
            f"a file stands where {root / '.hippodrome'} belongs (the stack's state "
            "folder): move it away before the next `hd up`")
        return
    # No .hippodrome: none is made for the lock (it stayed behind) unless a process
    # still writes this folder's daemon.log, deleted with it (`git clean -xdf`, `rm -rf
    # .hippodrome`): "nothing to stop", exit 0, left that stack running.
    if not state_dir and not daemon_log_writers(root) and not state_moved_back(root):
        print("hippodrome | no daemon was running; nothing to stop")
        _say_stack_above(root)
        return
    lock = LifecycleLock(root)
    try:
        lock.acquire("down --force" if force else "down", say, required=False,
                     wait=FORCE_OVER_DOWN_S if force else WAIT_S,
                     give_up=lambda: _stopped_daemon(root))
    except KeyboardInterrupt:  # waiting for another's lock: 130 and no word (adv29 n/2)
        if lock.waited_for:
            print(f"hippodrome | stopped waiting; {lock.waited_for} goes on with this stack "
                  "(`hd status` shows where it is; `hd down --force` ends it now)",
                  file=sys.stderr, flush=True)
        raise
    except LifecycleBusyError as busy:
        if not force:  # 300 s already: a second wait made it 600 (adv34 v/6)
            raise
        if not busy.holder.startswith("`down`"):
            lock.acquire("down --force", say, required=False)  # an `up`: waited for
        else:  # a graceful down waiting out a stop_timeout: what --force is for (a/9)
            say(f"{busy.holder} is still stopping the stack gracefully: --force ends "
                "what is left now")
    after = lock.waited_for if (lock.waited_for or "").startswith("`down") else None
    before = _peek(root)
    if lock.fd is not None:
        lock.mark_down()
        later = _up_given_later(root, before, lock.started)
        if later is not None:
            lock.release()
            raise later
    try:
        left = _down_stopped(root) if lock.given_up else _down_locked(root, force, after)
        _sweep_cgroups(root)
    finally:
        lock.release()
    running = _still_running(root, before)
    if left or running:  # the stack is down, the job is not: the last line, and no exit 0
        raise DownLeftError(left, running)


def _outlived(root: Path) -> bool:
    """Whether processes of the stack still run that outlived its stops (the list the
    daemon, or the clean-up after a dead one, keeps): the lines above the last one, which
    names them, said "nothing to stop" and "what it left is cleaned up" (adv66 F3, F4)."""
    from hippo_tasks.registry import outlived

    return bool(outlived.still_alive(root / ".hippodrome"))


def _nothing_to_stop(root: Path) -> str:
    return ("no daemon was running; what outlived the last one still runs (below)"
            if _outlived(root) else "no daemon was running; nothing to stop")


def _peek(root: Path) -> dict[str, Any]:
    """The registry as it is before anything is stopped, read without a side effect (the
    stop reads it again, and says what a damaged or another folder's registry is);
    empty when it cannot be read."""
    try:
        return Registry(root).peek()
    except (HippoError, OSError):
        return {}


def _still_running(root: Path, before: dict[str, Any]) -> dict[str, list[int]]:
    """What of this stack still lives, by service: what the registry as it was before
    the stop proves the stack's (its run's mark and cgroups, as `down --force` finds
    them), and what a daemon wrote down as outliving its stops (registry/outlived.py):
    a process SIGKILL could not reach (frozen, stuck in the kernel) or a chain that
    outran it. Only the daemon's output said so, and `down` said "stack stopped", exit 0
    (adv63 F3)."""
    from hippo_tasks.registry import outlived

    state = root / ".hippodrome"
    found = outlived.still_alive(state)
    if before.get("daemon"):
        from hippo_tasks.registry.cleanup import leftovers

        # (A member of a recorded group whose leader is gone is named by the clean-up
        # after a dead daemon, which keeps it in the list: cleanup.orphaned_groups.)
        proven = leftovers(before)[1]
        for service, pids in proven.items():
            found[service] = sorted({*found.get(service, []), *pids})
        if proven:
            outlived.remember(state, proven)
    return found


def _up_given_later(root: Path, data: dict[str, Any], started: float | None
                    ) -> DaemonAlreadyRunningError | None:
    """The running stack, when the `up` that started it was given after this `down`
    (`started`): an `up` that reached the lifecycle lock first, and then a `down` given
    before it that waited, stopped the stack the last command had asked for (adv62 F1).
    Not for a stack started by an `up` of an earlier version, which records no time."""
    if started is None:
        return None
    daemon = data.get("daemon")
    if not isinstance(daemon, dict) or not daemon_alive(data):
        return None
    up_started = daemon.get("up_started")  # a number: the registry's schema checks it
    if up_started is None or up_started <= started:
        return None
    found = DaemonAlreadyRunningError(str(root), str(daemon.get("url", "?")),
                                      int(daemon["pid"]))
    found.given_later = True
    return found


def _down_stopped(root: Path) -> int:
    """Down of a stack whose daemon stopped before it served: ended by its daemon.log,
    as an unlisted one is. Asked through the client, it waited another 300 s for the
    `up` that started it (adv47 G/2)."""
    registry = Registry(root)
    stopped = stop_unlisted(root)
    hooks.wait_for_owners(registry, say)
    left = hooks.recover(registry, say)
    print("hippodrome | stack stopped, daemon exited" if stopped else
          f"hippodrome | {_nothing_to_stop(root)}")
    return left


def _stopped_daemon(root: Path) -> str | None:
    """A daemon of this project stopped (SIGSTOP, a debugger) before it served holds
    the lock `up` handed it, and can never let go of it: `hd down` waited on it for 300
    s, calling it "not Hippodrome's" (adv44 L/5). Down ends it without the lock."""
    from hippo_tasks.registry.store import daemon_log_writers
    from hippo_tasks.supervision.scope import is_stopped

    for pid in daemon_log_writers(root):
        if is_stopped(pid):
            return (f"the daemon (pid {pid}) that holds it is stopped (SIGSTOP, a "
                    "debugger) and cannot let go of it; ending it")
    return None


def _sweep_cgroups(root: Path) -> None:
    """Empty cgroups an earlier run of this project left (supervision.ownership says
    when), once the stack is down; a daemon still named alive keeps its own."""
    from hippo_tasks.registry.store import daemon_alive
    from hippo_tasks.supervision.ownership import sweep_leftovers

    try:
        data = Registry(root).read()
    except HippoError:
        return
    keep = data["daemon"].get("cgroup") if daemon_alive(data) else None
    sweep_leftovers(str(root), keep if isinstance(keep, str) else None)


FORCE_OVER_DOWN_S = 1.0
"""How long `down --force` waits for the lifecycle lock before it overrides a graceful
`down` that holds it: that one waited out every stop_timeout (up to a day), and --force,
the way out the docs give, waited behind it (adv24 a/9)."""


def _say_stack_above(root: Path) -> None:
    """Where this folder has no stack file (a subfolder of a project whose
    hippodrome.toml a checkout deleted), a stack still running in a folder above is
    named: `cd src; hd down` said "nothing to stop", exit 0, and it ran on (adv36 f/6).
    One look at /proc per folder above that has a daemon.log."""
    if (root / "hippodrome.toml").exists():
        return
    from hippo_tasks.registry.store import daemon_log_writers

    for folder in root.parents:
        if (folder / ".hippodrome" / "daemon.log").is_file() and daemon_log_writers(folder):
            say(f"a stack is running in {folder} (which has no hippodrome.toml now, so this "
                f"folder was taken for the project): `hd down -p {shlex.quote(str(folder))}` "
                "stops it")
            return


def _of_folder(root: Path) -> str:
    """` of ROOT` when the stack stopped is not the current folder's: from a subfolder
    with no stack file, `hd down` stopped the parent's stack without naming it (adv53
    F8), where `up` names the project it starts."""
    try:
        here = Path.cwd().resolve()
    except OSError:
        here = None
    return "" if here == root else f" of {as_typed(str(root))}"


def _down_locked(root: Path, force: bool, after: str | None = None) -> int:
    """Stop the stack; how many `--enable-events` resources could not be deleted.
    `after`: the `down` this one waited for, which may have stopped it meanwhile."""
    from hippo_tasks.daemon.client import DaemonClient

    registry = Registry(root)
    if not force:
        try:
            client = DaemonClient.for_project(root)
            born = identity(client.pid)  # now: a daemon asked to stop leaves the registry
            client.shutdown()
            say(f"stopping the stack{_of_folder(root)} (daemon pid {client.pid})...")
            try:
                _wait_daemon_gone(registry, client.pid, born)
            except KeyboardInterrupt:  # exit 130 with no word, the shutdown went on (l/6)
                print("hippodrome | stopped waiting; the shutdown goes on in the daemon "
                      "(`hd status` shows where it is; `hd down --force` ends it now)",
                      file=sys.stderr, flush=True)
                raise
            _end_what_a_dead_daemon_left(registry, client.pid)
            from hippo_tasks.registry.store import stranded_daemons

            if stranded_daemons(root):  # beside this one, from before the folder was
                # deleted and made again: `down` said "stack stopped" and left it (u/1)
                stop_unlisted(root, why="a stack started before this folder was deleted "
                              "or replaced still runs:")
            hooks.wait_for_owners(registry, say)
            left = hooks.recover(registry, say)
            print("hippodrome | stack stopped, daemon exited")
            return left
        except DaemonEndedError as exc:  # killed while it answered: what it left, now
            print(f"hippodrome | {exc.message()}\nhippodrome | cleaning up from the registry")
        except DaemonNotRunningError as exc:
            if exc.detail:
                print(f"hippodrome | {exc.detail}")
            stopped = stop_unlisted(root)
            hooks.wait_for_owners(registry, say)
            left = hooks.recover(registry, say)
            # "no daemon was running" was untrue after waiting for another `down` that
            # stopped it meanwhile (adv28 l/4)
            # After a daemon found dead and its leftovers stopped (the line above), "no
            # daemon was running; nothing to stop" contradicted it (adv64 F3).
            print("hippodrome | stack stopped, daemon exited" if stopped else
                  f"hippodrome | the stack was stopped by {after} while this one waited"
                  if after else f"hippodrome | its daemon (pid {exc.ended}) had ended "
                  "already: what it left is cleaned up" + (
                      ", but for what outlived SIGKILL (below)" if _outlived(root) else "")
                  if exc.ended is not None else f"hippodrome | {_nothing_to_stop(root)}")
            if not stopped and not after and exc.ended is None:
                _say_stack_above(root)
            return left
        except DaemonUnreachableError as exc:
            if finishing_a_shutdown(registry, exc.pid):
                say(f"the daemon (pid {exc.pid}) no longer listens but is still ending: "
                     "it is finishing a shutdown an earlier `hd down` (or a signal) began; "
                     "waiting for it")
                _wait_daemon_gone(registry, exc.pid, identity(exc.pid))
                _end_what_a_dead_daemon_left(registry, exc.pid)
                hooks.wait_for_owners(registry, say)
                left = hooks.recover(registry, say)
                print("hippodrome | stack stopped, daemon exited")
                return left
            print(f"hippodrome | {exc.message()}\nhippodrome | cleaning up from the registry")
    from hippo_tasks.registry.cleanup import force_down
    from hippo_tasks.registry.store import daemon_alive

    # The registry names no daemon while one writes this folder's daemon.log (`git
    # clean -xdf` a moment ago): "nothing to clean", exit 0, left the stack running.
    stopped = force and not daemon_alive(registry.read()) and kill_unlisted(root)
    for line in force_down(registry):
        if not (stopped and line.startswith("nothing to clean")):
            say(line)
    if stopped:
        print("hippodrome | stack stopped, daemon exited")
    return hooks.recover(registry, say, force=True)


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
    moved = data.get("project_root") not in (None, str(registry.root))
    if finished and moved:  # not a full disk: it writes no registry where it was moved
        say(f"the daemon (pid {pid}) stopped the stack; its entry, which it stopped writing "
            f"when the project was moved from {data['project_root']}, is cleared here")
    else:
        say(f"the daemon (pid {pid}) stopped the stack but could not clear its registry "
            "entry" if finished else f"the daemon (pid {pid}) ended before it finished "
            "stopping the stack")
    for line in clean_stale(registry, data):
        if not (finished and line.startswith("found a stale registry entry")):
            say(line)


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


