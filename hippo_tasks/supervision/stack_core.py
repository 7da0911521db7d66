"""What the whole stack knows and every stack-wide request reads: its services and their
dependency order, the stops under way and when each was sent, and who yields to whom.

A start, restart, cascade or whole-stack restart (stack.py, cascade.py) asks these
before it acts: which services a later stop has already stopped, which dependency would
keep a service from starting again, and, once it has settled, whether something that
overtook it (a whole-stack restart, another caller's start) is still to be waited
through. They live here, once, so each request decides the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from hippo_tasks.errors import ServiceStartError, UnknownServiceError
from hippo_tasks.model.plan import StackPlan
from hippo_tasks.supervision.run import SupervisorContext
from hippo_tasks.supervision.service import Op, ServiceSupervisor
from hippo_tasks.supervision.snapshot import ServiceSnapshot
from hippo_tasks.supervision.states import State

if TYPE_CHECKING:
    from hippo_tasks.supervision.stack_watcher import StackWatcher

Settled = dict[str, ServiceSnapshot]
"""Each service a request named, as it was when that request settled."""


class StackCore:
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
        self._cascades: dict[asyncio.Future[Settled], str] = {}
        """The cascades a restart_cascades service's readiness began, each to its origin."""
        self._cascading: dict[str, int] = {}
        """Services whose explicit cascades run now (how many): their being ready again
        starts no other."""
        self._origin_cascades: dict[str, set[asyncio.Future[None]]] = {}
        """Per origin, the explicit cascades from it under way, each resolved at its end:
        one answers once those overlapping it are over (restart_cascade)."""
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

    @property
    def restarting_all(self) -> bool:
        """A whole-stack restart is under way (its services stop, then start)."""
        return self._restarting is not None

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

    async def wait_change(self) -> None:
        if self._change is None or self._change.done():
            self._change = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._change)

    def _poke(self) -> None:
        if self._change is not None and not self._change.done():
            self._change.set_result(None)
        self._change = None

    def log_path(self, name: str) -> str | None:
        return self._log_path(name) if self._log_path else None

    def failure_for(self, svc: ServiceSupervisor) -> ServiceStartError:
        lines = self.ctx.hub.own_lines(svc.name, 20)
        return ServiceStartError(svc.name, svc.reason, tuple(lines), self.log_path(svc.name),
                                 self._log_note(svc.name) if self._log_note else None)

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
        through: the service ends stopped, and the answer says so.

        Waited through even when `snap` is ready: a `restart -s mid` ready just before a
        whole-stack restart's stop reached mid was answered with mid `stopping`, "another
        command (a stop, `hd down`) changed the stack", exit 1 (adv48 A/3), and a
        cascade from mid named the mid a `restart -s mid` sent meanwhile was replacing
        (A/4). Read again at the end in any case: what overtook it may be over by the
        time this looks (a start cut short by a whole-stack restart, read after another
        row had waited that restart out, was answered `stopped`)."""
        while not self.final:
            if self._restarting is not None:
                await asyncio.shield(self._restarting)
            elif self.services[snap.name].coming_up:
                await self.wait_change()
            else:
                break
        return self.services[snap.name].snapshot()

    async def _after_cascades(self, rows: Settled) -> Settled:
        """`rows` once every cascade under way that may still restart one of them (from
        an origin they are or depend on) is over, and any begun meanwhile, each read
        again then. A whole-stack restart answered a db and a mid that a second cascade
        from db, asked meanwhile, replaced a second later, and `restart -s mid` a mid
        that cascade was about to restart (adv47 G/5), or that one begun while it waited
        for another was (adv48 A/8); not one from elsewhere, which made `hd restart -s`
        of an unrelated service wait 7 s for a crashed store's dependants (A/7)."""
        names = set(rows)
        waited = False
        while overlapping := self._cascades_reaching(names):
            await asyncio.wait(overlapping)
            waited = True
        if not waited:
            return rows
        return {n: await self._through_restart(self.services[n].snapshot()) for n in rows}

    def _cascades_reaching(self, names: set[str]) -> list[asyncio.Future[Any]]:
        """The cascades under way, crash or asked for, whose origin is one of `names` or
        something one of them depends on."""
        reaches = {origin for origin in {*self._cascades.values(), *self._origin_cascades}
                   if names & {origin, *self.dependants_closure(origin)}}
        found: list[asyncio.Future[Any]] = [
            task for task, origin in self._cascades.items()
            if origin in reaches and not task.done()]
        for origin, running in self._origin_cascades.items():
            if origin in reaches:
                found += [f for f in running if not f.done()]
        return found

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

    def snapshots(self) -> list[ServiceSnapshot]:
        return [s.snapshot() for s in self.services.values()]

    def status(self) -> list[dict[str, object]]:
        """Each service's row; `change_pending`: a watched file changed and its restart
        is still to come (the watcher's quiet period)."""
        changed = self._watcher.changed if self._watcher is not None else frozenset()
        return [{**s.snapshot().as_status(), "change_pending": name in changed}
                for name, s in self.services.items()]
