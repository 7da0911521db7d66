"""Restarts that overlap a cascade: a whole-stack restart, a second cascade from the
same service and a restart of a dependant, each sent while the others run (adv47 G/5).

Two promises are held exactly, in-process: a service is spawned only while every
dependency is ready (checked at each move to `starting`), and each request answers
with processes that run when it answers (each pid checked the moment it returns).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from harness import Harness, run
from stackutil import escaper_service, free_ports, stack_header, toy_service

from hippo_tasks.supervision.stack import Settled
from hippo_tasks.supervision.states import State, Transition


def chain(project: Path, delay: float) -> str:
    """db (restart_cascades) <- mid <- top, each ready `delay` s after it is spawned."""
    dash, db, mid, top = free_ports(4)
    slow = ("--delay", str(delay))
    return (stack_header(dash)
            + toy_service("db", db, *slow, readiness={"tcp": True}, restart_cascades=True)
            + toy_service("mid", mid, *slow, readiness={"tcp": True}, depends_on=["db"])
            + toy_service("top", top, *slow, readiness={"tcp": True}, depends_on=["mid"]))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(("delay", "offsets"), [(1.0, (0.5, 1.2, 1.6)),
                                               (0.6, (0.25, 0.5, 0.75))])
def test_overlapping_restarts_keep_dependency_order_and_answer_what_runs(
        project: Path, delay: float, offsets: tuple[float, float, float]) -> None:
    """`restart -s db` (a cascade), then `hd restart`, `restart -s db` and `restart -s
    mid` at `offsets`: mid was spawned while db stopped under it, top while mid did, and
    the whole-stack restart answered a mid that had ended a second before."""
    text = chain(project, delay)

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        broken: list[str] = []

        def check(t: Transition) -> None:
            if t.new != State.STARTING:
                return
            for dep in h.stack.services[t.service].deps:
                # its take-down posted, or begun (its run is cancelled first)
                posted = dep._pending in ("stop", "restart") or (
                    dep._current in ("stop", "restart") and (dep._run is None
                                                             or dep._run.done()))
                if not dep.ready or posted:
                    broken.append(f"{t.service} spawned while {dep.name} was "
                                  f"{dep.state.value}" + (", about to stop" if posted else ""))

        seen = h._on

        def on(t: Transition) -> None:
            seen(t)
            check(t)

        h.stack.ctx.on_transition = on
        stale: list[str] = []

        async def answered(what: str, work: asyncio.Future[Settled]) -> None:
            rows = await work
            for name, snap in rows.items():
                if snap.pid is None or not alive(snap.pid):
                    stale.append(f"{what} answered {name}: {snap.state} pid {snap.pid}, "
                                 "which no longer runs")
                elif snap.pid != h.stack.services[name].pid:
                    stale.append(f"{what} answered {name} pid {snap.pid}; "
                                 f"{h.stack.services[name].pid} runs")

        async def one(name: str) -> Settled:
            return {name: await h.stack.restart(name)}

        asks = [("cascade 1", lambda: h.stack.restart_cascade("db")),
                ("stack restart", h.stack.restart_all),
                ("cascade 2", lambda: h.stack.restart_cascade("db")),
                ("restart mid", lambda: one("mid"))]
        tasks = []
        loop = asyncio.get_running_loop()
        began = loop.time()
        for (what, ask), at in zip(asks, (0.0, *offsets), strict=True):
            await asyncio.sleep(max(0.0, began + at - loop.time()))
            tasks.append(asyncio.ensure_future(answered(what, asyncio.ensure_future(ask()))))
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        assert not broken, broken
        assert not stale, stale
        for name in ("db", "mid", "top"):
            assert h.stack.services[name].state == State.RUNNING, h.states(name)

    run(project, text, scenario, timeout=90)


def test_a_restart_out_of_a_cascades_reach_does_not_wait_for_it(project: Path) -> None:
    """A crashed restart_cascades store came back and restarted its slow dependant; `hd
    restart -s u` of a service neither is nor depends on waited for that cascade (7.6 s
    for a 0.4 s restart; adv48 A/7). It answers once u is ready, the cascade still on."""
    dash, store, slow, u = free_ports(4)
    text = (stack_header(dash)
            + toy_service("store", store, readiness={"tcp": True}, restart_cascades=True)
            + toy_service("slow", slow, "--delay", "4", readiness={"tcp": True},
                          depends_on=["store"], start_timeout=30)
            + toy_service("u", u, readiness={"tcp": True}))

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        store_svc, slow_svc = h.stack.services["store"], h.stack.services["slow"]
        old_slow = slow_svc.pid
        assert store_svc.pid is not None
        os.kill(store_svc.pid, 9)
        while not h.stack._cascades:  # store back and ready: its cascade has begun
            await asyncio.sleep(0.02)
        snap = await asyncio.wait_for(h.stack.restart("u"), 20)
        assert snap.ready and alive(snap.pid or 0)
        assert h.stack._cascades, "the cascade was over before `restart -s u` answered"
        assert not (slow_svc.ready and slow_svc.pid != old_slow), h.states("slow")
        await asyncio.wait_for(asyncio.gather(*h.stack._cascades), 30)

    run(project, text, scenario, timeout=90)


def test_a_restart_ready_before_a_stack_restart_stops_it_answers_after_that(
        project: Path) -> None:
    """`hd restart -s mid`, then `hd restart` while top (slow to stop) held its stop
    half: mid's restart was ready, and then the stack's restart stopped mid; the answer
    read mid `stopping`, "another command (a stop, `hd down`) changed the stack", exit
    1, and mid ran a second later (adv48 A/3). It answers once the stack's restart is
    over, with the mid that runs."""
    dash, mid, top = free_ports(3)
    text = (stack_header(dash)
            + toy_service("mid", mid, "--delay", "0.2", readiness={"tcp": True})
            + escaper_service("top", top, "--drain", "1.5", readiness={"tcp": True},
                              depends_on=["mid"], stop_timeout=10))

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        mine = asyncio.ensure_future(h.stack.restart("mid"))
        await asyncio.sleep(0.05)
        whole = asyncio.ensure_future(h.stack.restart_all())
        snap = await asyncio.wait_for(mine, 30)
        assert whole.done(), "answered before the stack's restart was over"
        await whole
        assert snap.ready and snap.pid == h.stack.services["mid"].pid, (snap, h.states("mid"))

    run(project, text, scenario, timeout=90)


def test_a_cascade_answers_the_origin_a_later_restart_of_it_made(project: Path) -> None:
    """`hd restart -s mid --cascade`, and `hd restart -s mid` once the cascade had gone
    on to top: the cascade answered the mid that restart was ending (adv48 A/4)."""
    dash, mid, top = free_ports(3)
    text = (stack_header(dash)
            + toy_service("mid", mid, "--delay", "0.2", readiness={"tcp": True})
            + toy_service("top", top, "--delay", "1.0", readiness={"tcp": True},
                          depends_on=["mid"]))

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        top_svc = h.stack.services["top"]
        old_top = top_svc.pid
        cascade = asyncio.ensure_future(h.stack.restart_cascade("mid"))
        while top_svc.pid in (None, old_top) or top_svc.ready:  # the cascade is at top
            await asyncio.sleep(0.02)
        again = asyncio.ensure_future(h.stack.restart("mid"))
        rows = await asyncio.wait_for(cascade, 30)
        await asyncio.wait_for(again, 30)
        assert rows["mid"].pid == h.stack.services["mid"].pid, (rows["mid"], h.states("mid"))
        assert alive(rows["mid"].pid or 0)

    run(project, text, scenario, timeout=90)


def test_a_restart_waits_for_a_cascade_begun_while_it_waited_for_another(
        project: Path) -> None:
    """`hd restart -s mid` waited for the cascade from db under way when it began, not
    for a second one from db asked while it waited, and answered the mid that second
    cascade then replaced (adv48 A/8)."""
    dash, db, mid, top = free_ports(4)
    text = (stack_header(dash)
            + toy_service("db", db, "--delay", "1.5", readiness={"tcp": True},
                          restart_cascades=True)
            + toy_service("mid", mid, "--delay", "0.3", readiness={"tcp": True},
                          depends_on=["db"])
            + toy_service("top", top, "--delay", "0.6", readiness={"tcp": True},
                          depends_on=["mid"]))

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        mid_svc = h.stack.services["mid"]
        old_mid = mid_svc.pid
        first = asyncio.ensure_future(h.stack.restart_cascade("db"))
        await asyncio.sleep(0.1)
        mine = asyncio.ensure_future(h.stack.restart("mid"))
        while mid_svc.pid in (None, old_mid) or not mid_svc.ready or mid_svc.coming_up:
            await asyncio.sleep(0.02)  # mid restarted: `mine` waits for the cascade
        assert not mine.done(), "answered before the first cascade was over"
        second = asyncio.ensure_future(h.stack.restart_cascade("db"))
        snap = await asyncio.wait_for(mine, 30)
        await asyncio.wait_for(asyncio.gather(first, second), 30)
        assert snap.pid == h.stack.services["mid"].pid, (snap, h.states("mid"))

    run(project, text, scenario, timeout=90)
