"""Stopping: SIGKILL exactly at stop_timeout, grandchildren too, dependants first."""

from __future__ import annotations

import time
from pathlib import Path

from harness import Harness, run
from stackutil import PY, TOY, alive, free_ports, group_members, toy_service

from hippo_tasks.supervision.states import State


def test_sigterm_ignored_gets_sigkill_at_stop_timeout(project: Path) -> None:
    a, b = free_ports(2)
    text = (toy_service("stubborn", a, "--ignore-term", stop_timeout=1.0)
            + toy_service("polite", b))

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        stubborn, polite = h.stack.get("stubborn"), h.stack.get("polite")
        began = time.monotonic()
        polite_pid = polite.pid
        await h.stack.stop()
        took = time.monotonic() - began
        assert 1.0 <= took < 2.5, took
        assert stubborn.exit_code == -9 and polite.exit_code == -15
        assert polite_pid is not None and not alive(polite_pid)
        notes = [r.text for r in h.hub.tail("stubborn", 100) if r.system]
        assert any("sending SIGKILL" in n for n in notes)

    run(project, text, scenario)


def test_grandchildren_in_the_group_are_stopped(project: Path) -> None:
    (p,) = free_ports(1)
    text = ("[services.shell]\n"
            f'command = ["sh", "-c", "{PY} {TOY} --port {p} --child; echo done"]\n'
            f"port = {p}\n")

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        svc = h.stack.get("shell")
        assert svc.pgid is not None
        members = group_members(svc.pgid)
        assert len(members) >= 3  # sh, toy, toy's sleeping child
        await h.stack.stop()
        assert not any(alive(m) for m in members)
        assert svc.state == State.STOPPED

    run(project, text, scenario)


def test_dependants_stop_before_dependencies(project: Path) -> None:
    a, b = free_ports(2)
    text = toy_service("base", a) + toy_service("top", b, depends_on=["base"])

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        await h.stack.stop()
        stopped = [t.service for t in h.transitions if t.new == State.STOPPED]
        assert stopped.index("top") < stopped.index("base")

    run(project, text, scenario)
