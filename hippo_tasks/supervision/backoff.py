"""Restart policy and the clock it runs on.

The policy is pure arithmetic so it can be tested exactly; the clock is passed in so a
test of a crash-looping service need not sit through real backoff time.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple, Protocol

STABLE_AFTER = 10.0
"""A run that lasted this long was not part of a crash loop: the failure count resets."""


class Backoff(NamedTuple):
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before restart number `failures` (1-based)."""
        if failures <= 0:
            return 0.0
        return min(self.maximum, self.initial * self.factor ** (failures - 1))


def next_failures(failures: int, run_seconds: float) -> int:
    return 1 if run_seconds >= STABLE_AFTER else failures + 1


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """Real time on the running event loop."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """Time that moves only when someone sleeps; records every sleep asked for."""

    def __init__(self) -> None:
        self.time = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds
        await asyncio.sleep(0)
