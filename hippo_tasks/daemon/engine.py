"""The control daemon's core: one event loop that owns the stack.

Everything that changes processes happens on this loop. Signal handlers and HTTP
threads only record a request (a future, a coroutine handed over); the loop acts.
The registry is rewritten after each burst of transitions, coalesced per loop turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hippo_tasks.daemon import SHUTDOWN_WORDS
from hippo_tasks.daemon.project_home import ProjectHome
from hippo_tasks.daemon.registry_writes import Change, RegistryWrites
from hippo_tasks.daemon.shutdown_signals import KEYBOARD, SHUTDOWN_SIGNALS, left_ignored
from hippo_tasks.daemon.strays import Strays
from hippo_tasks.daemon.webhook.record import Recorder
from hippo_tasks.errors import ServiceStartError, ShutdownInProgressError
from hippo_tasks.errors.state_dir import StateDirError
from hippo_tasks.events.hooks import webhook_token
from hippo_tasks.events.recording import events_dir
from hippo_tasks.model.plan import StackPlan, given_cell_url, url_host
from hippo_tasks.registry import outlived
from hippo_tasks.registry.store import Registry, identity
from hippo_tasks.supervision import process, timeline
from hippo_tasks.supervision.backoff import Clock, LoopClock
from hippo_tasks.supervision.child_env import child_env
from hippo_tasks.supervision.logs import LogHub
from hippo_tasks.supervision.ownership import Ownership, establish, take_run_token
from hippo_tasks.supervision.run import SupervisorContext
from hippo_tasks.supervision.run_files import RunFiles, WriteTrouble
from hippo_tasks.supervision.stack import StackSupervisor
from hippo_tasks.supervision.states import Transition

if TYPE_CHECKING:  # types only: loaded when needed (a printer, a tunnel to watch)
    from hippo_tasks.events.tunnel_watch import TunnelWatch
    from hippo_tasks.supervision.printer import TerminalPrinter

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_PORT_TAKEN = 4
"""A blocking service whose port another process took after the port check: exit 4, a
busy port, as the check itself says it."""

EXIT_SIGNALLED = {"SIGPIPE": 141, **{name: 128 + number
                                     for name, number in SHUTDOWN_SIGNALS.items()}}
"""A stack shut down by a signal exits 128 + its number, as a shell reports a process
killed by it: a CI job or a supervisor can tell a Ctrl+C or a `kill` from a clean end."""
HOUSEKEEPING_S = 2.0
CUT_SHORT_BY = {"shutdown requested": "by `hd down` (or POST /api/shutdown)",
                "SIGINT": "by SIGINT", "SIGTERM": "by SIGTERM", "SIGHUP": "by SIGHUP",
                "SIGPIPE": "as the reader of its output went away"}


class Engine:
    def __init__(
        self,
        plan: StackPlan,
        registry: Registry,
        printer: TerminalPrinter | None = None,
        clock: Clock | None = None,
        dashboard_host: str = "127.0.0.1",
        ownership: Ownership | None = None,
    ) -> None:
        """`ownership`: made beforehand (ownership.OwnershipSoon), or made here."""
        self.plan = plan
        self.registry = registry
        self.stack_file = plan.file_stamp
        """The stack file as read for this run (model/project.changed_since)."""
        self.printer = printer
        self.dashboard_host = dashboard_host
        self.started_at = time.time()
        root = plan.options.project_root
        self.home = ProjectHome(root, self.note)
        self.runs = RunFiles(root / ".logs", plan.settings.log_runs_kept, publish=False)
        self.hub = LogHub(plan.settings.log_buffer_lines, [self.runs])
        if printer is not None:
            printer.set_width(max((len(n) for n in plan.names), default=10))
            self.hub.add_sink(printer)
        self.ownership = ownership or establish(take_run_token(str(plan.options.project_root)))
        ctx = SupervisorContext(
            hub=self.hub,
            clock=clock or LoopClock(),
            ownership=self.ownership,
            settings=plan.settings,
            base_env=child_env(),
            on_transition=self._on_transition,
            moved=self.home.moved_away,
        )
        self.stack = StackSupervisor(plan, ctx, lambda n: str(self.runs.path(n)),
                                     self.runs.unwritten)
        self.strays = Strays(self.stack, self.ownership, self.note)
        self.writes = RegistryWrites(registry, self.home, self.note, self._registry_change,
                                     self._name_adopted)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Future[str] | None = None
        self.unreachable: str | None = None
        """Why the API could not start (fail_serving), ending the stack."""
        self._identities: dict[int, float | None] = {}
        self._killing = False
        self.failure: ServiceStartError | None = None
        self.cut_short = ""
        """Who shut the stack down before its start was over (`by hd down ...`)."""
        self.started = False
        """The first start settled with no blocking failure: every service is ready,
        failed (non-blocking) or was stopped by a request meanwhile. `up --detach`
        returns when the registry says so; a stack where nothing can become ready (no
        services, or all stopped by `hd stop` while starting) must not keep it waiting."""
        # Checked as `up` checked it before starting this daemon (a UsageError if not).
        self.webhook_token: str | None = webhook_token()
        self.replay_key = os.urandom(12).hex()
        """What a replay of this daemon's sends in x-hippodrome-replay (registry.json,
        0600, gives it to `hd events.replay`): only those deliveries go unrecorded."""
        self.recorder = Recorder(events_dir(root), plan.options.record_events,
                                 self.webhook_token, self.note)
        self.tunnels: TunnelWatch | None = None
        if self.webhook_token:  # `up --enable-events` always gives one; none, no tunnel
            from hippo_tasks.events.tunnel_watch import TunnelWatch

            self.tunnels = TunnelWatch()
        self.start_over = threading.Event()
        """Set once the stack's start is over (ready, failed or stopped): the API's
        server is built then, or as soon as a client comes (listener.serve_soon), so its
        imports take no core from the services while they start."""

    # ---- state out: registry, terminal ------------------------------------------
    def _on_transition(self, event: Transition) -> None:
        self.stack.on_transition(event)
        self.writes.soon()

    def flush_registry(self) -> None:
        self.writes.flush()

    def sync_registry(self, first: bool = False) -> None:
        """Write the registry from the same snapshots the API serves (RegistryWrites)."""
        self.writes.now(first)

    def _name_adopted(self) -> None:
        if self.ownership.base is None:  # a subreaper: see Strays.tell_adopted
            self.strays.tell_adopted()

    @property
    def url(self) -> str:
        return f"http://{url_host(self.dashboard_host)}:{self.plan.dashboard_port}"

    def _identity(self, pid: int) -> float | None:
        """A pid's start time never changes: ask psutil once per pid, not once per sync."""
        if pid not in self._identities:
            self._identities[pid] = identity(pid)
        return self._identities[pid]

    def _registry_change(self) -> Change:
        """The stack as it is now, for registry.json (the snapshots taken here, outside
        the registry's lock)."""
        services = {}
        for snap in self.stack.snapshots():
            created = self._identity(snap.pid) if snap.pid is not None else None
            services[snap.name] = snap.as_registry(created)
        opts = self.plan.options

        def change(data: dict[str, object]) -> None:
            # The folder this run's token is tagged with: the file's own could be a
            # path the project had before a rename while it was down, and cleanup then
            # refused this run's token as another folder's (`hd down --force` ended
            # nothing; adv30 q/2).
            data["project_root"] = str(opts.project_root)
            data["daemon"] = {
                "pid": os.getpid(),
                "create_time": self._identity(os.getpid()),
                "url": self.url,
                "port": self.plan.dashboard_port,
                "guard_pid": self.strays.guard.pid,
                "token": self.ownership.token,
                # For `hd events.send`, `events.replay` and `hd mcp` (same user: the file
                # is 0600): `up --enable-events` makes a random token no one is shown,
                # and they were answered 401 by their own stack (adv24 b/3).
                "webhook_token": self.webhook_token,
                "replay_key": self.replay_key,
                "mode": self.ownership.mode,
                "mode_why": self.ownership.why_not or None,
                "cgroup": str(self.ownership.base) if self.ownership.base else None,
                "started_at": self.started_at,
                "up_started": opts.up_started,
                "profile": opts.profile,
                "cell": opts.cell,
                "cell_url": given_cell_url(opts),
                "table_prefix": opts.table_prefix,
                "port_offset": opts.port_offset,
                "logs_dir": str(self.runs.dir),
                "started": self.started,
                "stack_file": self.stack_file,
                "foreground": self.printer is not None,
                "shutting_down": self.shut_down_by() or None,
            }
            data["services"] = services
            data["failure"] = None if self.failure is None else {
                "service": self.failure.service,
                "reason": self.failure.reason,
                "last_lines": list(self.failure.last_lines),
                "log_path": self.failure.log_path,
                "log_note": self.failure.log_note,
            }

        return change

    def problems(self) -> dict[str, object]:
        """What the disk is doing to us right now (status, API, page); empty when fine."""
        out: dict[str, object] = {}
        if self.runs.trouble is not None:
            out["logs"] = {**self.runs.trouble.as_json(), "path": str(self.runs.dir)}
        if self.writes.trouble is not None:
            out["registry"] = {**self.writes.trouble.as_json(),
                               "path": self.writes.trouble_path}
        out.update(self.recorder.problems())
        if self.tunnels is not None and self.tunnels.trouble is not None:
            out["tunnel"] = self.tunnels.trouble
        return out

    def _housekeeping(self) -> None:
        """Every HOUSEKEEPING_S, two stats and a waitpid (and in process-group mode a
        look at our children: adopted orphans named to the guard; the reaper thread
        collects their zombies, Strays.start_reaper). A registry deleted
        while the stack runs (`rm -rf .hippodrome`, `git clean -xdf`) is written again,
        or every command would say no daemon runs until the next state change, and `up`
        would trip on this daemon's ports; so is this run's log folder (RunFiles.reopen_if_gone).
        An orphan guard that was killed is started again, or a later kill -9 of the
        daemon would leave every service running; one that was stopped is continued.
        All of it during the shutdown too, which may wait out a stop_timeout: it
        returned early there, and a guard killed, or a registry deleted, then stayed so
        (adv30 p/2, p/3). The registry's own
        end (`_clear_registry`) stops its rewrites, and closing the guard its restarts."""
        assert self.loop is not None
        self.loop.call_later(HOUSEKEEPING_S, self._housekeeping)
        if self._shutdown is None:
            return
        if self.strays.guard_again():
            self.sync_registry()
        self.strays.wake_guard()
        if self.ownership.base is None:  # the subreaper's (its reaper collects them)
            self.strays.tell_adopted()
        home = self.home.here()
        if home and not os.path.exists(self.registry.path):
            self.note(f"hippodrome | {self.registry.path} was deleted: writing it again")
            self.sync_registry()
        elif home and self.writes.changed_by_another():
            # Another writer, or damage (truncated, overwritten): read and written
            # again, so a registry that no longer names this daemon names it within a
            # second; a damaged one is moved aside by the read and said here.
            self.sync_registry()
            if self.registry.warnings:
                self.note(f"hippodrome | {self.registry.path} was damaged (kept beside it as "
                          "registry.json.corrupt-<time>): wrote it again for this stack")
                self.registry.warnings.clear()
        if self.tunnels is not None and home and not self._shutdown.done():
            self.tunnels.check(self.registry, self.note)
        if home:  # not while the project itself is gone or moving
            try:
                if self.runs.reopen_if_gone():
                    self.note(f"hippodrome | {self.runs.dir} was deleted: logging there "
                              "again from now on (earlier lines are in `hd logs "
                              "--timestamps`, the daemon's buffer)")
                elif self.runs.relink_latest():
                    self.note(f"hippodrome | {self.runs.dir.parent / 'latest'} was deleted: "
                              f"linked it to this run's logs again ({self.runs.dir.name})")
                for path in self.runs.drop_replaced():
                    self.note(f"hippodrome | {path} was deleted or replaced: logging to "
                              "that name again from the next line (earlier lines are in "
                              "`hd logs --timestamps`, the daemon's buffer)")
            except OSError as exc:
                self.runs.trouble = self.runs.trouble or WriteTrouble(
                    exc.strerror or str(exc), time.time())

    def note(self, text: str) -> None:
        if self.printer is not None:
            self.printer.note(text)
            return
        with contextlib.suppress(OSError):  # detached: daemon.log, which a full disk refuses
            print(text, flush=True)

    # ---- requests in --------------------------------------------------------------
    def request_shutdown(self, why: str) -> None:
        """Safe from signal callbacks and (via call_soon_threadsafe) from other threads."""
        if self._shutdown is None:
            return
        if why in KEYBOARD and self._shutdown.done() and not self._killing \
                and self.loop is not None:
            # A Ctrl+C (or Ctrl+\) once a shutdown is under way, begun by a first one or
            # by anything else: after a SIGTERM (a CI cancel) or SIGHUP it was dropped
            # without a word, and the stop waited out every stop_timeout (y/6, r/5).
            began = self._shutdown.result()
            self._killing = True
            self.note("hippodrome | second Ctrl+C: killing every service now"
                      if why == began == "SIGINT" else
                      f"hippodrome | {KEYBOARD[why]} during the shutdown ({began}): killing "
                      "every service now")
            self.loop.create_task(self.stack.kill_now())
        self.start_over.set()
        if not self._shutdown.done():
            self._shutdown.set_result(why)

    def fail_serving(self, why: str) -> None:
        """The API could not start (no thread to spare): a daemon no command can reach
        ends its stack, recording why for `up --detach` and `hd status` (from another
        thread, via call_soon_threadsafe)."""
        self.unreachable = why
        self.request_shutdown(why)

    def accepting(self) -> bool:
        """False once shutdown began (or before the daemon runs)."""
        return self._shutdown is not None and not self._shutdown.done()

    def shut_down_by(self) -> str:
        """Who asked for the shutdown under way, in CUT_SHORT_BY's words ("" if none)."""
        asked = self._shutdown
        if asked is None or not asked.done() or asked.cancelled():
            return ""
        why = asked.result()
        return CUT_SHORT_BY.get(why, f"({why})")

    def check_accepting(self) -> None:
        if not self.accepting():
            raise ShutdownInProgressError(self.shut_down_by())

    # ---- run ---------------------------------------------------------------------
    async def run(self, serve: Callable[[Engine], Callable[[], None]] | None = None,
                  on_serving: Callable[[], None] = lambda: None) -> int:
        """Start the stack, serve until shutdown, stop the stack. Returns the exit code.

        `on_serving` runs once the API answers and the registry names this daemon: the
        moment `up` releases the project's lifecycle lock."""
        self.loop = self.writes.loop = asyncio.get_running_loop()
        self._shutdown = self.loop.create_future()
        if self.printer is not None:
            loop = self.loop

            def reader_gone() -> None:
                # `hd up | head -1`: the stack ran on, its output going nowhere, for ever.
                loop.call_soon_threadsafe(self.request_shutdown, "SIGPIPE")

            self.printer.on_reader_gone = reader_gone
        for name, number in SHUTDOWN_SIGNALS.items():
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                if left_ignored(number):  # (nohup's SIGHUP) caught and let be: the
                    # services, whose caught signals are reset at exec, get the default
                    self.loop.add_signal_handler(number, _nothing)
                    continue
                self.loop.add_signal_handler(number, self.request_shutdown, name)
        if self.printer is None:  # detached: `kill -USR1` killed the daemon and the stack
            for name in ("SIGUSR1", "SIGINFO"):
                with contextlib.suppress(ValueError, RuntimeError, AttributeError):
                    self.loop.add_signal_handler(getattr(signal, name), self.note,
                                                 f"hippodrome | dashboard: {self.url}   "
                                                 f"logs: {self.runs.dir}")
        stop_serving: Callable[[], None] = _nothing
        try:
            if serve is not None:
                stop_serving = serve(self)
            self.sync_registry(first=True)
            try:  # only now: a start refused above leaves `.logs` as it was
                self.runs.publish(self.plan.settings.log_runs_kept, self.note)
            except OSError as exc:
                raise StateDirError.from_os(exc, exc.filename or self.runs.dir) from None
        except BaseException:
            stop_serving()
            self.strays.guard.close()
            self.ownership.close()
            self.runs.abandon()
            if self.writes.written is not None:  # the first write went in, the logs' did not:
                self._clear_registry()  # "stale registry entry" after "nothing was
            raise  # started" (adv45 R/5)
        on_serving()
        self.loop.call_later(HOUSEKEEPING_S, self._housekeeping)
        self.strays.watch_guard(self.loop, self.sync_registry)
        if self.ownership.base is None:
            self.strays.start_reaper()
        began = time.monotonic()
        code = EXIT_OK
        clean = False
        try:
            starting = asyncio.ensure_future(self.stack.start_and_wait())
            waits: set[asyncio.Future[Any]] = {starting, self._shutdown}
            done, _ = await asyncio.wait(waits,
                                         return_when=asyncio.FIRST_COMPLETED)
            self.start_over.set()
            if starting in done:
                self.failure = starting.result()
                if self.failure is not None:
                    self.sync_registry()
                    self.note(f"hippodrome | {self.failure.message()}")
                    self.note("hippodrome | a blocking service failed: stopping the stack")
                    code = EXIT_PORT_TAKEN if self.failure.port_taken else EXIT_FAILED
                    self._shutdown.set_result("failure")
                else:
                    self.started = True
                    self.sync_registry()
                    self._report_ready(time.monotonic() - began)
            else:
                starting.cancel()
            why = await self._shutdown
            if not self.started and self.failure is None:
                self.cut_short = CUT_SHORT_BY.get(why, f"({why})")
                if why not in EXIT_SIGNALLED and self.printer is not None:
                    # What `up --detach` says, exit 1: a foreground `up` that `hd down`
                    # stopped before it was ready exited 0 in silence (y/7).
                    self.note(f"hippodrome | the stack was shut down {self.cut_short} "
                              "before it was ready")
                    code = EXIT_FAILED
            code = EXIT_SIGNALLED.get(why, code)
            if self.unreachable is not None:
                code = EXIT_FAILED
            if self.printer is not None:  # its lines next, not a service's backlog
                self.printer.hurry()
            self.note(f"{SHUTDOWN_WORDS}{why})")
            self.sync_registry()  # `up` meanwhile says the stack is ending, not "running"
            await self.stack.shutdown(reason=f"shutdown ({why})")
            if self.ownership.base is None:  # only a subreaper adopts
                await self.strays.end_adopted()
            await self.strays.end_marked_left()
            clean = True
        finally:
            stop_serving()
            self.strays.stop_reaper()
            self.recorder.close()
            # Only a shutdown that finished may tell the guard "bye"; after a bug it gets
            # EOF and ends whatever is left, as after kill -9.
            self.strays.guard.close(clean)
            self.ownership.close(process.given_up)
            self._release_events()
            # before the registry is cleared: `hd down` reads it once that is done
            outlived.write(self.registry.dir, process.outlived())
            self._clear_registry()
            self.runs.close()
        return code

    def _report_ready(self, seconds: float) -> None:
        rows = self.stack.status()
        failed = [r["name"] for r in rows if r["state"] == "failed"]
        ready = [r for r in rows if r["ready"]]
        msg = f"hippodrome | {len(ready)}/{len(rows)} services ready in {seconds:.2f}s"
        if failed:
            msg += f"; not running (non-blocking): {', '.join(map(str, failed))}"
        self.note(msg)
        path = timeline.describe(rows)
        if path:
            self.note(f"hippodrome | {path}")
        self.note(f"hippodrome | dashboard: {self.url}   logs: {self.runs.dir}")

    def _release_events(self) -> None:
        """`up --enable-events` handed its tunnel and AWS resources to this process."""
        if not self.webhook_token:  # no `--enable-events` without one: nothing to delete,
            return  # and "events cleanup failed" ended a run that had none (r/7)
        from hippo_tasks.events.hooks import release_own

        try:
            release_own(self.registry, lambda line: self.note(f"hippodrome | {line}"))
        except StateDirError as exc:  # its registry unreadable: what it lists is unknown
            self.note(f"hippodrome | could not read {self.registry.path} to delete what "
                      f"--enable-events made ({exc.problem}); `hd down`, once it can be "
                      "read, deletes what is left")
        except Exception as exc:  # noqa: BLE001 - shutdown must finish; next up/down retries
            self.note(f"hippodrome | events cleanup failed ({exc}); `hd down` retries it")

    def _clear_registry(self) -> None:
        failure = self.failure
        cut_short = self.cut_short
        unreachable = self.unreachable

        def change(data: dict[str, object]) -> None:
            data["daemon"] = None
            data["services"] = {}
            if failure is None and cut_short:  # what `up --detach` says, exit 1
                data["failure"] = {"service": None, "kind": "StartCutShort", "final": True,
                                   "reason": f"the stack was shut down {cut_short} before "
                                             "it was ready"}
            if failure is None and unreachable is not None:
                data["failure"] = {"service": None, "kind": "Unreachable", "final": True,
                                   "reason": f"{unreachable}; the stack was stopped"}
            if failure is not None:
                data["failure"] = {"service": failure.service, "reason": failure.reason,
                                   "last_lines": list(failure.last_lines),
                                   "log_path": failure.log_path,
                                   "log_note": failure.log_note, "final": True}

        self.writes.leave(change)


def _nothing() -> None:
    """Stops serving when nothing is served."""

