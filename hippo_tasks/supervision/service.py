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

Rules of a run (unchanged from the first design):
- Before a service has been ready once, any failure is final (FAILED). After that,
  `auto_restart` restarts it with exponential backoff until `max_restarts`
  consecutive quick failures.
- A running service with a network readiness probe is re-probed every
  `liveness_interval`; after `liveness_failures` misses in a row it is restarted.
- A job (`kind = "job"`) is ready when it exits 0; it is then STOPPED ("completed").
- Once the stack is stopping (`hold`), an exit is never restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from hippo_tasks.model.plan import PlannedService
from hippo_tasks.model.spec import StackSettings
from hippo_tasks.supervision import probes
from hippo_tasks.supervision.backoff import Backoff, Clock, next_failures
from hippo_tasks.supervision.logs import LogHub
from hippo_tasks.supervision.ownership import Ownership
from hippo_tasks.supervision.process import Child, SpawnError, end_scope, kill_scope, spawn
from hippo_tasks.supervision.readiness import Outcome, until_ready, while_running
from hippo_tasks.supervision.scope import Scope
from hippo_tasks.supervision.snapshot import ServiceSnapshot
from hippo_tasks.supervision.states import ALLOWED, State, StateMachine, Transition
from hippo_tasks.supervision.ticker import Ticker
from hippo_tasks.supervision.timeline import StartTimings

Op = Literal["start", "stop", "restart"]


@dataclass
class SupervisorContext:
    hub: LogHub
    clock: Clock
    ownership: Ownership
    settings: StackSettings
    base_env: Mapping[str, str]
    on_transition: Callable[[Transition], None]
    ticker: Ticker = field(default_factory=Ticker)
    """When running services are probed for liveness (one timer for all)."""


