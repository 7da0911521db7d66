"""Waiting on one process run: until it is ready, then while it is alive and healthy.

Every wait here belongs to one run of one process: log readiness looks only at lines
that run printed (a restart is never "ready" on the previous run's line), and every
wait also ends the moment the process exits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

from hippo_tasks.model.plan import PlannedService
from hippo_tasks.model.regex_safety import safe_regex
from hippo_tasks.model.spec import StackSettings
from hippo_tasks.supervision import probes
from hippo_tasks.supervision.liveness import Liveness
from hippo_tasks.supervision.logs import LogHub
from hippo_tasks.supervision.process import Child
from hippo_tasks.supervision.scope import is_stopped
from hippo_tasks.terminal_text import as_seen

Outcome = Literal["ready", "exited", "timeout", "unhealthy"]

LAST_LOOK_S = 0.1
"""Past start_timeout, what had already happened is still taken in: a daemon itself
paused across the deadline (SIGSTOP, a debugger, heavy swap) failed a job that had
exited 0 and a service whose ready line had come in time, their news still waiting
behind the deadline's timer when the daemon woke."""
NONE_SETTLE_S = 0.5
"""How long a service with readiness `none` must run to be ready (supervisord's
`startsecs`, 1 s by default, is the same idea): an exit before is a failed start."""
GRID_S = 0.005
"""Readiness probes wake on a shared 5 ms grid, so the services starting together are
probed in one turn of the loop (one wake-up of the daemon), not one each."""


async def until_ready(child: Child, planned: PlannedService, hub: LogHub,
                      first_seq: int) -> Outcome:
    """`first_seq`: the first log sequence number this run's output can have."""
    spec = planned.spec
    readiness = spec.readiness
    if spec.kind == "job":  # held to start_timeout too: a hung job must not hold `up`
        await asyncio.wait({child.exited}, timeout=spec.start_timeout)
        if not child.exited.done():  # one more look, as for the probes below
            await asyncio.wait({child.exited}, timeout=LAST_LOOK_S)
        if not child.exited.done():
            return "timeout"
        return "ready" if child.exited.result() == 0 else "exited"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + spec.start_timeout
    if readiness.kind == "log":
        return await _until_log(child, planned.name, readiness.value, hub, first_seq,
                                deadline)
    if readiness.kind == "none":
        # Ready once it has run NONE_SETTLE_S: a typo'd script exits in milliseconds,
        # and "ready at once" made `up` say ready (exit 0), start its dependants, and
        # leave it in a backoff loop until it gave up. Whatever start_timeout says: a
        # 0.2 s one made an exit at 0.35 s a crash after ready, and the loop was back.
        await asyncio.wait({child.exited}, timeout=NONE_SETTLE_S)
        return "exited" if child.exited.done() else "ready"
    attempt = 0
    while True:
        if child.exited.done():
            return "exited"
        remaining = deadline - loop.time()
        if remaining <= 0:
            # One more look past the deadline: a daemon itself paused (SIGSTOP, a
            # debugger, heavy swap) across it failed a service listening all along.
            if await probes.probe(readiness, planned.port, 1.0):
                return "ready" if not child.exited.done() else "exited"
            return "timeout"
        if await probes.probe(readiness, planned.port, min(1.0, remaining)):
            return "ready" if not child.exited.done() else "exited"
        await _pause(child.exited, min(loop.time() + probes.probe_delay(attempt), deadline))
        attempt += 1


async def _pause(exited: asyncio.Future[int], until: float) -> None:
    """Until `until`, moved to the nearest grid instant (never the past), or until the
    process exits. A bare timer and future: wait_for(shield(...)) made a future, two
    callbacks and, at every timeout, a cancellation and an exception, in a loop that
    runs every 5-10 ms for each starting service."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    when = round(until / GRID_S) * GRID_S
    if when <= now:
        when = until
    if exited.done() or when <= now:
        return
    waker: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waker.done():
            waker.set_result(None)

    timer = loop.call_at(when, wake)
    exited.add_done_callback(wake)
    try:
        await waker
    finally:
        timer.cancel()
        exited.remove_done_callback(wake)


CARRY = 4096
"""Characters of a long line's piece kept to match across its cut."""
MATCH_SHARE = 0.25
"""Of each second, at most this much of the loop goes to matching one service's lines
against its log readiness pattern, with MATCH_BURST_S in hand. A pattern the loader
accepts may cost up to ~0.1 s a line (model/regex_safety.py), and a service printing long
lines without pause kept the loop matching for good: start_timeout never fired, other
services started late, and `hd down` hung (adv26 g/1)."""
MATCH_BURST_S = 0.5
AGAIN_S = 0.5
"""How often the latest line passed over is looked at again, while none newer comes."""


