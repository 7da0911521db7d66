"""One service's supervisor: a state machine driven by one lifecycle task.

Rules that shape this file:
- Before a service has been ready once, any failure is final (FAILED): fast, honest
  feedback beats a silent retry loop at `up`. After that, `auto_restart` restarts it
  with exponential backoff until `max_restarts` consecutive quick failures.
- A running service with a network readiness probe is re-probed every
  `liveness_interval`; after `liveness_failures` misses in a row it is restarted (the
  hung-but-holding-its-port case).
- A job (`kind = "job"`) is ready when it exits 0; it is then STOPPED ("completed").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hippo_tasks.model.plan import PlannedService
from hippo_tasks.model.spec import StackSettings
from hippo_tasks.supervision import probes
from hippo_tasks.supervision.backoff import Backoff, Clock, next_failures
from hippo_tasks.supervision.logs import LogHub
from hippo_tasks.supervision.orphans import OrphanGuard
from hippo_tasks.supervision.process import Child, SpawnError, end_group, spawn
from hippo_tasks.supervision.states import ACTIVE, State, StateMachine, Transition

Outcome = Literal["ready", "exited", "timeout", "unhealthy"]


@dataclass
class SupervisorContext:
    hub: LogHub
    clock: Clock
    guard: OrphanGuard | None
    settings: StackSettings
    base_env: Mapping[str, str]
    on_transition: Callable[[Transition], None]


class ServiceSupervisor:
    def __init__(self, planned: PlannedService, ctx: SupervisorContext) -> None:
        self.planned = planned
        self.name = planned.name
        self.ctx = ctx
        spec = planned.spec
        initial = State.EXTERNAL if spec.external else State.PENDING
        self.sm = StateMachine(self.name, time.time, self._changed, initial)
        self.child: Child | None = None
        self.pid: int | None = None
        self.pgid: int | None = None
        self.started_at: float | None = None
        self.restarts = 0
        self.exit_code: int | None = None
        self.healthy: bool | None = None
        self.reason = ""
        self.settled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._setup_done = False
        self._backoff = Backoff(ctx.settings.backoff_initial, ctx.settings.backoff_max)

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
    def active(self) -> bool:
        """Its lifecycle task is running (starting, up, or waiting to restart)."""
        return self._task is not None and not self._task.done()

    def status_row(self) -> dict[str, object]:
        spec = self.planned.spec
        st = self.sm.state
        up = self.started_at if st in (State.RUNNING, State.STARTING) else None
        return {
            "name": self.name,
            "state": st.value,
            "healthy": bool(self.healthy),
            "pid": self.pid if st in ACTIVE else None,
            "port": self.planned.port,
            "restarts": self.restarts,
            "uptime_s": round(time.time() - up, 1) if up else None,
            "exit_code": self.exit_code,
            "ready": self.ready,
            "blocking": spec.blocking,
            "external": spec.external,
            "kind": spec.kind,
            "reason": self.reason,
            "depends_on": list(self.planned.depends_on),
            "url": self.planned.url,
        }

    def _changed(self, event: Transition) -> None:
        note = f"{event.old.value} -> {event.new.value}"
        if event.reason:
            note += f" ({event.reason})"
        self.ctx.hub.system(self.name, note)
        if event.new in (State.RUNNING, State.STOPPED, State.FAILED, State.EXTERNAL):
            self.settled.set()
        else:
            self.settled.clear()
        self.ctx.on_transition(event)

    def _move(self, new: State, reason: str = "") -> None:
        self.reason = reason
        self.sm.move(new, reason)

    # ---- commands ---------------------------------------------------------------
    def start(self) -> None:
        """Begin the lifecycle if it is not running; returns at once (await `settled`)."""
        if self.planned.spec.external:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._watch_external(), name=self.name)
            return
        if self._task is not None and not self._task.done():
            return
        if self.sm.state in (State.STOPPED, State.FAILED):
            self._move(State.PENDING, "start requested")
        self.settled.clear()
        self._task = asyncio.create_task(self._lifecycle(), name=self.name)

    def fail_before_start(self, reason: str) -> None:
        if self.sm.state == State.PENDING:
            self._move(State.FAILED, reason)

    async def stop(self, reason: str = "stop requested") -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.planned.spec.external:
            return
        child = self.child
        if child is not None:
            if self.sm.state in (State.STARTING, State.RUNNING):
                self._move(State.STOPPING, reason)
            await self._end(child)
        if self.sm.state in (State.PENDING, State.STARTING, State.RUNNING, State.STOPPING,
                             State.BACKOFF):
            self._move(State.STOPPED, reason)
        self.healthy = False

    async def _end(self, child: Child) -> None:
        await end_group(child, self.planned.spec.stop_timeout,
                        lambda msg: self.ctx.hub.system(self.name, msg))
        self._collect(child)

    def _collect(self, child: Child) -> None:
        if child.exited.done() and not child.exited.cancelled():
            self.exit_code = child.exited.result()
        if self.ctx.guard is not None:
            self.ctx.guard.forget(child.pgid)
        child.close_output()
        if self.child is child:
            self.child = None

    # ---- lifecycle --------------------------------------------------------------
    async def _lifecycle(self) -> None:
        spec = self.planned.spec
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
            outcome = await self._until_ready(child)
            if outcome == "ready" and spec.kind == "service":
                been_ready = True
                self.healthy = True
                self._move(State.RUNNING, "ready")
                outcome = await self._while_running(child)
            if outcome != "exited":
                self.healthy = False
                await self._end(child)
            else:
                await self._drain(child)
                await self._end(child)
            code = self.exit_code
            if spec.kind == "job" and code == 0:
                self._move(State.STOPPED, "completed")
                return
            reason = self._reason(outcome, code)
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

    def _reason(self, outcome: Outcome, code: int | None) -> str:
        spec = self.planned.spec
        if outcome == "timeout":
            return (f"not ready within start_timeout={spec.start_timeout:g}s "
                    f"(readiness: {spec.readiness.describe()})")
        if outcome == "unhealthy":
            return (f"liveness probe failed {self.ctx.settings.liveness_failures} times in a "
                    "row (hung?)")
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
        self.ctx.hub.system(self.name, f"setup: {' '.join(step.setup_argv)} "
                                       f"(because {step.setup_creates} is missing)")
        child = await self._spawn(step.setup_argv, track_pid=False)
        code = await asyncio.shield(child.exited)
        await self._drain(child)
        self._collect(child)
        if code != 0:
            raise SpawnError(f"service {self.name}: setup command "
                             f"{' '.join(step.setup_argv)!r} exited with code {code}")
        self._setup_done = True

    async def _spawn(self, argv: tuple[str, ...] | None = None,
                     track_pid: bool = True) -> Child:
        env = {**self.ctx.base_env, **self.planned.env, "PYTHONUNBUFFERED": "1"}
        if self.planned.port is not None:
            env.setdefault("PORT", str(self.planned.port))
        proc = spawn(self.name, argv or self.planned.argv, self.planned.cwd, env)
        child = Child(self.name, proc, self.ctx.hub, asyncio.get_running_loop())
        if self.ctx.guard is not None:
            self.ctx.guard.track(child.pgid)
        await child.attach_output(self.ctx.hub)
        self.child = child
        if track_pid:
            self.pid, self.pgid = child.pid, child.pgid
            self.started_at = time.time()
            self.exit_code = None
        return child

    async def _drain(self, child: Child) -> None:
        """Let the last output arrive before judging an exit (the last 20 lines matter)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(child.output_closed), 0.5)

    async def _until_ready(self, child: Child) -> Outcome:
        spec = self.planned.spec
        readiness = spec.readiness
        if spec.kind == "job":
            code = await asyncio.shield(child.exited)
            return "ready" if code == 0 else "exited"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.start_timeout
        if readiness.kind == "log":
            return await self._until_log(child, readiness.value, deadline)
        if readiness.kind == "none":
            return "ready"
        attempt = 0
        while True:
            if child.exited.done():
                return "exited"
            remaining = deadline - loop.time()
            if remaining <= 0:
                return "timeout"
            if await probes.probe(readiness, self.planned.port, min(1.0, remaining)):
                return "ready" if not child.exited.done() else "exited"
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(child.exited),
                                       min(probes.probe_delay(attempt),
                                           max(0.0, deadline - loop.time())))
            attempt += 1

    async def _until_log(self, child: Child, pattern: str, deadline: float) -> Outcome:
        loop = asyncio.get_running_loop()
        matched: asyncio.Future[None] = loop.create_future()
        regex = re.compile(pattern)
        hub = self.ctx.hub
        # Lines already captured count too (a fast service may print before we watch).
        for rec in hub.tail(self.name, 200):
            if not rec.system and rec.seq > 0 and regex.search(rec.text):
                matched.set_result(None)
                break

        def on_line(text: str) -> None:
            if not matched.done() and regex.search(text):
                matched.set_result(None)

        hub.watch(self.name, on_line)
        try:
            waits: set[asyncio.Future[Any]] = {matched, child.exited}
            done, _ = await asyncio.wait(waits,
                                         timeout=max(0.0, deadline - loop.time()),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            hub.watch(self.name, None)
        if matched in done:
            return "ready"
        return "exited" if child.exited.done() else "timeout"

    async def _while_running(self, child: Child) -> Outcome:
        readiness = self.planned.spec.readiness
        settings = self.ctx.settings
        if readiness.kind not in ("http", "tcp"):
            await asyncio.shield(child.exited)
            return "exited"
        misses = 0
        while True:
            # Real time, not the injected clock: the clock stands for backoff time only.
            sleeper = asyncio.ensure_future(asyncio.sleep(settings.liveness_interval))
            waits: set[asyncio.Future[Any]] = {sleeper, child.exited}
            done, _ = await asyncio.wait(waits,
                                         return_when=asyncio.FIRST_COMPLETED)
            if child.exited in done:
                sleeper.cancel()
                return "exited"
            ok = await probes.probe(readiness, self.planned.port, 2.0)
            if child.exited.done():
                return "exited"
            misses = 0 if ok else misses + 1
            self.healthy = ok
            if misses:
                self.ctx.hub.system(self.name, f"liveness probe failed ({misses}/"
                                               f"{settings.liveness_failures})")
            if misses >= settings.liveness_failures:
                return "unhealthy"

    async def _watch_external(self) -> None:
        """External services are only probed and shown, never started or stopped."""
        settings = self.ctx.settings
        while True:
            ok = await probes.probe(self.planned.spec.readiness, self.planned.port, 2.0)
            if ok != self.healthy:
                self.healthy = ok
                self.ctx.hub.system(self.name, "external: reachable" if ok else
                                    f"external: not reachable on port {self.planned.port}")
                self.ctx.on_transition(Transition(self.name, State.EXTERNAL, State.EXTERNAL,
                                                  "probe", time.time()))
            self.settled.set()
            await asyncio.sleep(settings.liveness_interval)


def child_env() -> dict[str, str]:
    """The environment children inherit: ours, minus what would confuse a child, plus
    the folder holding hippo_tasks on PYTHONPATH, so `${python} -m hippo_tasks...`
    works from a plain checkout as well as from an install."""
    env = dict(os.environ)
    for key in ("PYTHONSTARTUP", "PYTHONINSPECT"):
        env.pop(key, None)
    package_parent = str(Path(__file__).resolve().parents[2])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_parent not in paths and "HIPPODROME_PEX_DIR" not in env:
        env["PYTHONPATH"] = os.pathsep.join([package_parent, *paths])
    return env
