"""The daemon's last sweep at `hd down` (daemon/strays.py): what still carries the run's
mark once every service stopped is ended, whatever it does meanwhile."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from harness import Harness, run
from stackutil import HD_CLI, free_ports, hd, registry, stack_header, write_stack

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


@pytest.mark.parametrize(("every", "during"), [("0.001", "running"), ("0", "a long stop")])
def test_a_chain_of_orphans_leaves_no_pile_of_zombies(project: Path, every: str,
                                                       during: str) -> None:
    """Process-group mode, where the daemon adopts orphans: a chain whose links fork a
    successor and exit every millisecond made the daemon's zombies faster than it
    collected them (each a housekeeping tick, 2 s, after it was first seen): thousands
    between two ticks, 30,000 during a long stop, the pid table full and every fork on
    the machine failing (adv61 F2); collected on the event loop instead, 29,000 while a
    stop of a chain with no pause held the loop (adv63). No zombie of the daemon's lasts
    1.5 s now, while the chain runs or while its stop waits out its stop_timeout."""
    stop = project / "stop"
    (project / "chain.py").write_text(
        "import os, signal, sys, time\n"
        f"end, stop, every = time.time() + 20, {str(stop)!r}, {every}\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\n"
        "if os.fork():\n"
        "    time.sleep(600)\n"
        "while time.time() < end and not os.path.exists(stop):\n"
        "    time.sleep(every)\n"
        "    if os.fork():\n"
        "        os._exit(0)\n"
        "    os.setsid()\n"
        "os._exit(0)\n")
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.chain]\ncommand = ["'
                + sys.executable + f'", "{project / "chain.py"}"]\n'
                'readiness = { log = "up" }\nstop_timeout = 6\n')
    env = {"HIPPODROME_CGROUP": "off"}
    hd(project, "up", "--detach", check=True, env=env)
    stopping = None
    try:
        daemon = psutil.Process(registry(project)["daemon"]["pid"])
        time.sleep(3 if during == "running" else 0.5)  # past the first look
        if during == "a long stop":
            stopping = subprocess.Popen([*HD_CLI, "stop", "--service", "chain"], env={
                **os.environ, **env}, cwd=project, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        seen: dict[int, tuple[float, float]] = {}
        ended = time.monotonic() + 4
        while time.monotonic() < ended:
            now = time.monotonic()
            for child in daemon.children():
                try:
                    if child.status() == psutil.STATUS_ZOMBIE:
                        first = seen.get(child.pid, (now, now))[0]
                        seen[child.pid] = (first, now)
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.1)
        assert len(seen) > 20, f"only {len(seen)} zombies seen: the chain did not run"
        longest = max(last - first for first, last in seen.values())
        assert longest < 1.5, f"a zombie of the daemon's lasted {longest:.1f}s ({len(seen)} seen)"
    finally:
        stop.touch()
        if stopping is not None:
            stopping.wait(60)
        hd(project, "down", env=env)


def test_a_chain_that_ignores_sigterm_and_left_its_group_is_ended_by_down(
        project: Path) -> None:
    """Process-group mode: a service that ignores SIGTERM (`trap '' TERM`, which its
    children inherit) starts a chain in a session of its own with a cleared environment:
    no mark, no group, and each link an orphan the daemon adopts. The sweep of adopted
    orphans sent each link SIGTERM, which it ignored, and found it gone once it had
    forked its successor and exited; the rounds ran out with the chain alive, and `hd
    down` said "stack stopped", exit 0 (adv66 F1). Once a round finds a successor, the
    sweep goes straight to SIGKILL."""
    beat, stop = project / "beat", project / "stop"
    (project / "chain.sh").write_text(f'[ -e {stop} ] && exit 0\necho $$ >> {beat}\n'
                                      f'sleep 0.05\nsh {project / "chain.sh"} &\nexit 0\n')
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.web]\ncommand = ["sh", "-c", '
                f'"trap \'\' TERM; sleep 600 & setsid env -i sh {project / "chain.sh"} & '
                'wait"]\nreadiness = "none"\nstop_timeout = 1\n')
    env = {"HIPPODROME_CGROUP": "off"}
    try:
        hd(project, "up", "--detach", check=True, env=env)
        deadline = time.monotonic() + 10
        while (not beat.exists() or len(beat.read_text().split()) < 5) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        down = hd(project, "down", timeout=60, env=env)
        assert down.returncode == 0, down
        written = beat.stat().st_size
        time.sleep(1.0)  # a link writes its pid every 50 ms while the chain lives
        assert beat.stat().st_size == written, beat.read_text().split()[-3:]
        assert not [p for p in map(int, beat.read_text().split()) if chain_link(p, project)]
    finally:
        stop.touch()  # a survivor ends itself at its next link
        registry(project)  # the stack's registry still readable: no stray state left


def chain_link(pid: int, project: Path) -> bool:
    """A live (not zombie) process running this project's chain.sh."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and str(project) in " ".join(proc.cmdline())
    except psutil.Error:
        return False
