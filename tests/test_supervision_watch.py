"""Hot reload: a change to a watched file restarts the service once per burst."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from harness import Harness, run
from stackutil import free_ports, toy_service

from hippo_tasks.supervision.states import State
from hippo_tasks.supervision.watch import changed, scan


def test_scan_and_changed(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("1")
    (tmp_path / "notes.txt").write_text("x")
    before = scan(tmp_path, ["src/**/*.py"])
    assert list(before) == ["src/a.py"]
    (tmp_path / "src" / "b.py").write_text("2")
    assert changed(before, scan(tmp_path, ["src/**/*.py"])) == ["src/b.py"]


def test_burst_of_changes_restarts_once(project: Path) -> None:
    (p,) = free_ports(1)
    code = project / "svc" / "app.py"
    code.parent.mkdir()
    code.write_text("v = 0\n")
    text = toy_service("web", p, cwd="svc", watch=["*.py"])

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        h.stack.start_watchers()
        svc = h.stack.get("web")
        first = svc.pid
        await asyncio.sleep(0.6)
        for i in range(5):  # an editor saving several times in quick succession
            code.write_text(f"v = {i + 1}\n")
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 10
        while svc.pid == first and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        while svc.state != State.RUNNING:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # no second restart for the same burst
        notes = [r.text for r in h.hub.tail("web", 200) if "change detected" in r.text]
        assert len(notes) == 1 and "app.py" in notes[0]
        assert svc.pid != first
        # A stopped service stays stopped when its files change.
        await h.stack.stop(["web"])
        code.write_text("v = 99\n")
        await asyncio.sleep(1.5)
        assert svc.state == State.STOPPED
        await h.stack.stop_watchers()

    run(project, text, scenario)
