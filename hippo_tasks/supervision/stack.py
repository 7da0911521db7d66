"""The whole stack: start in dependency order, in parallel where independent; stop in
reverse order (dependants before what they depend on); notice a blocking failure.
What every request reads is stack_core.py; restarting what depends on a service,
cascade.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

from hippo_tasks.errors import ServiceStartError
from hippo_tasks.supervision.cascade import CascadingStack
from hippo_tasks.supervision.snapshot import ServiceSnapshot
from hippo_tasks.supervision.stack_core import Settled
from hippo_tasks.supervision.stack_watcher import StackWatcher
from hippo_tasks.supervision.states import State, Transition
from hippo_tasks.supervision.watch import Watched
from hippo_tasks.terminal_text import for_terminal

OWN_WRITES_S = 1.0
"""Changes that began this soon after a service exited restart nothing (_reload)."""

__all__ = ["OWN_WRITES_S", "Settled", "StackSupervisor"]


class StackSupervisor(CascadingStack):
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
        # A restart_cascades service this start brought back restarts what depends on
        # it: answered before that, `start` printed pids the cascade ended half a second
        # later (adv24 a/5). Its rows are read once the cascades that reach them are over.
        settled = await self._after_cascades(settled)
        # One that came up for this start, in a stop from elsewhere that is still under
        # way (it stops the dependants first): answered once that stop is over, as the
        # rest are. It was answered `stopping`, "did not come up" (adv44 L/1).
        stopping = [n for n in settled if self.services[n].state != State.STOPPED
                    and any(n in chosen for chosen, _ in self._stops)]
        if stopping:
            await self._after_stops(stopping)
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
        finally:
            done.set_result(None)
            if self._restarting is done:
                self._restarting = None
        # Over for the cascades that wait for it (above), then answered once they are.
        return await self._after_cascades(rows)

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
        snap = await self._through_restart(await self.get(name).request("restart"))
        return (await self._after_cascades({name: snap}))[name]

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
