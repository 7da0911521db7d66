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
from stackutil import free_ports, stack_header, toy_service

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