class MatchBudget:
    """Time for matching, earned at MATCH_SHARE of the clock: a line that comes while it
    is spent is passed over (counted), and the service's log says so once. Only the
    pattern's own time is charged: charged for the escape stripping (as_seen) too, a
    plain `READY now` over coloured output lost its ready line (adv27 i/5)."""

    def __init__(self, say: Callable[[str], None],
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.say = say
        self.clock = clock
        self.left = MATCH_BURST_S
        self.at = clock()
        self.skipped = 0
        self.last_passed: str | None = None
        """The latest line passed over: a service's ready line is often its last before
        a quiet spell, and it was never looked at again (adv27 i/5); `again` does."""

    def allows(self, text: str) -> bool:
        now = self.clock()
        self.left = min(MATCH_BURST_S, self.left + (now - self.at) * MATCH_SHARE)
        self.at = now
        if self.left > 0:
            return True
        self.last_passed = text
        self.skipped += 1
        if self.skipped == 1:
            self.say("readiness: matching the log pattern against this output costs "
                     f"more than {MATCH_SHARE:.0%} of the daemon's time, so lines are "
                     "passed over while it does and the ready line may be missed: "
                     "make the pattern simpler (fewer open-ended repeats such as \\w+ "
                     "or .*, or anchor it with ^)")
        return False

    def timed(self, search: Callable[[str], bool], text: str) -> bool:
        began = self.clock()
        found = search(text)
        self.at = self.clock()
        self.left -= self.at - began
        return found

    def again(self, matches: Callable[[str], bool]) -> bool:
        """The latest line passed over, once there is time for it."""
        text, self.last_passed = self.last_passed, None
        return text is not None and matches(text)


async def _until_log(child: Child, name: str, pattern: str, hub: LogHub, first_seq: int,
                     deadline: float) -> Outcome:
    loop = asyncio.get_running_loop()
    matched: asyncio.Future[None] = loop.create_future()
    regex = safe_regex(pattern)  # the loader refused any other (model/regex_safety.py)
    budget = MatchBudget(lambda text: hub.system(name, text))

    def matches(text: str) -> bool:
        if not budget.allows(text):
            return False
        if budget.timed(regex.search_text, text):
            return True
        seen = as_seen(text)
        return seen is not text and budget.timed(regex.search_text, seen)

    carry = ""
    """The end of a 64 KiB piece of a longer line (LogHub passes such a line on in
    pieces, and says which go on): a match across the cut was never seen (adv45 R/14).
    Not seen still: a match over `reach` characters long on either side of a cut, one
    across a cut the line's slow writing put elsewhere (the file, which keeps the line
    whole, has it), or across a cut in the lines printed before the watch began, the
    moment the process was spawned."""
    reach = min(CARRY, regex.span // 2)
    """Characters joined from each side of a cut: half of what the pattern looks at, so
    the cut sits in the middle of it. A pattern with an open-ended repeat looks at the
    first 4,096 characters of a text, and joined 4,096 and 4,096 it saw the carry only
    (adv47 G/3)."""

    def found_in(text: str, continued: bool = False) -> bool:
        nonlocal carry
        found = matches(text) or bool(carry) and matches(carry[-reach:] + text[:reach])
        carry = text[-CARRY:] if continued else ""
        return found

    # This run's lines already captured count too (a fast service may print before we
    # watch); lines of earlier runs never do.

    for rec in hub.since(name, first_seq - 1, 100000):
        if not rec.system and found_in(rec.text):
            matched.set_result(None)
            break

    def on_line(text: str, continued: bool) -> None:
        if not matched.done() and found_in(text, continued):
            matched.set_result(None)

    hub.watch(name, on_line)
    try:
        waits: set[asyncio.Future[Any]] = {matched, child.exited}
        done: set[asyncio.Future[Any]] = set()
        while not done and loop.time() < deadline:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED,
                                         timeout=min(AGAIN_S, max(0.0, deadline - loop.time())))
            if not done and budget.again(matches) and not matched.done():
                matched.set_result(None)
                done = {matched}
        if not done:  # one more look, as for the probes
            done, _ = await asyncio.wait(waits, timeout=LAST_LOOK_S,
                                         return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.watch(name, None)
    if matched in done:
        return "ready"
    return "exited" if child.exited.done() else "timeout"


async def while_running(child: Child, planned: PlannedService, settings: StackSettings,
                        set_health: Callable[[bool], None],
                        note: Callable[[str], None], liveness: Liveness) -> Outcome:
    """Until the process exits ("exited") or fails its liveness probe too often; probed
    with every other running service, once per tick (supervision/liveness.py)."""
    readiness = planned.spec.readiness
    if readiness.kind not in ("http", "tcp") or planned.port is None:
        await asyncio.shield(child.exited)
        return "exited"
    unhealthy: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    misses = 0
    restart = planned.spec.auto_restart

    def verdict(ok: bool) -> None:
        nonlocal misses
        if child.exited.done() or unhealthy.done():
            return  # the run is over: its exit, not a probe, says why
        if ok and readiness.kind == "tcp" and is_stopped(child.pid):
            # The kernel completes the handshake for a stopped process, so a tcp probe
            # never failed: SIGSTOPped, it stayed "healthy" through 100 probes (a/11).
            ok = False
        if ok and misses >= settings.liveness_failures:
            note("liveness probe passed again: healthy")
        misses = 0 if ok else misses + 1
        set_health(ok)
        if misses and misses <= settings.liveness_failures:
            note(f"liveness probe failed ({misses}/{settings.liveness_failures})")
        if misses < settings.liveness_failures:
            return
        if restart:
            unhealthy.set_result(None)
        elif misses == settings.liveness_failures:
            # Left running, as the README promises: a hung process is what one sets
            # auto_restart = false for, to attach a debugger. It was ended, `failed`.
            note("marked unhealthy and left running (auto_restart = false): `hd restart "
                 f"--service {planned.spec.name}` restarts it")

    leave = liveness.watch(settings.liveness_interval, readiness, planned.port, verdict)
    try:
        await asyncio.wait((unhealthy, child.exited), return_when=asyncio.FIRST_COMPLETED)
    finally:
        leave()
    return "exited" if child.exited.done() else "unhealthy"
