"""One run of one service, and the state it leaves behind.

A run waits for the service's dependencies, runs its setup command once, spawns it,
waits until it is ready, watches it while it runs (liveness), and after a crash
restarts it with backoff, or gives up. ServiceSupervisor (service.py) owns the mailbox
that decides when a run starts and when it is ended; this class is everything a run
does between those two moments, and the fields `status` and the registry read.

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
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from hippo_tasks.errors import cut_long
from hippo_tasks.model.plan import HOST, PlannedService
from hippo_tasks.model.spec import SETUP_TIMEOUT, StackSettings
from hippo_tasks.supervision import ports, probes
from hippo_tasks.supervision.backoff import Backoff, Clock, next_failures
from hippo_tasks.supervision.child_env import for_program
from hippo_tasks.supervision.liveness import Liveness
from hippo_tasks.supervision.logs import LogHub
from hippo_tasks.supervision.ownership import Ownership
from hippo_tasks.supervision.process import (
    SHORT_OF,
    Child,
    SpawnError,
    end_scope,
    shortage,
    spawn,
)
from hippo_tasks.supervision.readiness import Outcome, until_ready, while_running
from hippo_tasks.supervision.scope import Scope, start_ticks
from hippo_tasks.supervision.states import ALLOWED, State, StateMachine, Transition
from hippo_tasks.supervision.timeline import StartTimings

if TYPE_CHECKING:
    from hippo_tasks.supervision.service import ServiceSupervisor


class SupervisorContext:
    """What every service's supervisor shares (a plain class: no dataclasses on `up`'s
    way to its first spawn)."""

    __slots__ = ("hub", "clock", "ownership", "settings", "base_env", "on_transition",
                 "liveness", "moved")

    def __init__(self, hub: LogHub, clock: Clock, ownership: Ownership,
                 settings: StackSettings, base_env: Mapping[str, str],
                 on_transition: Callable[[Transition], None],
                 liveness: Liveness | None = None,
                 moved: Callable[[], str | None] = lambda: None) -> None:
        self.moved = moved
        """Why nothing may start now that the project folder was moved away, or None."""
        self.hub = hub
        self.clock = clock
        self.ownership = ownership
        self.settings = settings
        self.base_env = base_env
        self.on_transition = on_transition
        self.liveness = Liveness() if liveness is None else liveness
        """Probes every running service's liveness, all at once per tick."""


