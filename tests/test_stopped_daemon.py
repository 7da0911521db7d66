"""A daemon stopped (SIGSTOP, Ctrl+Z, a debugger), or a whole stack stopped: `up
--detach` waited in silence for ever (and a SIGTERM to it, a CI job's timeout, did not
end it either); `hd events.send` waited too, where every other command gives up after
10 s, and `hd logs --timestamps -s X` five minutes; `down --force` left the stopped
guard behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from stackutil import HD_CLI, alive, free_ports, registry, stack_header, wait_for, write_stack

SLOW = ('[services.slow]\ncommand = ["sh", "-c", "sleep 3; echo ready now; exec sleep 600"]\n'
        'readiness = { log = "ready now" }\n')


def start_up(project: Path) -> tuple[subprocess.Popen[str], int]:
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + SLOW)
    up = subprocess.Popen([*HD_CLI, "up", "--detach"], cwd=project, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env={**os.environ, "NO_COLOR": "1"})

    def daemon_pid() -> int | None:
        try:
            pid = (registry(project).get("daemon") or {}).get("pid")
        except (OSError, ValueError):
            return None
        return pid if isinstance(pid, int) else None

    pid = wait_for(daemon_pid, timeout=20, what="the daemon in the registry")
    return up, pid


def test_up_stops_waiting_for_a_stopped_daemon_and_says_so(project: Path) -> None:
    up, pid = start_up(project)
    try:
        os.kill(pid, signal.SIGSTOP)
        out, _ = up.communicate(timeout=40)
        assert up.returncode == 6, out
        assert f"(pid {pid})" in out and "stopped (SIGSTOP, Ctrl+Z or a debugger)" in out, out
        assert f"kill -CONT {pid}" in out, out
    finally:
        if up.poll() is None:
            up.kill()
        if alive(pid):
            os.kill(pid, signal.SIGCONT)


def test_sigterm_ends_up_and_its_stack_though_the_daemon_is_stopped(project: Path) -> None:
    up, pid = start_up(project)
    try:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(1.0)
        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=40)
        assert up.returncode == 143, out
        assert "the stack was shut down" in out, out
        assert not alive(pid)
    finally:
        if up.poll() is None:
            up.kill()
        if alive(pid):
            os.kill(pid, signal.SIGCONT)


def test_down_force_of_a_stack_stopped_whole_leaves_no_guard_behind(project: Path) -> None:
    """A freezer or `kill -STOP` of every process of the run: `down --force` killed the
    daemon and ended the services, and the guard stayed stopped for ever."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash)
                + '[services.a]\ncommand = ["sleep", "3600"]\n'
                + '[services.b]\ncommand = ["sleep", "3600"]\n')
    up = subprocess.run([*HD_CLI, "up", "--detach"], cwd=project, capture_output=True,
                        text=True, timeout=60)
    assert up.returncode == 0, up.stdout + up.stderr
    data = registry(project)
    daemon, guard = data["daemon"]["pid"], data["daemon"]["guard_pid"]
    services = [s["pid"] for s in data["services"].values()]
    stopped = [daemon, guard, *services]
    try:
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        down = subprocess.run([*HD_CLI, "down", "--force"], cwd=project, capture_output=True,
                              text=True, timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        wait_for(lambda: not any(alive(p) for p in stopped), timeout=15,
                 what="the daemon, the guard and the services gone")
    finally:
        for pid in stopped:
            if alive(pid):
                os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("argv", [["events.send", "--detail-type", "X.Y"],
                                  ["logs", "--timestamps", "-s", "slow"], ["status"]])
def test_commands_asking_a_stopped_daemon_give_up_as_status_does(
        project: Path, argv: list[str]) -> None:
    up, pid = start_up(project)
    try:
        out, _ = up.communicate(timeout=40)
        assert up.returncode == 0, out
        os.kill(pid, signal.SIGSTOP)
        sent = subprocess.run([*HD_CLI, *argv], cwd=project,
                              capture_output=True, text=True, timeout=40)
        assert sent.returncode == 6, sent.stdout + sent.stderr
        assert f"(pid {pid}) does not answer" in sent.stderr, sent.stderr
        # said as stopped, with the way on, not "timed out" (r/9); doctor no longer OK
        assert f"it is stopped (SIGSTOP, Ctrl+Z or a debugger): `kill -CONT {pid}`" in \
            " ".join(sent.stderr.split()), sent.stderr
        doctor = subprocess.run([*HD_CLI, "doctor"], cwd=project, capture_output=True,
                                text=True, timeout=60)
        assert doctor.returncode == 1 and f"daemon pid {pid} is stopped" in doctor.stdout, \
            doctor.stdout
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGCONT)
        subprocess.run([*HD_CLI, "down"], cwd=project, capture_output=True, timeout=60)
