"""The daemon's last sweep at `hd down` (daemon/strays.py): what still carries the run's
mark once every service stopped is ended, whatever it does meanwhile."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import Harness, run
from stackutil import stack_header

from hippo_tasks.daemon.strays import Strays
from hippo_tasks.supervision.scope import RUN_ENV

CHAIN = """
import os, sys, time
end, stop, every, beat = float(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
while time.time() < end and not os.path.exists(stop):
    with open(beat, "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    time.sleep(every)
    if os.fork():
        os._exit(0)
os._exit(0)
"""


@pytest.mark.parametrize("every", ["0.005", "0.0005"])
def test_a_marked_chain_left_after_every_stop_is_ended(project: Path, every: str) -> None:
    """A process with the run's mark that forks a successor and exits, every few ms, left
    once every service stopped (a stop that missed it): the sweep found a link in a
    reading the stops had taken (reused up to 1 s), ended it by pid, and the successor
    born meanwhile ran on. Each mark left is ended as a scope now, its links stopped
    (SIGSTOP) as they are read."""
    text = (stack_header(1) + '[services.web]\ncommand = ["sleep", "600"]\n'
            'readiness = "none"\n')
    beat, stop = project / "beat", project / "stop"

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        env = {**os.environ, RUN_ENV: f"{h.ownership.token}/gone"}
        subprocess.run([sys.executable, "-c", CHAIN, str(time.time() + 30), str(stop), every,
                        str(beat)], env=env, timeout=10, check=True)
        while not beat.exists() or len(beat.read_text().split()) < 20:
            await asyncio.sleep(0.01)
        notes: list[str] = []
        strays = Strays(h.stack, h.ownership, notes.append)
        try:
            await strays.end_marked_left()
        finally:
            strays.guard.close(True)
        written = beat.stat().st_size
        await asyncio.sleep(1.0)  # a link writes a line each few ms while the chain lives
        assert beat.stat().st_size == written, (notes, beat.read_text().split()[-3:])
        assert any("still carried this stack's mark" in n for n in notes), notes

    try:
        run(project, text, scenario)
    finally:
        stop.touch()  # a survivor ends itself within a few ms
