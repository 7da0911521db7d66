"""Restarting what depends on a service: `hd restart --cascade`, and a
`restart_cascades` service (moto: it keeps nothing across restarts) ready again.

Each dependant is restarted once the one before is ready again, in dependency order;
the cascade goes on only from what it restarted, and names what it left as it is
and why (a dependant stopped on purpose, one whose other dependency is stopped, one a
later stop or a whole-stack restart overtook).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from hippo_tasks.supervision.stack_core import Settled, StackCore
from hippo_tasks.supervision.states import State


class CascadingStack(StackCore):
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
            self._cascades[task] = name  # held until done: a task nobody holds may vanish
            task.add_done_callback(lambda done: self._cascades.pop(done, None))

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
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        running = self._origin_cascades.setdefault(name, set())
        running.add(mine)
        try:
            settled = await self._cascade_whole(name, skipped, were_up)
        finally:
            mine.set_result(None)  # first: a cascade waiting for this one must not wait
            running.discard(mine)  # for one waiting for it
            if not running:
                del self._origin_cascades[name]
        overlapping = [f for f in running if not f.done()]
        if overlapping:
            # Two `restart -s X` at once of a restart_cascades X: this one named the X
            # and dependants the other had replaced seconds before (adv44 L/3). Each
            # answers once both are over, with what runs.
            await asyncio.wait(overlapping)
        # Each row as it is now, through a restart of it another caller asked meanwhile
        # (one of the origin, after the cascade had gone past it: adv48 A/4).
        return {n: await self._through_restart(self.services[n].snapshot()) for n in settled}

    async def _cascade_whole(self, name: str, skipped: dict[str, str] | None,
                             were_up: set[str]) -> Settled:
        """restart_cascade's body, once it is sure to restart `name`."""
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
            else:
                # Ended at its first service: what it would have restarted is named, as
                # where it ends further on; it was left out of the answer (adv38 m/2).
                _ended_at(name, name, first.state, self.dependants_closure(name), were_up,
                          skipped)
        if self._stack_restarts != restarts:
            # Rows read before the stack restart name processes it ended.
            settled = {n: await self._through_restart(self.services[n].snapshot())
                       for n in settled}
        if any(chosen & set(settled) for chosen, _ in self._stops):
            # Cut short by a stop still under way: answered once it is over, as a start
            # or restart is; it said `db: stopping` and "db did not come up" of one that
            # had come up and was being stopped (adv32 t/3).
            await self._after_stops(list(settled))
            # Each through what overtook it: read as it was, the origin of a
            # double-clicked cascade, in the second click's restart, said "did not come
            # up: another command changed the stack" (adv38 m/1).
            settled = {n: await self._through_restart(self.services[n].snapshot())
                       for n in settled}
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
                _ended_at(name, dep, settled[dep].state, closure[at + 1:], were_up, skipped)
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

    def _note_unreached(self, name: str, origin: str, through: list[str],
                        skipped: dict[str, str] | None) -> None:
        """Say that a cascade did not restart `name`: it depends on `origin` only
        through `through`, none of which the cascade restarted."""
        links = ", ".join(f"'{d}'" for d in through)
        note = (f"not restarted: the cascade from {origin} reaches it only through {links}, "
                "which it did not restart")
        self._left_as_is(name, note, skipped)


def _ended_at(origin: str, at: str, state: str, rest: Iterable[str],
              were_up: set[str] | None, skipped: dict[str, str] | None) -> None:
    """Name, in `skipped`, each of `rest` that was up as the cascade from `origin` began
    and that it did not reach, having ended at `at` (left `state`)."""
    if skipped is None or were_up is None:
        return
    for later in rest:
        if later in were_up:
            skipped[later] = (f"not restarted: the cascade from {origin} ended at '{at}' "
                              f"({state})")
