"""The shared liveness tick (supervision/ticker.py): one timer for every waiter."""

from __future__ import annotations

import asyncio

from hippo_tasks.supervision.ticker import Ticker


def test_waiters_share_one_tick_and_a_cancelled_waiter_does_not_end_it() -> None:
    async def scenario() -> None:
        ticker = Ticker()
        first = ticker.next(0.05)
        assert ticker.next(0.05) is first  # the same timer for every service
        assert ticker.next(0.2) is not first  # another interval, another timer
        waiter = asyncio.ensure_future(asyncio.wait((first,)))
        await asyncio.sleep(0)
        waiter.cancel()  # a service stopped while waiting: the tick goes on for others
        await first
        assert first.done() and not first.cancelled()
        assert ticker.next(0.05) is not first  # the next tick is a new one

    asyncio.run(scenario())
