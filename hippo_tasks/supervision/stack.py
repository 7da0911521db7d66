"""The whole stack: start in dependency order, in parallel where independent; stop in
reverse order (dependants before what they depend on); notice a blocking failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from hippo_tasks.errors import ServiceStartError, UnknownServiceError
from hippo_tasks.model.plan import StackPlan
from hippo_tasks.supervision.run import SupervisorContext
from hippo_tasks.supervision.service import Op, ServiceSupervisor
from hippo_tasks.supervision.snapshot import ServiceSnapshot
from hippo_tasks.supervision.stack_watcher import StackWatcher
from hippo_tasks.supervision.states import State, Transition
from hippo_tasks.supervision.watch import Watched
from hippo_tasks.terminal_text import for_terminal

OWN_WRITES_S = 1.0
"""Changes that began this soon after a service exited restart nothing (_reload)."""
Settled = dict[str, ServiceSnapshot]
"""Each service a request named, as it was when that request settled."""


class StackSupervisor:
    def __init__(self, plan: StackPlan, ctx: SupervisorContext,
                 log_path: Callable[[str], str] | None = None,
                 log_note: Callable[[str], str | None] | None = None) -> None:
        self.plan = plan
        self.ctx = ctx
        self._log_path = log_path
        self._log_note = log_note
        self.services: dict[str, ServiceSupervisor] = {
            p.name: ServiceSupervisor(p, ctx) for p in plan.services
        }
        for svc in self.services.values():
            svc.deps = [self.services[d] for d in svc.planned.depends_on]
            svc.wait_change = self.wait_change
            svc.on_update = self._poke
        self.blocking_failure: asyncio.Future[ServiceStartError] | None = None
        self._watcher: StackWatcher | None = None
        self._exited_at: dict[str, float] = {}
        """time.monotonic() of each service's latest move to backoff or failed."""
        self._change: asyncio.Future[None] | None = None
        """Resolved (and replaced) on every transition: what waiting services wake on."""
        self.final = False
        self._been_ready: set[str] = set()
        self._cascades: set[asyncio.Future[Settled]] = set()
        self._cascading: dict[str, int] = {}
        """Services whose explicit cascades run now (how many): their being ready again
        starts no other."""
        self._restarting: asyncio.Future[None] | None = None
        """Resolved when the whole-stack restart under way is over (restart_all)."""
        self._stack_restarts = 0
        """How many whole-stack restarts have begun: a cascade one overtook is over."""
        self._stops: list[tuple[frozenset[str], asyncio.Future[None]]] = []
        """Stops under way: what each stops, resolved when it is over (_after_stops)."""
        self._stopped_meanwhile: list[set[str]] = []
        """Per start, whole-stack restart or cascade under way: what other commands
        stopped meanwhile (a later stop wins)."""
        self._stop_sent: dict[str, float] = {}
        """Per service, when the latest stop carried out on it was sent (its request's
        kernel arrival, monotonic): a start or restart sent before it yields to it."""

    @contextlib.contextmanager
    def _stops_meanwhile(self) -> Iterator[set[str]]:
        """What other commands stop while this start, whole-stack restart or cascade is
        under way (a later stop wins). Dropped by identity, not with list.remove: that
        compares with ==, two callers' empty sets are equal, so a whole-stack restart
        removed a start's set, its own remove then raised ValueError (a 500 for `hd
        restart`), and the restart was never marked over (adv34 v/1)."""
        meanwhile: set[str] = set()
        self._stopped_meanwhile.append(meanwhile)
        try:
            yield meanwhile
        finally:
            self._stopped_meanwhile[:] = [m for m in self._stopped_meanwhile
                                          if m is not meanwhile]

    def _stopped_after(self, sent: float | None, among: Iterable[str]) -> set[str]:
        """Which of `among` a stop sent after `sent` has already stopped. Each request
        is read by a thread of its own: with cores busy, a restart sent 3 ms before a
        stop reached the loop after it, started the service again, and the stop had
        answered `stopped` (adv34 w/4). The later request wins by when it was sent."""
        if sent is None:
            return set()
        return {n for n in among if self._stop_sent.get(n, sent) > sent}

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

    # ---- change notification ----------------------------------------------------------
    async def wait_change(self) -> None:
        if self._change is None or self._change.done():
            self._change = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._change)

    def _poke(self) -> None:
        if self._change is not None and not self._change.done():
            self._change.set_result(None)
        self._change = None

    # ---- start ------------------------------------------------------------------
    def log_path(self, name: str) -> str | None:
        return self._log_path(name) if self._log_path else None

    def failure_for(self, svc: ServiceSupervisor) -> ServiceStartError:
        lines = self.ctx.hub.own_lines(svc.name, 20)
        return ServiceStartError(svc.name, svc.reason, tuple(lines), self.log_path(svc.name),
                                 self._log_note(svc.name) if self._log_note else None)

    def on_transition(self, event: Transition) -> None:
        """Hooked in by the owner: wakes waiting services; a blocking service failing
        during start-up is final."""
        self._poke()
        if event.new == State.RUNNING:
            self._ready_again(event.service)
        if event.new in (State.BACKOFF, State.FAILED):
            self._exited_at[event.service] = time.monotonic()
        if event.new != State.FAILED or self.blocking_failure is None:
            return
        svc = self.services.get(event.service)
        if svc is None or not svc.planned.spec.blocking or self.blocking_failure.done():
            return
        self.blocking_failure.set_result(self.failure_for(svc))

    def _ask(self, op: Op, names: Iterable[str],
             reason: str = "") -> list[asyncio.Future[ServiceSnapshot]]:
        return [self.services[n].request(op, reason) for n in names]

    async def _after_stops(self, names: Iterable[str]) -> None:
        """A start or restart that needs a service a stop under way is stopping begins
        once that stop is over. `hd start -s b` during `hd stop` ran between b's stop and
        a's: it found a still running, started b, and the stop then stopped a under it;
        both commands exited 0, each saying the opposite of the end state."""
        wanted = set(self.closure(names))
        while pending := [done for chosen, done in self._stops if chosen & wanted]:
            await asyncio.wait(pending)

    async def start(self, names: Iterable[str] | None = None,
                    sent: float | None = None) -> Settled:
        """Start these services (default all) and what they depend on; returns once
        each has settled (ready, failed, or stopped by a later request), with each one's
        state as it settled."""
        wanted = list(self.closure(names if names is not None else self.services))
        with self._stops_meanwhile() as meanwhile:
            meanwhile.update(self._stopped_after(sent, wanted))
            await self._after_stops(wanted)
        # A stop asked while this start waited for an earlier one is the later request:
        # it wins. Started after it, a start, stop, start, stop of the page's buttons
        # ended running, the last stop having answered `stopped` (adv28 m/1).
        held = self._held_by(meanwhile, "not started", set(wanted))
        settled = await self._start([n for n in wanted if n not in held])
        settled.update({n: self.services[n].snapshot() for n in held})
        if self._cascades:
            # A restart_cascades service this start brought back restarts what depends
            # on it: answered before that, `start` printed pids the cascade ended half
            # a second later (adv24 a/5). Its rows are read once the cascades are over.
            await asyncio.gather(*list(self._cascades), return_exceptions=True)
            settled = {name: self.services[name].snapshot() for name in settled}
        return {name: await self._through_restart(snap) for name, snap in settled.items()}

    async def _start(self, names: Iterable[str] | None = None) -> Settled:
        futures = self._ask("start", self.closure(names if names is not None
                                                  else self.services))
        return {snap.name: snap for snap in await asyncio.gather(*futures)}

    async def restart_all(self, sent: float | None = None) -> Settled:
        """Stop every service, then start them all. A start or restart of one service
        that this cut short (`hd restart -s b` while its stop half stopped b) is
        answered once this is over, with b as it is then: it said "b did not come up:
        another command changed the stack", and b was running a moment later."""
        done = self._restarting = asyncio.get_running_loop().create_future()
        self._stack_restarts += 1
        mine = self._stack_restarts
        try:
            with self._stops_meanwhile() as meanwhile:
                meanwhile.update(self._stopped_after(sent, self.services))
                await self.stop(reason="restart requested", by_restart=True)
                # A stop asked by another command while this one stopped the stack wins:
                # those services (and what needs them) stay stopped. They were started
                # again, after `hd stop` had said "stopped", exit 0 (y/4).
                held = self._held_by(meanwhile, "not started again", set(self.services))
                wanted = [n for n in self.services if n not in held]
                settled = await self._start(wanted) if wanted else {}
            rows = {**{n: self.services[n].snapshot() for n in held}, **settled}
            if self._stack_restarts != mine:
                # Another whole-stack restart began meanwhile (a double-clicked "restart
                # all"): its stop cut this one's start short, and this one answered every
                # service `stopped (restart requested, while this one waited)`, exit 1,
                # advising `hd start`, while that one brought them all up (adv34 w/1).
                rows = {n: await self._through_restart(self.services[n].snapshot())
                        for n in rows}  # each read once the one before has waited
            return rows
        finally:
            done.set_result(None)
            if self._restarting is done:
                self._restarting = None

    def _held_by(self, stopped: set[str], not_started: str, among: set[str]) -> set[str]:
        """Which of `among` stops asked meanwhile keep stopped: those services and what
        needs them. A dependant's row names that stop; it had named the restart itself
        (d/4)."""
        held = stopped & among
        for name in stopped:
            for dep in self.dependants_closure(name):
                if dep not in among:
                    continue
                if dep not in held and self.services[dep].state == State.STOPPED:
                    self.services[dep].reason = (f"{not_started}: '{name}', which it "
                                                 "needs, was stopped meanwhile")
                held.add(dep)
        return held

    async def _through_restart(self, snap: ServiceSnapshot) -> ServiceSnapshot:
        """`snap` once what overtook it is over: a whole-stack restart, or another
        caller's restart or start of this service (a cascade after a whole-stack
        restart: `hd restart -s slow` said "another command (a stop, `hd down`) changed
        the stack", exit 1, with slow running a moment later, y/3). A stop is not waited
        through: the service ends stopped, and the answer says so."""
        while not snap.ready and not self.final:
            if self._restarting is not None:
                await asyncio.shield(self._restarting)
            elif self.services[snap.name].coming_up:
                await self.wait_change()
            else:
                break
            snap = self.services[snap.name].snapshot()
        return snap

    async def start_and_wait(self, names: Iterable[str] | None = None) -> ServiceStartError | None:
        """Start, then wait until all settle or a blocking one fails (returned). Files
        are watched from the start: a save while a service boots restarts it after."""
        self.start_watchers()
        loop = asyncio.get_running_loop()
        self.blocking_failure = loop.create_future()
        waiter = asyncio.ensure_future(self.start(names))
        waits: set[asyncio.Future[Any]] = {waiter, self.blocking_failure}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        failure = self.blocking_failure.result() if self.blocking_failure.done() else None
        self.blocking_failure = None
        if failure is not None:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        return failure

    # ---- stop -------------------------------------------------------------------
    async def stop(self, names: Iterable[str] | None = None,
                   reason: str = "stop requested", final: bool = False,
                   by_restart: bool = False, sent: float | None = None) -> Settled:
        """Stop these (default all), each after its running dependants in the set
        stopped. From the first moment, none of them is restarted after an exit.
        `by_restart`: a whole-stack restart's own stop; any other is one that its start
        half must respect (restart_all). `sent`: when the request arrived (commands.py)."""
        chosen = list(names if names is not None else self.services)
        if sent is not None:
            for name in chosen:
                self._stop_sent[name] = max(sent, self._stop_sent.get(name, sent))
        if not by_restart:
            for meanwhile in self._stopped_meanwhile:
                meanwhile.update(chosen)
        for name in chosen:
            self.services[name].hold(final)
        stopped: dict[str, asyncio.Event] = {n: asyncio.Event() for n in chosen}
        settled: Settled = {}
        under_way = (frozenset(chosen), asyncio.get_running_loop().create_future())
        self._stops.append(under_way)

        async def stop_one(name: str) -> None:
            for dep in self.dependants(name):
                if dep in stopped:
                    await stopped[dep].wait()
            try:
                settled[name] = await self.services[name].request("stop", reason)
            finally:
                stopped[name].set()

        try:
            await asyncio.gather(*(stop_one(n) for n in chosen))
        finally:
            self._stops.remove(under_way)
            under_way[1].set_result(None)
        return settled

    async def shutdown(self, reason: str) -> None:
        """Stop everything for good: nothing starts or restarts after this began."""
        self.final = True
        await self.stop_watchers()
        await self.stop(reason=reason, final=True)
        for svc in self.services.values():
            await svc.close()

    async def kill_now(self) -> None:
        """Second Ctrl+C: SIGKILL every service's processes at once."""
        for svc in self.services.values():
            svc.hold(final=True)
        await asyncio.gather(*(svc.kill_now() for svc in self.services.values()))

    async def restart(self, name: str, skipped: dict[str, str] | None = None,
                      sent: float | None = None) -> ServiceSnapshot:
        """Restart one service; not when a dependency stopped on purpose would keep it
        from starting again (then why is in `skipped`): it was ended and left stopped,
        a service that was serving taken down by the command meant to refresh it."""
        with self._stops_meanwhile() as meanwhile:
            await self._after_stops([name])
        held = self._held_back(name, skipped, sent, name in meanwhile)
        if held is not None:
            return held
        return await self._through_restart(await self.get(name).request("restart"))

    def _held_back(self, name: str, skipped: dict[str, str] | None, sent: float | None,
                   stopped_meanwhile: bool = False) -> ServiceSnapshot | None:
        """`name` as it is, when a stop sent after this restart has stopped it (or, for
        a request not stamped, one asked while it waited for an earlier stop), or a
        dependency stopped on purpose (or failed) would keep it from starting again,
        with why in `skipped`; None when it may be restarted."""
        if self._stopped_after(sent, [name]) or stopped_meanwhile:
            when = "asked while this restart waited for an earlier one"
            if self._stopped_after(sent, [name]):
                assert sent is not None
                when = f"sent {(self._stop_sent[name] - sent) * 1000:.1f} ms after this restart"
            self._left_as_is(name, f"not restarted: a stop of it was {when}, and the later "
                             f"request wins (`hd start --service {name}` starts it)", skipped)
            return self.get(name).snapshot()
        blocker = self.blocked_by(name)
        if blocker is None:
            return None
        self._say_held(name, blocker, "", skipped)
        return self.get(name).snapshot()

    def _say_held(self, name: str, blocker: ServiceSupervisor, cause: str,
                  skipped: dict[str, str] | None) -> None:
        """Say, in `name`'s log and in `skipped` (the command's answer), that it was left
        running because `blocker` would keep it from starting again."""
        note = (f"not restarted{cause}: its dependency '{blocker.name}' is "
                f"{blocker.state.value}, so it could not start again (`hd start --service "
                f"{blocker.name}`, then `hd restart --service {name}`)")
        self._left_as_is(name, note, skipped)

    def _note_unreached(self, name: str, origin: str, through: list[str],
                        skipped: dict[str, str] | None) -> None:
        """Say that a cascade did not restart `name`: it depends on `origin` only
        through `through`, none of which the cascade restarted."""
        links = ", ".join(f"'{d}'" for d in through)
        note = (f"not restarted: the cascade from {origin} reaches it only through {links}, "
                "which it did not restart")
        self._left_as_is(name, note, skipped)

    def _left_as_is(self, name: str, note: str, skipped: dict[str, str] | None) -> None:
        """Say why a command left `name` as it is: in its log, where the user looks
        later, and in the command's answer, when it gathers them."""
        self.ctx.hub.system(name, note)
        if skipped is not None:
            skipped[name] = note

    def blocked_by(self, name: str) -> ServiceSupervisor | None:
        """A dependency of `name` that is stopped or failed with no start asked for (its
        condition unmet), so `name` could not start again if it stopped now."""
        svc = self.services[name]
        conditions = dict(svc.planned.spec.conditions)
        for dep in svc.deps:
            # (one whose restart is stopping it comes back: `hd restart -s leaf` while
            # top restarted was "not restarted: top is stopping", exit 1; adv32 t/2)
            if dep.state in (State.STOPPED, State.FAILED, State.STOPPING) and \
                    not dep.starting_soon and not dep.coming_up and \
                    not dep.meets(conditions.get(dep.name)):
                return dep
        return None

    def dependants_closure(self, name: str) -> list[str]:
        """Everything that depends on `name`, directly or not, in start order."""
        found: set[str] = set()
        todo = [name]
        while todo:
            for dep in self.dependants(todo.pop()):
                if dep not in found:
                    found.add(dep)
                    todo.append(dep)
        return [n for n in self.services if n in found]

    def _ready_again(self, name: str) -> None:
        """A `restart_cascades` service ready after the first time: what was made in it
        is gone (a crashed moto came back empty, `hd status` said healthy, and every
        table call failed for good), so its dependants restart, as with `--cascade`."""
        svc = self.services[name]
        if name not in self._been_ready:
            self._been_ready.add(name)
            return
        # Not during a whole-stack restart: it starts every dependant after this one
        # anyway, and a crash's cascade restarted them again once it had answered
        # with their pids (adv32 t/5).
        if svc.planned.spec.restart_cascades and not self.final and \
                name not in self._cascading and self._restarting is None:
            self.ctx.hub.system(name, f"{name} is ready again and keeps no state across "
                                      "restarts (restart_cascades): restarting what "
                                      "depends on it")
            task = asyncio.ensure_future(self._cascade_from(name, "restart_cascades"))
            self._cascades.add(task)  # held until done: a task nobody holds may vanish
            task.add_done_callback(self._cascades.discard)

    async def restart_cascade(self, name: str, skipped: dict[str, str] | None = None,
                              sent: float | None = None) -> Settled:
        """Restart `name`, then each service that depends on it (in dependency order),
        each once the one before is ready again; a job that completed runs again (a
        schema step after its database). A dependant stopped on purpose stays stopped,
        and so does what depends on `name` only through it (or through one held);
        a restart that fails ends the cascade there. A dependant that failed only because
        a dependency did is started again. Returns what it touched, each as its restart
        settled: read afterwards, a cascade that overlapped this one showed its own
        restarts in progress, and this one's caller was told "did not come up"."""
        with self._stops_meanwhile() as meanwhile:
            await self._after_stops([name])
        # (--cascade too took it down, adv25 d/10)
        held = self._held_back(name, skipped, sent, name in meanwhile)
        if held is not None:
            return {name: held}
        were_up = {d for d in self.dependants_closure(name)  # and completed jobs, run again
                   if self.services[d].state not in (State.STOPPED, State.FAILED)
                   or (self.services[d].planned.spec.kind == "job" and self.services[d].ready)}
        self._cascading[name] = self._cascading.get(name, 0) + 1
        restarts = self._stack_restarts
        with self._stops_meanwhile() as meanwhile:
            try:
                first = await self._through_restart(
                    await self.get(name).request("restart", "restart requested (cascade)"))
            finally:
                self._cascading[name] -= 1
                if not self._cascading[name]:
                    del self._cascading[name]
            settled = {name: first}
            if first.ready:
                settled.update(await self._cascade_from(name, "cascade", skipped, were_up,
                                                        restarts, meanwhile))
        if self._stack_restarts != restarts:
            # Rows read before the stack restart name processes it ended.
            settled = {n: await self._through_restart(self.services[n].snapshot())
                       for n in settled}
        if any(chosen & set(settled) for chosen, _ in self._stops):
            # Cut short by a stop still under way: answered once it is over, as a start
            # or restart is; it said `db: stopping` and "db did not come up" of one that
            # had come up and was being stopped (adv32 t/3).
            await self._after_stops(list(settled))
            settled = {n: self.services[n].snapshot() for n in settled}
        return settled

    async def _cascade_from(self, name: str, why: str, skipped: dict[str, str] | None = None,
                            were_up: set[str] | None = None,
                            restarts: int | None = None,
                            meanwhile: set[str] | None = None) -> Settled:
        """Restart what depends on `name`, in dependency order (restart_cascade says
        which, and why). A dependant with another dependency not ready is left as it
        is, with why in `skipped`. One of `were_up` (up as the cascade began) that
        another command stopped meanwhile is answered as it is: left out in silence,
        the cascade said ok, exit 0 (adv28 m/3). Once a whole-stack restart begun
        after `restarts` (the count when `name`'s restart was asked) has come, the
        rest are answered as they come out of it: it started each after `name`, as
        fresh as this would make them. Met half-way, a dependant it had stopped read
        `stopped — restart requested`, exit 1, and ended running (CI, under load).
        `meanwhile`: what other commands stopped since the cascade began; the later
        stop wins. Reached while such a stop was still under way (a dependant slow to
        stop), the cascade restarted it, and both commands said they had done their
        part, exit 0 (adv32 t/1); the cascade also went on above an origin stopped
        since, onto a stopped dependency."""
        settled: Settled = {}
        closure = self.dependants_closure(name)
        restarts = self._stack_restarts if restarts is None else restarts
        meanwhile = set() if meanwhile is None else meanwhile
        # What this cascade restarted (or found coming up afresh): it goes on only from
        # these. Held at mid (stopped on purpose), it left top running and then
        # restarted leaf, which depends on db only through top (adv32 t's notes).
        reached = {name}
        for at, dep in enumerate(closure):
            svc = self.services[dep]
            if name in meanwhile:
                for later in closure[at:]:
                    if skipped is not None and were_up is not None and later in were_up:
                        skipped[later] = (f"not restarted: the cascade from {name} ended "
                                          f"there ('{name}' was stopped meanwhile)")
                break
            if dep in meanwhile:
                await self._after_stops([dep])
                if were_up is None or dep in were_up:
                    settled[dep] = svc.snapshot()
                continue
            if self._stack_restarts != restarts:
                for rest in closure[at:]:
                    snap = await self._through_restart(self.services[rest].snapshot())
                    if (were_up is not None and rest in were_up) or snap.ready:
                        settled[rest] = snap
                break
            through = [d for d in svc.planned.depends_on if d in closure or d == name]
            if not any(d in reached for d in through):
                if were_up is not None and dep in were_up:
                    self._note_unreached(dep, name, through, skipped)
                continue
            completed_job = svc.planned.spec.kind == "job" and svc.ready
            if svc.state in (State.STOPPED, State.FAILED) and not svc.starting_soon \
                    and not completed_job and not svc.failed_for_dependency:
                if were_up is not None and dep in were_up:
                    settled[dep] = svc.snapshot()
                continue
            if self.final:
                break
            if why != "cascade" and not svc.ready:
                reached.add(dep)
                continue  # on its way up already (a whole-stack restart): it finds the new one
            blocked = await self._not_ready_after_starts(svc.planned.depends_on)
            if self.final:
                break
            if blocked:
                # Stopped, it could not start again: a running dependant was left stopped
                # by a cascade (a crash of moto, even) because another of its
                # dependencies had been stopped on purpose. It keeps running instead.
                self._say_held(dep, self.services[blocked[0]],
                               f" with the cascade from {name}", skipped)
                continue
            # Through a whole-stack restart that overtook it (its stop superseded this
            # request): the caller was told `mid: starting`, "another command changed
            # the stack", exit 1, and every service ended running.
            settled[dep] = await self._through_restart(await svc.request(
                "restart", f"restart requested ({why} from {name})"))
            reached.add(dep)
            if not settled[dep].ready:
                # What the cascade would have restarted after it is named: left out of the
                # answer, it read as not asked for (adv29 n/7).
                for later in closure[at + 1:]:
                    if skipped is not None and were_up is not None and later in were_up:
                        skipped[later] = (f"not restarted: the cascade from {name} ended at "
                                          f"'{dep}' ({settled[dep].state})")
                break
        return settled

    async def _not_ready_after_starts(self, names: Iterable[str]) -> list[str]:
        """Those of `names` not ready, once any of them on its way up has got there or
        failed: a dependency another terminal was restarting (`hd restart -s b` just as
        a crashed moto came back) had its dependant left out of the cascade, with advice
        to start a service already starting."""
        while True:
            blocked = [n for n in names if not self.services[n].ready]
            if self.final or not any(self.services[n].starting_soon for n in blocked):
                return blocked
            await self.wait_change()

    # ---- hot reload ---------------------------------------------------------------
    def start_watchers(self) -> None:
        """One file watcher for the whole stack, over every service that lists `watch`
        globs (relative to its cwd); Hippodrome's own .logs and .hippodrome never count.
        Does nothing when one runs already, or once the shutdown began."""
        if self._watcher is not None or self.final:
            return
        watched = [Watched(s.name, s.planned.cwd, s.planned.spec.watch)
                   for s in self.services.values()
                   if s.planned.spec.watch and not s.planned.spec.external]
        if not watched:
            return
        root = self.plan.options.project_root
        try:
            self._watcher = StackWatcher(watched, self._reload, self.ctx.hub.system,
                                         own=(root / ".logs", root / ".hippodrome"))
        except ImportError as exc:  # watchfiles present but broken: the daemon died
            for w in watched:  # with a traceback, exit 70 (adv25 d/9); the stack runs on
                self.ctx.hub.system(w.name, f"file watching is off: watchfiles cannot be "
                                            f"imported ({exc}); reinstall Hippodrome "
                                            "(`hd doctor` checks it)")
            return
        self._watcher.start()

    def _reload(self, name: str, paths: list[str], first: float) -> None:
        """A settled burst of `name`'s files changed: restart it (coalescing with a start
        or restart under way), and start again one that failed (a fix was saved). A
        service stopped on purpose stays stopped; after shutdown began nothing starts.

        Changes that began within OWN_WRITES_S of the service's exit (to backoff or
        failed) are its own dying writes (a crash report, an npm-debug.log in the
        watched folder) and restart nothing: on them, a crash loop restarted at once and
        counted afresh each time, never reaching `max_restarts`, and a failed one was
        started again for ever. Its backoff restart comes anyway."""
        svc = self.services[name]
        if self.final or svc.held or (svc.state == State.STOPPED and not svc.starting_soon):
            return
        shown = ", ".join(for_terminal(p) for p in paths[:3])
        if len(paths) > 3:
            shown += f" and {len(paths) - 3} more"
        if svc.state in (State.BACKOFF, State.FAILED) and \
                first < self._exited_at.get(name, -OWN_WRITES_S) + OWN_WRITES_S:
            self.ctx.hub.system(name, f"change detected ({shown}) as it exited: not acted on "
                                      "(save again, or `hd start`, to start it now)")
            return
        blocker = self.blocked_by(name)
        if blocker is not None:  # a save took a serving service down for good (adv24 a/4)
            self.ctx.hub.system(name, f"change detected ({shown}): not restarted, as its "
                                      f"dependency '{blocker.name}' is "
                                      f"{blocker.state.value} and it could not start again "
                                      f"(`hd start --service {blocker.name}`; the next "
                                      "change then restarts it)")
            return
        self.ctx.hub.system(name, f"change detected ({shown}): restarting")
        svc.request("restart", "file change")

    async def stop_watchers(self) -> None:
        """Final for this watcher and bounded: no change is acted on from now."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await watcher.stop()

    def snapshots(self) -> list[ServiceSnapshot]:
        return [s.snapshot() for s in self.services.values()]

    def status(self) -> list[dict[str, object]]:
        return [s.snapshot().as_status() for s in self.services.values()]
