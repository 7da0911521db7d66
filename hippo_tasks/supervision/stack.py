"""The whole stack: start in dependency order, in parallel where independent; stop in
reverse order (dependants before what they depend on); notice a blocking failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from hippo_tasks.errors import ServiceStartError, UnknownServiceError
from hippo_tasks.model.plan import StackPlan
from hippo_tasks.supervision.service import ServiceSupervisor, SupervisorContext
from hippo_tasks.supervision.states import State, Transition
from hippo_tasks.supervision.watch import watch_files


class StackSupervisor:
    def __init__(self, plan: StackPlan, ctx: SupervisorContext,
                 log_path: Callable[[str], str] | None = None) -> None:
        self.plan = plan
        self.ctx = ctx
        self._log_path = log_path
        self.services: dict[str, ServiceSupervisor] = {
            p.name: ServiceSupervisor(p, ctx) for p in plan.services
        }
        self._starters: dict[str, asyncio.Task[None]] = {}
        self.blocking_failure: asyncio.Future[ServiceStartError] | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._tick: asyncio.Event | None = None
        """Set (and replaced) on every transition: what a waiting starter wakes on."""

    def get(self, name: str) -> ServiceSupervisor:
        try:
            return self.services[name]
        except KeyError:
            raise UnknownServiceError(name, tuple(self.services)) from None

    def dependants(self, name: str) -> list[str]:
        return [n for n, s in self.services.items() if name in s.planned.depends_on]

    def closure(self, names: Iterable[str]) -> list[str]:
        """The names and everything they depend on, in start order."""
        want: set[str] = set()

        def add(n: str) -> None:
            if n in want:
                return
            want.add(n)
            for dep in self.get(n).planned.depends_on:
                add(dep)

        for n in names:
            add(n)
        return [n for n in self.services if n in want]

    # ---- start ------------------------------------------------------------------
    def failure_for(self, svc: ServiceSupervisor) -> ServiceStartError:
        lines = [r.text for r in self.ctx.hub.tail(svc.name, 40) if not r.system][-20:]
        return ServiceStartError(
            svc.name, svc.reason, tuple(lines),
            self._log_path(svc.name) if self._log_path else None,
        )

    def on_transition(self, event: Transition) -> None:
        """Hooked in by the owner: wakes waiting starters; a blocking service failing
        during start-up is final."""
        if self._tick is not None:
            self._tick.set()
            self._tick = None
        if event.new != State.FAILED or self.blocking_failure is None:
            return
        svc = self.services.get(event.service)
        if svc is None or not svc.planned.spec.blocking or self.blocking_failure.done():
            return
        self.blocking_failure.set_result(self.failure_for(svc))

    async def start(self, names: Iterable[str] | None = None) -> None:
        """Start these services (default all) and their dependencies; returns at once."""
        order = self.closure(names if names is not None else self.services)
        for name in order:
            svc = self.services[name]
            task = self._starters.get(name)
            if task is not None and not task.done():
                continue
            if svc.state in (State.RUNNING, State.STARTING, State.BACKOFF):
                continue
            self._starters[name] = asyncio.create_task(self._start_after_deps(svc))

    async def _start_after_deps(self, svc: ServiceSupervisor) -> None:
        deps = [self.services[d] for d in svc.planned.depends_on]
        while True:
            pending = [d for d in deps if not d.ready]
            active = self._starters_active()
            failed = [d for d in pending if d.state == State.FAILED
                      or (d.state == State.STOPPED and d.name not in active)]
            if failed:
                svc.fail_before_start(f"dependency '{failed[0].name}' is {failed[0].state.value}"
                                      + (f": {failed[0].reason}" if failed[0].reason else ""))
                return
            if not pending:
                break
            # Whatever unblocks us (a dependency ready, failed, or its starter moving it
            # out of STOPPED) is a transition; the timeout is only a safety net.
            if self._tick is None:
                self._tick = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._tick.wait(), 0.5)
        svc.start()

    def _starters_active(self) -> set[str]:
        starting = {n for n, t in self._starters.items() if not t.done()}
        return starting | {n for n, s in self.services.items() if s.active}

    async def wait_settled(self, names: Iterable[str] | None = None) -> None:
        """Until every named service is settled (ready, stopped or failed)."""
        targets = [self.services[n] for n in (names if names is not None else self.services)]
        while True:
            starting = [t for t in self._starters.values() if not t.done()]
            if starting:
                await asyncio.wait(starting)
                continue
            unsettled = [s for s in targets if not s.settled.is_set()]
            if not unsettled:
                return
            await asyncio.wait([asyncio.ensure_future(s.settled.wait()) for s in unsettled])

    async def start_and_wait(self, names: Iterable[str] | None = None) -> ServiceStartError | None:
        """Start, then wait until all settle or a blocking one fails (returned)."""
        loop = asyncio.get_running_loop()
        self.blocking_failure = loop.create_future()
        await self.start(names)
        waiter = asyncio.ensure_future(self.wait_settled(names))
        waits: set[asyncio.Future[Any]] = {waiter, self.blocking_failure}
        done, _ = await asyncio.wait(waits,
                                     return_when=asyncio.FIRST_COMPLETED)
        failure = self.blocking_failure.result() if self.blocking_failure.done() else None
        self.blocking_failure = None
        if failure is not None:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        return failure

    # ---- stop -------------------------------------------------------------------
    async def stop(self, names: Iterable[str] | None = None,
                   reason: str = "stop requested") -> None:
        """Stop these (default all), each after its running dependants in the set stopped."""
        chosen = set(names if names is not None else self.services)
        for name in chosen:
            task = self._starters.pop(name, None)
            if task is not None and not task.done():
                task.cancel()
        stopped: dict[str, asyncio.Event] = {n: asyncio.Event() for n in chosen}

        async def stop_one(name: str) -> None:
            for dep in self.dependants(name):
                if dep in stopped:
                    await stopped[dep].wait()
            try:
                await self.services[name].stop(reason)
            finally:
                stopped[name].set()

        await asyncio.gather(*(stop_one(n) for n in chosen))

    async def restart(self, name: str) -> None:
        svc = self.get(name)
        await svc.stop("restart requested")
        await self.start([name])
        await self.wait_settled([name])

    # ---- hot reload ---------------------------------------------------------------
    def start_watchers(self) -> None:
        """One file watcher per service that lists `watch` globs (relative to its cwd)."""
        for svc in self.services.values():
            if svc.planned.spec.watch and not svc.planned.spec.external:
                self._watchers.append(asyncio.create_task(watch_files(
                    svc.planned.cwd, svc.planned.spec.watch, self._reloader(svc.name))))

    def _reloader(self, name: str) -> Callable[[list[str]], Awaitable[None]]:
        async def reload(paths: list[str]) -> None:
            svc = self.services[name]
            if svc.state == State.STOPPED and not svc.active:
                return  # stopped on purpose: a file change does not start it
            shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3
                                            else "")
            self.ctx.hub.system(name, f"change detected ({shown}): restarting")
            await self.restart(name)

        return reload

    async def stop_watchers(self) -> None:
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watchers.clear()

    def status(self) -> list[dict[str, object]]:
        return [s.status_row() for s in self.services.values()]
