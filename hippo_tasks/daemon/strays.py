"""Processes no service's stop can end, and the orphan guard that ends them all if the
daemon dies: children that left their service (cgroup or process group, and its mark),
adopted by the daemon as subreaper, and what still carries the run's mark once every
service stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable

from hippo_tasks.supervision.orphans import GRACE, OrphanGuard
from hippo_tasks.supervision.ownership import Ownership, adopted, reap_adopted
from hippo_tasks.supervision.process import end_scope, given_up, kill_scope
from hippo_tasks.supervision.scope import (
    TUNNEL_MARK,
    Scope,
    is_stopped,
    pids_by_mark,
    read_marks_afresh,
    start_ticks,
)
from hippo_tasks.supervision.stack import StackSupervisor

ADOPTED_ROUNDS_S = 5.0
"""How long `hd down` goes on looking for orphans adopted while it ended others."""

REAP_AGAIN_S = 0.25
"""How soon adopted zombies left by a look are looked at (and collected) again."""
REAP_IDLE_S = 1.0
"""How often the reaper looks while no zombie is waiting."""


class Strays:
    def __init__(self, stack: StackSupervisor, ownership: Ownership,
                 note: Callable[[str], None]) -> None:
        self.stack = stack
        self.ownership = ownership
        self._note = note
        self.guard = OrphanGuard(ownership.token, ownership.base)
        self._zombies: set[int] = set()
        """Adopted children that were zombies at the reaper's last look."""
        self._told: set[tuple[int, int]] = set()
        """Adopted orphans (pid, start ticks) the current guard was told of."""
        self._reaper_done = threading.Event()

    def guard_again(self) -> bool:
        """An orphan guard that was killed is started again (True), or a later kill -9 of
        the daemon would leave every service running. Not once it is being closed."""
        if not self.guard.exited() or self.guard.closing:
            return False
        self._note(f"hippodrome | the orphan guard (pid {self.guard.pid}) is gone: "
                   "starting another")
        self.guard = OrphanGuard(self.ownership.token, self.ownership.base)
        self._told = set()
        return True

    def wake_guard(self) -> None:
        """A guard stopped (SIGSTOP, a debugger) is continued: stopped, it could not end
        anything after a kill -9 of the daemon, and nothing else would see it (its pidfd
        tells only an exit): every service ran on until the next `hd` command (adv62
        F2). Looked at with every housekeeping tick, so it stays stopped 2 s at most."""
        if self.guard.closing or not is_stopped(self.guard.pid):
            return
        self._note(f"hippodrome | the orphan guard (pid {self.guard.pid}) was stopped "
                   "(SIGSTOP or a debugger): continuing it")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.guard.pid, signal.SIGCONT)

    def watch_guard(self, loop: asyncio.AbstractEventLoop, started: Callable[[], None]
                    ) -> None:
        """The guard's end seen at once, through a pidfd on the loop, and another started
        (`started` then writes its pid down): housekeeping looks only every 2 s, and a
        kill -9 of the daemon within that time of the guard's left every service running
        with nobody to end it (adv54 F3). Without pidfds, housekeeping's look alone."""
        try:
            fd = os.pidfd_open(self.guard.pid)
        except (OSError, AttributeError):
            return

        def gone() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            if self.guard_again():
                started()
                self.watch_guard(loop, started)

        loop.add_reader(fd, gone)

    def _own_children(self) -> set[int]:
        own = {pid for svc in self.stack.services.values() for pid in svc.own_children}
        own.add(self.guard.pid)
        return own

    def start_reaper(self) -> None:
        """We are the subreaper (process-group mode), so exited orphans are ours to
        collect, once they have been zombies at one look already (reap_adopted): by a
        thread of their own, REAP_AGAIN_S after a look that left some. At the 2 s
        housekeeping tick, a chain of orphans forking every millisecond left thousands
        between two, and during a long stop 30,000 (adv61 F2); on the event loop every
        0.25 s, a stop reading /proc for seconds held the loop, and 29,000 piled up
        (adv63): the machine's pid table full, every fork on it failing."""
        threading.Thread(target=self._reap_until_closed, name="hippodrome-reaper",
                         daemon=True).start()

    def stop_reaper(self) -> None:
        self._reaper_done.set()

    def _reap_until_closed(self) -> None:
        while not self._reaper_done.wait(REAP_AGAIN_S if self._zombies else REAP_IDLE_S):
            try:
                self._zombies = reap_adopted(self._own_children(), self._zombies)
            except (RuntimeError, OSError):  # a set the loop changed meanwhile: next look
                continue

    def tell_adopted(self) -> None:
        """Name the live orphans we adopted to the guard, which ends them if the daemon
        dies (a new guard is told again): at each housekeeping tick and registry write,
        so at the latest 2 s after the adoption, or at the next change of state."""
        live = set()
        for pid in adopted(self._own_children()):
            ticks = start_ticks(pid)
            if ticks is not None:
                live.add((pid, ticks))
                if (pid, ticks) not in self._told:
                    self.guard.adopt(pid, ticks)
        self._told = live  # those that ended are not kept

    async def end_adopted(self) -> None:
        """After every service stopped: end the orphans we adopted, children that left
        their service's cgroup or group and its mark, and then lost their parent (their
        service is unknown, so no single stop could end them).

        Looked for again until none is left: one that forks a successor and exits (a
        chain, each link in a session of its own) had handed over to a new pid by the
        time the first look's were ended, and that one, adopted in turn, ran on after
        `hd down` (adv58 F1). Bounded: a chain cannot outrun SIGKILL for ever, but a
        look is never repeated past ADOPTED_ROUNDS_S after the first round's end."""
        why = "left their service (cgroup or process group, and environment mark)"
        deadline: float | None = None
        chain = False
        while pids := _not_given_up(adopted(self._own_children())):
            await self._end(pids, why, "adopted", kill=chain)
            # Counted from the end of the first round, which may wait out a grace and a
            # frozen orphan's whole SIGKILL bound: counted from its start, that used the
            # time up, and a chain adopted meanwhile was never looked for (adv67 F1).
            deadline = deadline or time.monotonic() + ADOPTED_ROUNDS_S
            if time.monotonic() >= deadline:
                return
            # A chain: SIGKILL from now on. Its links inherit an ignored SIGTERM (a
            # service that ran `trap '' TERM`), each looked gone once it had forked its
            # successor and exited, and the rounds ran out with the chain alive, `hd
            # down` saying "stack stopped", exit 0 (adv66 F1).
            chain = True
            why = ("were adopted while the ones before were ended (a chain that forks a "
                   "successor and exits): SIGKILL")

    async def end_marked_left(self) -> None:
        """After every service stopped: end what still carries this run's mark, each
        environment of a process born since the daemon read afresh once. A service's
        stop takes the marks of processes already read from a cache (scope._read), and
        one that took its mark back by an exec that changes nothing /proc/PID/stat shows
        (randomisation off, an environment of the same size) was read unmarked before
        (adv48 A/6). Read afresh at every reading of every stop instead, `hd down` of a
        100-link chain took 11-15 s (adv49 B/4).

        A fresh reading: one the stops had just taken (it was reused up to 1 s) read no
        environment afresh. Each mark is ended as a scope, so a link is stopped as it
        is read, by its mark (Scope.kill), and a chain that re-forks faster than a
        reading cannot hand on to a successor born after it (ended by pid alone, a
        link born since ran on)."""
        read_marks_afresh(start_ticks(os.getpid()) or 0)
        try:
            token = self.ownership.token
            # Not the --enable-events tunnel, which the engine stops in its turn.
            tunnel = f"{token}/{TUNNEL_MARK}"
            found = {mark: _not_given_up(pids) for mark, pids in pids_by_mark(token).items()
                     if mark != tunnel and not mark.startswith(f"{tunnel}/")}
            left = {mark: pids for mark, pids in found.items() if pids}
            await self._end(sorted(pid for pids in left.values() for pid in pids),
                            "still carried this stack's mark after every service stopped",
                            "marked", [Scope(mark, roots=pids) for mark, pids in left.items()])
        finally:
            read_marks_afresh(None)

    async def _end(self, pids: list[int], why: str, kind: str,
                   scopes: list[Scope] | None = None, kill: bool = False) -> None:
        """End `pids` and their descendants (no service's, so no stop could), each named
        in the daemon's output first; as `scopes` where given (all at once). `kill`:
        SIGKILL at once, no SIGTERM and grace first."""
        if not pids:
            return
        self._note(f"hippodrome | ending {len(pids)} process(es) that {why}: pid "
                   f"{', '.join(map(str, pids))}")

        def note(line: str) -> None:
            self._note(f"hippodrome | {kind} processes: {line}")

        await asyncio.gather(*(
            kill_scope(None, scope, note=note) if kill else end_scope(None, scope, GRACE, note)
            for scope in scopes or [Scope("", roots=pids)]))


def _not_given_up(pids: list[int]) -> list[int]:
    """`pids` but those a stop already gave up on (process.given_up)."""
    stuck = given_up(pids)
    return [pid for pid in pids if pid not in stuck]