class ServiceRun:
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
        self.child: Child | None = None
        self._main: Child | None = None
        self.pid: int | None = None
        self.pgid: int | None = None
        self._leader: int | None = None
        """The main process's start ticks, which tell its group from a later one of the
        same number (Scope._group)."""
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
        self._backoff_end: tuple[str, float] | None = None
        """In backoff: the reason up to its countdown, and when the wait ends (monotonic
        time), so a status read says the time left: "restarting in 30s" stood still
        for the 30 s (testers' notes)."""
        self._hold = False
        self._completed = False
        """A job whose process exited 0, while what it left running is ended: its time is
        its own until then (the leftovers' stop_timeout was counted as the job's, adv26
        f/3), and a start asked now runs it again (adv27 i/8). Its dependants still wait
        for the leftovers to be gone: one holding a dependant's port failed `up` (i/13)."""
        cgroup = ctx.ownership.scope(self.name).cgroup
        self.cgroup_text = str(cgroup) if cgroup is not None else None
        """Fixed for the daemon's run; every status read shows it (a Path per read was a
        fifth of `GET /api/status`)."""

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
            return self.completed
        return st == State.EXTERNAL

    @property
    def completed(self) -> bool:
        """It ran to exit 0 by itself: not a job stopped mid-run that exits 0 on SIGTERM
        (a graceful handler, `trap 'exit 0' TERM`), which read `completed` and let its
        `completed_successfully` dependant start (adv31 r/4)."""
        return (self.sm.state == State.STOPPED and self.exit_code == 0
                and self.reason == "completed")

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
        return self.ctx.ownership.scope(self.name, self.pgid, self._leader)

    # ---- what the supervisor decides (service.py) ------------------------------------
    def _changed(self, event: Transition) -> None:
        raise NotImplementedError

    async def _died(self, exc: BaseException, in_run: bool = False) -> None:
        raise NotImplementedError

    def _move(self, new: State, reason: str = "") -> None:
        self._backoff_end = None
        self.reason = reason
        self.sm.move(new, reason)

    def _back_off(self, words: str, delay: float) -> None:
        self._move(State.BACKOFF, f"{words} {delay:g}s")
        self._backoff_end = (words, time.monotonic() + delay)

    def reason_now(self) -> str:
        """The reason, with a backoff's countdown as it stands at this moment."""
        end = self._backoff_end
        if end is None or self.sm.state != State.BACKOFF:
            return self.reason
        left = max(0.0, end[1] - time.monotonic())  # the API's threads: no loop clock
        return f"{end[0]} {math.ceil(left * 10) / 10:g}s"

    def _collect(self, child: Child) -> None:
        """After the scope was ended: the main process's group is empty (or left to
        its marks), so its number is free for the kernel to give to anyone's new
        session: forget it, or a later stop of this service would signal that group."""
        if child is self._main and child.exited.done() and not child.exited.cancelled():
            self.exit_code = child.exited.result()
            self.pgid = None
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
        self.failed_for_dependency = blocked is not None
        if blocked is not None:
            # A dependency stopped on purpose (`hd stop -s db` while the stack starts)
            # leaves this one stopped too, not failed: a failure of a blocking service
            # would end the whole stack the user only asked to stop a part of.
            self._move(*blocked)
            return
        failures = 0
        been_ready = False
        while True:
            try:
                await self._setup()
                child = await self._spawn(port_busy_retries=been_ready)
            except SpawnError as exc:
                if not exc.transient or self._hold or State.BACKOFF not in ALLOWED[self.state]:
                    self._move(State.FAILED, str(exc))
                    return
                # Short of descriptors or processes for a moment: back off and try again,
                # counted as a quick failure, so max_restarts still ends a lasting shortage.
                failures = next_failures(failures, 0.0)
                if failures > spec.max_restarts:
                    self._move(State.FAILED, f"{exc}; gave up after {spec.max_restarts} "
                                             "tries")
                    return
                delay = self._backoff.delay(failures)
                self._back_off(f"{exc}; trying again in", delay)
                await self.ctx.clock.sleep(delay)
                self.restarts += 1
                continue
            self._move(State.STARTING, f"pid {child.pid}")
            run_start = self.ctx.clock.now()
            outcome = await until_ready(child, self.planned, self.ctx.hub, self._first_seq)
            if outcome == "ready" and spec.kind == "service":
                been_ready = True
                self.healthy = True
                self.timings.ready_at = time.time()
                self._move(State.RUNNING, "ready")
                outcome = await while_running(child, self.planned, self.ctx.settings,
                                              self._set_health, self._note, self.ctx.liveness)
            self.healthy = False
            reason = self._reason(outcome, child)
            if spec.kind == "job" and outcome == "ready":  # exited 0: done, whatever is left
                self.timings.ready_at = time.time()
                self._completed = True
            if self.state in (State.STARTING, State.RUNNING) and \
                    (not child.exited.done() or not self.scope.empty()):
                # Draining the output and ending what is left can take stop_timeout (a
                # child that ignores SIGTERM and holds the pipe): not `running` meanwhile,
                # whatever status or the registry is asked.
                self._move(State.STOPPING, f"{reason}; ending its processes")
            if outcome in ("exited", "ready"):
                await self._drain(child)
            await end_scope(child, self.scope, spec.stop_timeout, self._note, self._stop_signal)
            self._collect(child)
            if spec.kind == "job" and outcome == "ready":
                self._move(State.STOPPED, "completed")
                self._completed = False
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
            self._back_off(f"{reason}; restarting in", delay)
            await self.ctx.clock.sleep(delay)
            self.restarts += 1

    async def _wait_deps(self) -> tuple[State, str] | None:
        """None once every dependency meets its condition; when one never will, the
        state to take and why (failed when it failed, stopped when it was stopped with
        nobody asking it to start)."""
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
                        return dep.state, f"dependency '{dep.name}' {what}" + \
                            (f": {dep.reason}" if dep.reason else "")
                    waiting.append((dep.name, condition or "healthy"))
                self.waiting_on = tuple(waiting)
                if not waiting:
                    self.timings.deps_met_at = time.time()
                    return None
                await self.wait_change()
        finally:
            self.waiting_on = ()

    @property
    def going_down(self) -> bool:
        """Its processes are about to end (ServiceSupervisor: a stop or restart posted,
        or the take-down of one under way)."""
        return False

    def meets(self, condition: str | None) -> bool:
        """Whether a dependant waiting on this service with `condition` may start. Not
        while a stop of this service is asked for or under way (held): a whole-stack
        restart held every service, and a dependant's restart coalesced from another
        terminal started on a dependency the same restart stopped a moment later."""
        if condition == "completed_successfully":
            return self.completed
        if (self._hold or self.going_down) and \
                not (self.planned.spec.kind == "job" and self.ready):
            # A stop of a job that had completed changes nothing: it held its dependants
            # as "stopped on purpose" for good, their restarts refused (adv25 d/12).
            return False
        if condition == "started":
            return self.ready or (self.state in (State.STARTING, State.RUNNING, State.BACKOFF)
                                  and self.pid is not None)
        return self.ready

    def _set_health(self, ok: bool) -> None:
        self.healthy = ok

    def _note(self, text: str) -> None:
        self.ctx.hub.system(self.name, text)

    def _reason(self, outcome: Outcome, child: Child) -> str:
        spec = self.planned.spec
        if outcome == "timeout" and spec.kind == "job":
            return f"did not finish within start_timeout={spec.start_timeout:g}s"
        if outcome == "timeout":
            port = self.planned.port
            six = bool(port) and spec.readiness.kind in ("tcp", "http") and \
                probes.ipv6_only(port or 0)
            where = (f"; it answers on [::1]:{port} (IPv6) only, and the stack reaches it "
                     f"on {HOST}:{port}: have it listen on {HOST} (or on every address), "
                     "as a server told `localhost` may not (Node 17+)" if six else "")
            return (f"not ready within start_timeout={spec.start_timeout:g}s "
                    f"(readiness: {spec.readiness.describe()}){where}")
        if outcome == "unhealthy":
            return (f"liveness probe failed {self.ctx.settings.liveness_failures} times in a "
                    "row (hung?)")
        code = child.exited.result() if child.exited.done() else None
        if code is not None and code < 0:
            return f"killed by signal {-code}"
        if code == 0 and spec.kind == "service" and self.state == State.STARTING:
            # A daemonizing program (`--daemon`, `-d`, `pg_ctl start`): "failed: exited
            # with code 0" said nothing of why (adv26 f's notes).
            return ("exited with code 0 before it was ready: a service must stay in the "
                    "foreground (a program that forks into the background and exits, or "
                    "a --daemon / -d flag: leave that flag out; or make it a kind = \"job\")")
        return f"exited with code {code}"

    async def _setup(self) -> None:
        step = self.planned
        if self._setup_done or not step.setup_argv or step.setup_creates is None:
            return
        try:
            made = step.setup_creates.exists()
        except OSError as exc:  # a name over NAME_MAX: "internal error" (adv27 i/10)
            raise SpawnError(f"service {self.name}: setup's creates "
                             f"'{cut_long(str(step.setup_creates))}': {exc.strerror or exc} "
                             "(fix `setup.creates` in the stack file)") from None
        if made:
            self._setup_done = True
            return
        limit = step.spec.setup.timeout if step.spec.setup is not None else SETUP_TIMEOUT
        command = " ".join(step.setup_argv)
        self._note(f"setup: {command} (because {step.setup_creates} is missing)")
        child = await self._spawn(step.setup_argv, main=False)
        # Said by `hd status --json`, `hd why` and the page while the step runs: the
        # service had shown only "pending", with no pid, for as long as it took.
        self.reason = (f"running its setup step {command!r} (pid {child.pid}, since "
                       f"{time.strftime('%H:%M:%S')}; at most {limit:g}s: setup.timeout)")
        done, _ = await asyncio.wait({child.exited}, timeout=limit)  # a stop cancels only us
        if not done:
            self._note(f"setup: {command} did not finish within {limit:g}s; ending it")
        else:
            await self._drain(child)
        await end_scope(child, self.scope, self.planned.spec.stop_timeout, self._note,
                        self._stop_signal)
        self._collect(child)
        self.reason = ""
        if not done:
            raise SpawnError(f"service {self.name}: setup command {command!r} did not "
                             f"finish within {limit:g}s (setup.timeout) and was ended; "
                             "raise setup.timeout if it needs longer")
        code = child.exited.result()
        if code != 0:
            raise SpawnError(f"service {self.name}: setup command "
                             f"{command!r} exited with code {code}")
        self._setup_done = True

    async def _spawn(self, argv: tuple[str, ...] | None = None, main: bool = True,
                     port_busy_retries: bool = False) -> Child:
        """`port_busy_retries`: a port another process holds is a failed attempt tried
        again with backoff (a restart after a crash: the port held a moment made the
        service `failed` for good), not a final failure (a first start: see taken)."""
        moved = self.ctx.moved()
        if moved:
            raise SpawnError(f"service {self.name}: {moved}")
        env = {**self.ctx.base_env, **self.planned.env, "PYTHONUNBUFFERED": "1"}
        if self.planned.port is not None:
            # $PORT is the service's port, as PYTHONUNBUFFERED is Hippodrome's: a PORT
            # in an app's .env (or [env]) replaced it in silence, the service bound
            # another port, and it failed "not ready" with nothing naming why.
            given = env.get("PORT")
            env["PORT"] = str(self.planned.port)
            if given is not None and given != env["PORT"] and main:
                self._note(f"PORT={given[:40]} from its env is replaced by its port, "
                           f"{self.planned.port}: a service with `port` gets it as $PORT "
                           "(give another port another name)")
        if main and self.planned.port is not None:
            try:
                busy = ports.taken(self.name, self.planned.port, again=port_busy_retries)
            except OSError as exc:  # the check's own socket: "internal error" (adv24 c/3)
                if exc.errno not in SHORT_OF:
                    raise
                raise SpawnError(f"service {self.name}: cannot check its port "
                                 f"{self.planned.port}: {os.strerror(exc.errno)} "
                                 f"({shortage(exc.errno)})", transient=True) from exc
            if busy is not None:  # a stranger would answer its probe: it would be "ready"
                raise SpawnError(f"service {self.name}: {busy}", transient=port_busy_retries)
        first_seq = self.ctx.hub.last_seq(self.name) + 1
        place = self.ctx.ownership.placement(self.name)
        argv = argv or self.planned.argv
        proc = spawn(self.name, argv, self.planned.cwd, for_program(env, argv), place,
                     "command" if main else "setup")
        child = Child(self.name, proc, self.ctx.hub, asyncio.get_running_loop())
        self.child = child  # before any await: a cancelled start still finds it
        if main:
            self._main = child
            self.pid, self.pgid = child.pid, child.pgid
            self._leader = start_ticks(child.pgid) if child.pgid == child.pid else None
            now = time.time()
            if self.timings.spawned_at is not None:  # a restart after an exit, by itself
                self.timings.again(now)
            self.started_at = self.timings.spawned_at = now
            self.timings.ready_at = None  # a restart after a crash: not ready again yet
            self.exit_code = None
            self._completed = False
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
