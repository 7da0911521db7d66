"""One service's supervisor: one loop, one mailbox, one request at a time.

Start, stop and restart are requests posted to the service's own loop; the CLI, the
HTTP API, the page, the file watcher and the shutdown path all post them and await the
outcome. Only this loop (and the run it owns) changes the service's state, so two
requests can never interleave their transitions. Requests coalesce:
- a stop overrides whatever is pending, and interrupts a start in progress (whatever
  was spawned is stopped);
- a restart or start asked while a start or restart is under way waits for it to
  settle, and any number of them make at most one more restart;
- stop then start (before the loop got to either) is one restart.

What one run does (dependencies, spawn, readiness, restarts) is run.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import Callable
from typing import Literal

from hippo_tasks.action_outcome import EXITED
from hippo_tasks.model.plan import PlannedService
from hippo_tasks.supervision.process import end_scope, kill_scope
from hippo_tasks.supervision.run import ServiceRun, SupervisorContext
from hippo_tasks.supervision.snapshot import ServiceSnapshot
from hippo_tasks.supervision.states import ALLOWED, State, Transition

Op = Literal["start", "stop", "restart"]


class ServiceSupervisor(ServiceRun):
    def __init__(self, planned: PlannedService, ctx: SupervisorContext) -> None:
        super().__init__(planned, ctx)
        self.on_update: Callable[[], None] = lambda: None
        """Set by the stack: told when a request finished (no transition says so)."""
        # the mailbox
        self._pending: Op | None = None
        self._pending_reason = ""
        self._pending_waiters: list[asyncio.Future[ServiceSnapshot]] = []
        self._current: Op | None = None
        self._current_waiters: list[asyncio.Future[ServiceSnapshot]] = []
        self._mail: asyncio.Event | None = None
        self._settle: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._run: asyncio.Task[None] | None = None
        self._external: asyncio.Task[None] | None = None
        self._final = False
        self._cut_short = False
        """The request under way gave way to a pending one before it settled."""
        self._taking_down = False
        """A stop's or restart's take-down is under way (the loop has taken it in)."""

    # ---- what others read (the rest: run.py) --------------------------------------
    @property
    def starting_soon(self) -> bool:
        """A start is asked for or under way: a dependant should wait, not give up."""
        return self._pending in ("start", "restart") or \
            (self._run is not None and not self._run.done())

    @property
    def coming_up(self) -> bool:
        """A start or restart is posted or under way for it now (another caller's, when
        the asking caller's own request has settled)."""
        return (self._current or self._pending) in ("start", "restart")

    @property
    def going_down(self) -> bool:
        """A stop or restart of it is posted, or its take-down is under way: its ready
        process is about to end. A dependant started on it now lost it a moment later:
        a whole-stack restart's start of mid ran as db came up, db's restart from a
        second cascade waiting behind that start (adv47 G/5)."""
        return self._pending in ("stop", "restart") or self._taking_down

    @property
    def held(self) -> bool:
        """A stop was asked for (and no start since): a file change must not undo it,
        even while the stop is still under way."""
        return self._hold

    def snapshot(self) -> ServiceSnapshot:
        """Read from the API's threads at any moment: between the main process's exit
        (seen at once, through its pidfd) and the loop turn that moves the state, a
        service is shown `stopping`, not `running` and ready with no live pid."""
        spec = self.planned.spec
        main = self._main
        alive = main is not None and not main.ended()
        ended = not alive and self._exit_unseen()
        return ServiceSnapshot(
            name=self.name, state="stopping" if ended else self.sm.state.value,
            healthy=bool(self.healthy) and (alive or spec.external),
            pid=self.pid if alive else None, pgid=self.pgid if alive else None,
            port=self.planned.port, restarts=self.restarts, started_at=self.started_at,
            exit_code=self.exit_code, ready=self.ready and not ended, blocking=spec.blocking,
            external=spec.external, kind=spec.kind,
            reason=EXITED if ended else self.reason_now(),
            depends_on=tuple(self.planned.depends_on), url=self.planned.url,
            cgroup=self.cgroup_text,
            busy=self._current or self._pending,
            timings=self.timings.as_json(), startup=self.timings.startup(),
            waiting_on=self.waiting_on,
            description=spec.description,
        )

    def _changed(self, event: Transition) -> None:
        note = f"{event.old.value} -> {event.new.value}"
        if event.reason:
            note += f" ({event.reason})"
        self.ctx.hub.system(self.name, note)
        if self._settle is not None and event.new in (State.RUNNING, State.STOPPED,
                                                      State.FAILED):
            self._settle.set()
        self.ctx.on_transition(event)

    # ---- requests in --------------------------------------------------------------
    def request(self, op: Op, reason: str = "") -> asyncio.Future[ServiceSnapshot]:
        """Post a request; the future resolves once it has been carried out (or
        superseded by a later stop, once that is), to the service's state then. Never
        raises: the outcome is the state. Taken then, not when the caller gets to read
        it: by that time a request posted meanwhile may be under way, and two
        overlapping `hd restart`s each said the other's `stopping`."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ServiceSnapshot] = loop.create_future()
        if self._final and op != "stop":
            fut.set_result(self.snapshot())
            return fut
        if op != "stop":
            # An external one too: a whole-stack stop held it, and its dependants waited
            # on it for ever at the next `hd start` (meets() is false while held).
            self._hold = False
        if self.planned.spec.external:
            if op != "stop" and (self._external is None or self._external.done()):
                self._external = loop.create_task(self._watch_external(), name=self.name)
            fut.set_result(self.snapshot())
            return fut
        if op == "start" and (self.sm.state == State.BACKOFF or self._cleaning_up()):
            # Asked by hand during a crash backoff, or while the crashed run's leftovers
            # are ended before it: now, as a restart is, not when the timer fires (up to
            # backoff_max later, the command silent meanwhile; adv28 l/2).
            op, reason = "restart", reason or "start requested"
        if op == "start" and self._pending is None and self._current in ("start", "restart") \
                and not self._completed:
            # The same outcome answers both; not a job's that has exited 0 already (its
            # leftovers being ended): a start asked then was answered `stopped` and the
            # job never ran again (adv27 i/8).
            self._current_waiters.append(fut)
            return fut
        pending = self._pending
        if op == "start":
            new: Op = "restart" if pending == "stop" else (pending or "start")
        else:
            new = op
        self._pending = new
        self._pending_reason = reason or f"{new} requested"
        self._pending_waiters.append(fut)
        self._ensure_loop()
        assert self._mail is not None
        self._mail.set()
        return fut

    def _exit_unseen(self) -> bool:
        """The main process of a starting or running service has exited, and the loop
        has not yet taken it in (the pidfd is read a turn later, longer under load)."""
        main = self._main
        return (main is not None and self.planned.spec.kind == "service"
                and self.sm.state in (State.STARTING, State.RUNNING) and main.ended())

    def _cleaning_up(self) -> bool:
        """The run itself is ending what its crashed main process left, or is about to
        (no request under way; not a job that completed, whose rerun waits for that by
        its own path). A start asked in the turn between the exit and the loop seeing it
        was taken for a start of a running service: answered `stopping` at once, or
        left waiting for the run, so for its whole backoff (a 3.13 CI run)."""
        run = self._run
        return ((self.sm.state == State.STOPPING or self._exit_unseen())
                and self._current is None and not self._completed
                and run is not None and not run.done())

    def hold(self, final: bool = False) -> None:
        """The stack is about to stop this service: an exit is no longer restarted.
        `final`: a shutdown began, and nothing starts again."""
        self._hold = True
        self._final = self._final or final

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._mail = asyncio.Event()
            self._settle = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(
                self._main_loop(), name=f"{self.name}-lifecycle")

    async def close(self) -> None:
        """After the last stop: end the loop tasks (the daemon is exiting)."""
        for task in (self._loop_task, self._external, self._run):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # ---- the loop -------------------------------------------------------------------
    async def _main_loop(self) -> None:
        assert self._mail is not None
        while True:
            if self._pending is None:
                self._mail.clear()
                await self._mail.wait()
                continue
            op, reason = self._pending, self._pending_reason
            self._current, self._current_waiters = op, self._pending_waiters
            self._pending, self._pending_waiters = None, []
            try:
                if op in ("stop", "restart"):
                    self._taking_down = True
                    try:
                        await self._take_down(reason)
                    finally:
                        self._taking_down = False
                if op in ("start", "restart") and not self._final:
                    await self._bring_up()
            except Exception as exc:  # noqa: BLE001 - a bug must not strand waiters
                await self._died(exc)
            finally:
                waiters, self._current, self._current_waiters = self._current_waiters, None, []
                if self._cut_short and self._pending is not None:
                    # Overtaken: answered once what overtook it is over, as it leaves
                    # the service. Answered now, a restart said `stopping` of a service
                    # the stop had already reported stopped (adv28 l/1).
                    self._pending_waiters.extend(waiters)
                    waiters = []
                self._cut_short = False
                outcome = self.snapshot()
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(outcome)
                self.on_update()

    async def _take_down(self, reason: str) -> None:
        await self._cancel_run()
        await self._end(reason)
        self._completed = False  # its leftovers are ended: nothing of that run is left
        if self.state in (State.PENDING, State.STARTING, State.RUNNING, State.STOPPING,
                          State.BACKOFF):
            self._move(State.STOPPED, reason)
        elif (self.state == State.STOPPED and self.reason.startswith("restart requested")
              and not reason.startswith("restart requested")):
            # A stop that overtook a restart's stop half keeps the service stopped: its
            # row names that stop. The restart's answer blamed itself (r/10).
            self.reason = reason
        self.healthy = False

    async def _bring_up(self) -> None:
        if self._run is not None and not self._run.done() and self._completed:
            # A job done, what it left running still being ended: that first (the new
            # run shares its scope), then it runs again.
            await asyncio.wait({self._run})
        if self._run is None or self._run.done():
            if self.state in (State.STOPPED, State.FAILED):
                self._move(State.PENDING, "start requested")
            self.timings.begin()
            self._completed = False  # the run before's: this one has not exited yet
            self._run = asyncio.get_running_loop().create_task(self._run_loop(),
                                                               name=f"{self.name}-run")
        assert self._mail is not None and self._settle is not None
        while not self._settled_now():
            if self._pending == "stop" or (self._pending == "restart"
                                           and self.state == State.BACKOFF):
                # A stop interrupts a start; so does a restart of one waiting out a
                # backoff. The loop takes it next, and answers this one's callers then.
                self._cut_short = True
                return
            self._settle.clear()
            waits = {asyncio.ensure_future(self._settle.wait()),
                     asyncio.ensure_future(self._mail.wait()), self._run}
            done, rest = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for fut in rest:
                if fut is not self._run:
                    fut.cancel()
            if self._mail.is_set():
                self._mail.clear()

    def _settled_now(self) -> bool:
        run = self._run
        return run is None or run.done() or self.state in (State.RUNNING, State.FAILED)

    async def _cancel_run(self) -> None:
        run, self._run = self._run, None
        if run is not None and not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run

    async def _end(self, reason: str) -> None:
        """End every process of this service (main, setup step, escaped children)."""
        child = self.child
        scope = self.scope
        if child is None and scope.empty():
            return
        if self.state in (State.STARTING, State.RUNNING):
            self._move(State.STOPPING, reason)
        await end_scope(child, scope, self.planned.spec.stop_timeout,
                        lambda msg: self.ctx.hub.system(self.name, msg), self._stop_signal)
        if child is not None:
            self._collect(child)

    async def kill_now(self) -> None:
        """Second Ctrl+C: SIGKILL everything of this service, at once."""
        await kill_scope(self.child, self.scope, limit=1.0)

    async def _died(self, exc: BaseException, in_run: bool = False) -> None:
        """The lifecycle hit a bug: say so, end the processes, mark FAILED, go on."""
        text = "".join(traceback.format_exception(exc)).rstrip()
        for line in text.splitlines()[-12:]:
            self.ctx.hub.system(self.name, f"internal error: {line}")
        if not in_run:
            with contextlib.suppress(Exception):
                await self._cancel_run()
        with contextlib.suppress(Exception):
            await kill_scope(self.child, self.scope)
            if self.child is not None:
                self._collect(self.child)
        self.healthy = False
        if State.FAILED in ALLOWED[self.state]:
            self._move(State.FAILED, f"internal error: {exc!r} (please report it)")
