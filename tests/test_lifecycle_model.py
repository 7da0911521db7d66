"""The lifecycle's transition table under every mix of requests, with real processes.

Requests of every kind (start, stop, restart, a kill -9 from outside) land in random
order and at random moments, most of them while the previous one is still under way.
Whatever the order, no transition outside the table may happen (it would surface as an
"internal error" note, which marks the service FAILED), and once the dust settles the
state must agree with the process table.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path

import pytest
from harness import Harness, run
from stackutil import ESCAPER, PY, free_ports, stack_header, toy_service, wait_for

from hippo_tasks.supervision.scope import marked_pids, start_ticks
from hippo_tasks.supervision.states import ALLOWED, State


def test_the_table_has_no_dead_ends() -> None:
    """Every state but EXTERNAL can reach RUNNING and STOPPED again."""
    for start in State:
        if start == State.EXTERNAL:
            continue
        seen, todo = {start}, [start]
        while todo:
            for nxt in ALLOWED[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert {State.RUNNING, State.STOPPED} <= seen, start


def consistent(h: Harness, name: str) -> None:
    svc = h.stack.get(name)
    live = sorted(marked_pids(f"{h.ownership.token}/{name}"))
    snap = svc.snapshot()
    if svc.state == State.RUNNING:
        # The current run (its main process, and what it daemonized), nothing older.
        assert snap.pid in live, (live, snap)
        born = start_ticks(snap.pid)
        assert born is not None
        assert all((start_ticks(p) or 0) >= born for p in live), (live, snap)
    elif svc.state in (State.STOPPED, State.FAILED):
        assert live == [] and snap.pid is None, (live, snap)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_requests_never_break_the_lifecycle(project: Path, seed: int) -> None:
    a, b = free_ports(2)
    text = stack_header(1, backoff_initial=0.05, liveness_interval=0.2) + \
        f'[services.web]\ncommand = ["{PY}", "{ESCAPER}", "--port", "{a}", "--drain", ' \
        f'"0.05", "--double-fork"]\nport = {a}\nreadiness = {{ http = "/" }}\n' \
        f"stop_timeout = 2\nmax_restarts = 1000\n\n" + \
        toy_service("dep", b, depends_on=["web"], readiness={"tcp": True})
    rng = random.Random(seed)

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        web = h.stack.get("web")
        pending: list[asyncio.Future[None]] = []
        for _ in range(40):
            action = rng.choice(["start", "stop", "restart", "restart", "kill"])
            if action == "kill":
                if web.pid and web.snapshot().pid:
                    os.kill(web.pid, signal.SIGKILL)
            else:
                pending.append(web.request(action))  # type: ignore[arg-type]
            await asyncio.sleep(rng.choice([0, 0, 0.01, 0.05, 0.2]))
        await asyncio.wait_for(asyncio.gather(*pending), 60)
        await asyncio.wait_for(web.request("start"), 30)
        while web.state not in (State.RUNNING, State.FAILED):
            await asyncio.sleep(0.02)  # a kill just before the final start: one restart
        notes = [r.text for r in h.hub.tail("web", 100000) if r.system]
        assert not [n for n in notes if "internal error" in n or "illegal" in n], notes
        assert web.state == State.RUNNING, (web.state, web.reason)
        consistent(h, "web")
        await asyncio.wait_for(web.request("stop"), 30)
        consistent(h, "web")

    run(project, text, scenario, timeout=120)


def test_restarts_during_a_restart_make_at_most_one_more(project: Path) -> None:
    (a,) = free_ports(1)
    marker = project / "pids"
    text = f'[services.web]\ncommand = ["{PY}", "{ESCAPER}", "--port", "{a}", "--drain", ' \
        f'"0.2", "--pids", "{marker}"]\nport = {a}\nreadiness = {{ http = "/" }}\n'

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        web = h.stack.get("web")
        first = web.request("restart")
        await asyncio.sleep(0.05)  # the first restart is under way (draining)
        more = [web.request("restart") for _ in range(10)]
        await asyncio.wait_for(asyncio.gather(first, *more), 30)
        starts = [ln for ln in marker.read_text().splitlines() if ln.startswith("main")]
        assert len(starts) == 3, starts  # the first run, the restart, one more
        consistent(h, "web")

    run(project, text, scenario)


def test_a_stop_during_a_start_stops_what_was_spawned(project: Path) -> None:
    marker = project / "pids"
    text = f'[services.slow]\ncommand = ["{PY}", "{ESCAPER}", "--ready-after", "5", ' \
        f'"--setsid", "--pids", "{marker}"]\nreadiness = {{ log = "READY" }}\n'

    async def scenario(h: Harness) -> None:
        slow = h.stack.get("slow")
        started = slow.request("start")
        while not (marker.exists() and "setsid" in marker.read_text()):
            await asyncio.sleep(0.02)
        assert slow.state == State.STARTING
        await asyncio.wait_for(slow.request("stop"), 10)
        await asyncio.wait_for(started, 1)  # the start's waiter is released, too
        assert slow.state == State.STOPPED
        consistent(h, "slow")

    run(project, text, scenario)


def test_a_bug_in_a_run_fails_the_service_and_releases_its_waiters(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the readiness wait raises. The service is FAILED with the
    reason, whoever waited is released, and the process it had spawned is gone."""
    import hippo_tasks.supervision.run as run_module

    async def broken(*args: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(run_module, "until_ready", broken)
    marker = project / "pids"
    text = f'[services.web]\ncommand = ["{PY}", "{ESCAPER}", "--setsid", "--pids", ' \
        f'"{marker}"]\nreadiness = {{ log = "READY" }}\n'

    async def scenario(h: Harness) -> None:
        web = h.stack.get("web")
        await asyncio.wait_for(web.request("start"), 20)
        assert web.state == State.FAILED
        assert "internal error" in web.reason and "boom" in web.reason
        consistent(h, "web")
        await asyncio.wait_for(web.request("stop"), 10)  # the loop still answers

    run(project, text, scenario)


def test_a_bug_during_shutdown_still_ends_every_process(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If stopping the stack itself fails, the guard is not told "bye": it gets EOF and
    ends everything of the run, as after kill -9 of the daemon."""
    from hippo_tasks.daemon.engine import Engine
    from hippo_tasks.model.loader import load_stack_text
    from hippo_tasks.model.plan import Options, build_plan
    from hippo_tasks.registry.store import Registry
    from hippo_tasks.supervision.stack import StackSupervisor

    async def broken(self: StackSupervisor, reason: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(StackSupervisor, "shutdown", broken)
    marker = project / "pids"
    text = f'[services.web]\ncommand = ["{PY}", "{ESCAPER}", "--double-fork", "--pids", ' \
        f'"{marker}"]\nreadiness = {{ log = "READY" }}\n'
    plan = build_plan(load_stack_text(text), Options(project_root=project))
    engine = Engine(plan, Registry(project))

    async def main() -> None:
        running = asyncio.ensure_future(engine.run())
        while engine.stack.get("web").state != State.RUNNING:
            await asyncio.sleep(0.02)
        engine.request_shutdown("test")
        with pytest.raises(RuntimeError, match="boom"):
            await running

    asyncio.run(main())
    wait_for(lambda: not marked_pids(engine.ownership.token), 10, what="the guard's sweep")