class ServiceSupervisor:
    def __init__(self, planned: PlannedService, ctx: SupervisorContext) -> None:
        self.planned = planned
        self.name = planned.name
        self.ctx = ctx
        spec = planned.spec
        initial = State.EXTERNAL if spec.external else State.PENDING
        self.sm = StateMachine(self.name, time.time, self._changed, initial)
        self.deps: list[ServiceSupervisor] = []
        """Set by the stack: what this service waits for before it starts."""
        self.wait_change: Callable[[], Awaitable[None]] = lambda: asyncio.sleep(0.5)
        """Set by the stack: returns after the next transition of any service."""
        self.on_update: Callable[[], None] = lambda: None
        """Set by the stack: told when a request finished (no transition says so)."""
        self.child: Child | None = None
        self._main: Child | None = None
        self.pid: int | None = None
        self.pgid: int | None = None
        self.started_at: float | None = None
        self.restarts = 0
        self.exit_code: int | None = None
        self.healthy: bool | None = None
        self.reason = ""
        self._first_seq = 0
        self._setup_done = False
        self.timings = StartTimings()
        self.failed_for_dependency = False
        """Its latest start gave up because a dependency failed or was stopped: fixing
        that dependency (restart --cascade) should bring this one back too."""
        self.waiting_on: tuple[tuple[str, str], ...] = ()
        """(dependency, condition) pairs the current start still waits for."""
        self._backoff = Backoff(ctx.settings.backoff_initial, ctx.settings.backoff_max)
        # the mailbox
        self._pending: Op | None = None
        self._pending_reason = ""
        self._pending_waiters: list[asyncio.Future[None]] = []
        self._current: Op | None = None
        self._current_waiters: list[asyncio.Future[None]] = []
        self._mail: asyncio.Event | None = None
        self._settle: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._run: asyncio.Task[None] | None = None
        self._external: asyncio.Task[None] | None = None
        self._hold = False
        self._final = False

    # ---- what others read -------------------------------------------------------
    @property
    def state(self) -> State:
        return self.sm.state

    @property
    def ready(self) -> bool:
        """Dependants may start: running and ready, a job that completed, or external."""
        st = self.sm.state
        if st == State.RUNNING:
            return True
        if self.planned.spec.kind == "job":
            return st == State.STOPPED and self.exit_code == 0 and self.reason == "completed"
        return st == State.EXTERNAL

    @property
    def starting_soon(self) -> bool:
        """A start is asked for or under way: a dependant should wait, not give up."""
        return self._pending in ("start", "restart") or \
            (self._run is not None and not self._run.done())

    @property
    def own_children(self) -> set[int]:
        """Our direct children whose exit status a Popen will collect (the subreaper
        must not reap them)."""
        return {c.pid for c in (self.child, self._main) if c is not None}

    @property
    def _stop_signal(self) -> int:
        return int(signal.Signals[self.planned.spec.stop_signal])

    @property
    def scope(self) -> Scope:
        return self.ctx.ownership.scope(self.name, self.pgid)

    def snapshot(self) -> ServiceSnapshot:
        spec = self.planned.spec
        main = self._main
        alive = main is not None and not main.exited.done()
        scope = self.ctx.ownership.scope(self.name)
        return ServiceSnapshot(
            name=self.name, state=self.sm.state.value,
            healthy=bool(self.healthy) and (alive or spec.external),
            pid=self.pid if alive else None, pgid=self.pgid if alive else None,
            port=self.planned.port, restarts=self.restarts, started_at=self.started_at,
            exit_code=self.exit_code, ready=self.ready, blocking=spec.blocking,
            external=spec.external, kind=spec.kind, reason=self.reason,
            depends_on=tuple(self.planned.depends_on), url=self.planned.url,
            cgroup=str(scope.cgroup) if scope.cgroup is not None else None,
            busy=self._current or self._pending,
            timings=self.timings.as_json(), waiting_on=self.waiting_on,
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

    def _move(self, new: State, reason: str = "") -> None:
        self.reason = reason
        self.sm.move(new, reason)

    # ---- requests in --------------------------------------------------------------
    def request(self, op: Op, reason: str = "") -> asyncio.Future[None]:
        """Post a request; the future resolves once it has been carried out (or
        superseded by a later stop). Never raises: the outcome is the state."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self.planned.spec.external:
            if op != "stop" and (self._external is None or self._external.done()):
                self._external = loop.create_task(self._watch_external(), name=self.name)
            fut.set_result(None)
            return fut
        if self._final and op != "stop":
            fut.set_result(None)
            return fut
        if op != "stop":
            self._hold = False
        if op == "start" and self._pending is None and self._current in ("start", "restart"):
            self._current_waiters.append(fut)  # the same outcome answers both
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
                    await self._take_down(reason)
                if op in ("start", "restart") and not self._final:
                    await self._bring_up()
            except Exception as exc:  # noqa: BLE001 - a bug must not strand waiters
                await self._died(exc)
            finally:
                waiters, self._current, self._current_waiters = self._current_waiters, None, []
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
                self.on_update()

    async def _take_down(self, reason: str) -> None:
        await self._cancel_run()
        await self._end(reason)
        if self.state in (State.PENDING, State.STARTING, State.RUNNING, State.STOPPING,
                          State.BACKOFF):
            self._move(State.STOPPED, reason)
        self.healthy = False

    async def _bring_up(self) -> None:
        if self._run is None or self._run.done():
            if self.state in (State.STOPPED, State.FAILED):
                self._move(State.PENDING, "start requested")
            self.timings.begin()
            self._run = asyncio.get_running_loop().create_task(self._run_loop(),
                                                               name=f"{self.name}-run")
        assert self._mail is not None and self._settle is not None
        while not self._settled_now():
            if self._pending == "stop":
                return  # a stop interrupts a start; the loop takes it next
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

    def _collect(self, child: Child) -> None:
        if child is self._main and child.exited.done() and not child.exited.cancelled():
            self.exit_code = child.exited.result()
        child.close_output()
        if self.child is child:
            self.child = None

    # ---- one run: dependencies, setup, spawn, ready, running, restarts --------------
    async def _run_loop(self) -> None:
        try:
            await self._run_body()
        except Exception as exc:  # noqa: BLE001 - a bug must not leave a stray process
            await self._died(exc, in_run=True)

    async def _run_body(self) -> None:
        spec = self.planned.spec
        blocked = await self._wait_deps()
        self.failed_for_dependency = bool(blocked)
        if blocked:
            self._move(State.FAILED, blocked)
            return
        failures = 0
        been_ready = False
        while True:
            try:
                await self._setup()
                child = await self._spawn()
            except SpawnError as exc:
                self._move(State.FAILED, str(exc))
                return
            self._move(State.STARTING, f"pid {child.pid}")
            run_start = self.ctx.clock.now()
            outcome = await until_ready(child, self.planned, self.ctx.hub, self._first_seq)
            if outcome == "ready" and spec.kind == "service":
                been_ready = True
                self.healthy = True
                self.timings.ready_at = time.time()
                self._move(State.RUNNING, "ready")
                outcome = await while_running(child, self.planned, self.ctx.settings,
                                              self._set_health, self._note, self.ctx.ticker)
            self.healthy = False
            if outcome in ("exited", "ready"):
                await self._drain(child)
            reason = self._reason(outcome, child)
            await end_scope(child, self.scope, spec.stop_timeout, self._note, self._stop_signal)
            self._collect(child)
            if spec.kind == "job" and outcome == "ready":
                self.timings.ready_at = time.time()
                self._move(State.STOPPED, "completed")
                return
            if self._hold:
                self._move(State.STOPPED, f"{reason} while the stack was stopping")
                return
            if not been_ready or not spec.auto_restart:
                self._move(State.FAILED, reason)
                return
            failures = next_failures(failures, self.ctx.clock.now() - run_start)
            if failures > spec.max_restarts:
                self._move(State.FAILED, f"{reason}; crash loop: gave up after "
                                         f"{spec.max_restarts} restarts")
                return
            delay = self._backoff.delay(failures)
            self._move(State.BACKOFF, f"{reason}; restarting in {delay:g}s")
            await self.ctx.clock.sleep(delay)
            self.restarts += 1

    async def _wait_deps(self) -> str | None:
        """None once every dependency meets its condition; the reason when one never
        will (failed, or stopped with nobody asking it to start)."""
        conditions = dict(self.planned.spec.conditions)
        try:
            while True:
                waiting: list[tuple[str, str]] = []
                for dep in self.deps:
                    condition = conditions.get(dep.name)
                    if dep.meets(condition):
                        continue
                    if dep.state in (State.FAILED, State.STOPPED) and not dep.starting_soon:
                        what = "failed" if dep.state == State.FAILED else "is stopped"
                        return f"dependency '{dep.name}' {what}" + \
                            (f": {dep.reason}" if dep.reason else "")
                    waiting.append((dep.name, condition or "healthy"))
                self.waiting_on = tuple(waiting)
                if not waiting:
                    self.timings.deps_met_at = time.time()
                    return None
                await self.wait_change()
        finally:
            self.waiting_on = ()

    def meets(self, condition: str | None) -> bool:
        """Whether a dependant waiting on this service with `condition` may start."""
        if condition == "started":
            return self.ready or (self.state in (State.STARTING, State.RUNNING, State.BACKOFF)
                                  and self.pid is not None)
        if condition == "completed_successfully":
            return self.state == State.STOPPED and self.exit_code == 0
        return self.ready

    def _set_health(self, ok: bool) -> None:
        self.healthy = ok

    def _note(self, text: str) -> None:
        self.ctx.hub.system(self.name, text)

    def _reason(self, outcome: Outcome, child: Child) -> str:
        spec = self.planned.spec
        if outcome == "timeout":
            return (f"not ready within start_timeout={spec.start_timeout:g}s "
                    f"(readiness: {spec.readiness.describe()})")
        if outcome == "unhealthy":
            return (f"liveness probe failed {self.ctx.settings.liveness_failures} times in a "
                    "row (hung?)")
        code = child.exited.result() if child.exited.done() else None
        if code is not None and code < 0:
            return f"killed by signal {-code}"
        return f"exited with code {code}"

    async def _setup(self) -> None:
        step = self.planned
        if self._setup_done or not step.setup_argv or step.setup_creates is None:
            return
        if step.setup_creates.exists():
            self._setup_done = True
            return
        self._note(f"setup: {' '.join(step.setup_argv)} (because {step.setup_creates} "
                   "is missing)")
        child = await self._spawn(step.setup_argv, main=False)
        code = await asyncio.shield(child.exited)
        await self._drain(child)
        await end_scope(child, self.scope, self.planned.spec.stop_timeout, self._note,
                        self._stop_signal)
        self._collect(child)
        if code != 0:
            raise SpawnError(f"service {self.name}: setup command "
                             f"{' '.join(step.setup_argv)!r} exited with code {code}")
        self._setup_done = True

    async def _spawn(self, argv: tuple[str, ...] | None = None, main: bool = True) -> Child:
        env = {**self.ctx.base_env, **self.planned.env, "PYTHONUNBUFFERED": "1"}
        if self.planned.port is not None:
            env.setdefault("PORT", str(self.planned.port))
        first_seq = self.ctx.hub.last_seq(self.name) + 1
        place = self.ctx.ownership.placement(self.name)
        proc = spawn(self.name, argv or self.planned.argv, self.planned.cwd, env, place)
        child = Child(self.name, proc, self.ctx.hub, asyncio.get_running_loop())
        self.child = child  # before any await: a cancelled start still finds it
        if main:
            self._main = child
            self.pid, self.pgid = child.pid, child.pgid
            self.started_at = self.timings.spawned_at = time.time()
            self.timings.ready_at = None  # a restart after a crash: not ready again yet
            self.exit_code = None
            self._first_seq = first_seq
        await child.attach_output(self.ctx.hub)
        return child

    async def _drain(self, child: Child) -> None:
        """Let the last output arrive before judging an exit (the last 20 lines matter)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(child.output_closed), 0.5)

    async def _watch_external(self) -> None:
        """External services are only probed and shown, never started or stopped."""
        settings = self.ctx.settings
        while True:
            ok = await probes.probe(self.planned.spec.readiness, self.planned.port, 2.0)
            if ok != self.healthy:
                self.healthy = ok
                self._note("external: reachable" if ok else
                           f"external: not reachable on port {self.planned.port}")
                self.ctx.on_transition(Transition(self.name, State.EXTERNAL, State.EXTERNAL,
                                                  "probe", time.time()))
            await asyncio.sleep(settings.liveness_interval)
