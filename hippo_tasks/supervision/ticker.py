"""One timer for every running service's liveness probe.

Forty services each waiting out their own `liveness_interval` woke the daemon forty
separate times per interval, and each wake-up cost about as much as the probe itself
(measured: 0.5 % of a core idle at 40 services, nearly all of it probing). Waiting on
one shared tick instead, every service probes in the same turn of the loop: one
wake-up per interval for the timers, and the probes' own socket events arrive together.
A service's first probe comes at the next tick, within one interval of becoming ready.
"""

from __future__ import annotations

import asyncio


class Ticker:
    def __init__(self) -> None:
        self._next: dict[float, asyncio.Future[None]] = {}

    def next(self, interval: float) -> asyncio.Future[None]:
        """Resolves at the next tick of this interval (shared: never cancel it)."""
        fut = self._next.get(interval)
        if fut is None or fut.done():
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            loop.call_later(interval, _resolve, fut)
            self._next[interval] = fut
        return fut


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
