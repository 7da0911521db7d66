"""`up` interrupted: what it exits with, what it says, and that it leaves nothing.

- Ctrl+C, SIGTERM or SIGHUP to `up --detach` while it waits: the stack it was starting
  is shut down (its daemon runs in a session of its own, so the terminal's Ctrl+C never
  reached it, and a half-started stack kept running), then 130 / 143 / 129.
- `hd down` from another terminal, or kill -9 of the daemon, while `up --detach` waits:
  exit 1 saying so, with only this run's daemon output (daemon.log keeps every run's).
- The foreground `up` ended by SIGTERM or SIGHUP exits 143 / 129, not 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from stackutil import (
    HD_CLI,
    alive,
    escaper_service,
    free_ports,
    hd,
    holds,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)

from hippo_tasks.supervision.scope import marked_pids


def slow_stack(project: Path) -> Path:
    """One service that takes 30 s to be ready: `up --detach` is surely waiting."""
    dash, port = free_ports(2)
    pids = project / "pids"
    write_stack(project, stack_header(dash) + escaper_service(
        "slow", port, "--ready-after", "30", "--setsid", "--pids", str(pids),
        readiness={"log": "READY"}))
    return pids


def start_up(project: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*HD_CLI, "up", *flags, "--project-root", str(project)],
                            cwd=project, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "NO_COLOR": "1"})


def started(project: Path, pids: Path) -> tuple[str, list[int]]:
    """Once the service and its setsid child run: the run's token and every pid."""
    wait_for(lambda: pids.exists() and "setsid" in pids.read_text(), 30,
             what="the service and its child starting")
    procs = [int(line.split()[1]) for line in pids.read_text().splitlines()]
    return registry(project)["daemon"]["token"], procs


def finish(up: subprocess.Popen[str]) -> str:
    try:
        out, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    return out


def all_gone(token: str, procs: list[int]) -> None:
    wait_for(lambda: not marked_pids(token) and not any(alive(p) for p in procs), 10,
             what="every process of the stack gone")


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                      (signal.SIGHUP, 129), (signal.SIGQUIT, 131),
                                      (signal.SIGUSR2, 140)])
def test_interrupting_up_detach_shuts_down_what_it_started(project: Path, sig: int,
                                                           code: int) -> None:
    """Ctrl+\\ (SIGQUIT) and SIGUSR2 ended the wait by their default action, in
    silence, and the stack went on starting (r/6)."""
    pids = slow_stack(project)
    up = start_up(project, "--detach")
    token, procs = started(project, pids)
    daemon = registry(project)["daemon"]["pid"]
    os.killpg(up.pid, sig)  # as the terminal sends Ctrl+C: to the foreground group
    out = finish(up)
    assert up.returncode == code, out
    assert "the stack was shut down" in out and "Traceback" not in out, out
    assert not alive(daemon)
    all_gone(token, procs)
    assert registry(project)["daemon"] is None


@pytest.mark.parametrize("gap", [0.0, 0.001, 0.01])
def test_a_sigterm_and_its_echo_shut_down_cleanly_with_143(project: Path, gap: float) -> None:
    """`timeout N hd up --detach` sends SIGTERM to `up` and then to its group: the second
    one landed in the shutdown before its guard and was a traceback, exit 1. An echo is
    not a second Ctrl+C: the stack is still shut down, not killed."""
    pids = slow_stack(project)
    up = start_up(project, "--detach")
    token, procs = started(project, pids)
    os.kill(up.pid, signal.SIGTERM)
    time.sleep(gap)
    os.killpg(up.pid, signal.SIGTERM)
    out = finish(up)
    assert up.returncode == 143 and "Traceback" not in out, out
    assert "the stack was shut down" in out, out
    all_gone(token, procs)


def up_after_an_earlier_run(project: Path) -> tuple[subprocess.Popen[str], str, list[int]]:
    """`up --detach` waiting, with a daemon.log that holds an earlier run's line."""
    pids = slow_stack(project)
    log = project / ".hippodrome" / "daemon.log"
    log.parent.mkdir()
    log.write_text("A LINE FROM AN EARLIER RUN\n")
    up = start_up(project, "--detach")
    return (up, *started(project, pids))


def test_hd_down_during_up_detach_says_so_with_this_runs_lines_only(project: Path) -> None:
    up, token, procs = up_after_an_earlier_run(project)
    down = hd(project, "down", timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    out = finish(up)
    assert up.returncode == 1, out
    assert "the stack was shut down by `hd down`" in out, out
    assert "EARLIER RUN" not in out and "Traceback" not in out, out
    all_gone(token, procs)


def test_kill_9_of_the_daemon_during_up_detach_says_so(project: Path) -> None:
    up, token, procs = up_after_an_earlier_run(project)
    os.kill(registry(project)["daemon"]["pid"], signal.SIGKILL)
    out = finish(up)
    assert up.returncode == 1, out
    assert "the daemon was killed by signal 9 before the stack was ready" in out, out
    assert "EARLIER RUN" not in out and "Traceback" not in out, out
    all_gone(token, procs)  # the orphan guard's work


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_the_foreground_up_ended_by_a_signal_says_so_in_its_code(project: Path, sig: int,
                                                                 code: int) -> None:
    dash, port = free_ports(2)
    pids = project / "pids"
    write_stack(project, stack_header(dash) + escaper_service(
        "web", port, "--pids", str(pids), readiness={"http": "/"}))
    up = start_up(project)
    wait_for(lambda: (project / ".hippodrome" / "registry.json").exists()
             and all(e.get("ready") for e in registry(project)["services"].values())
             and registry(project)["services"], 30, what="the stack ready")
    token = registry(project)["daemon"]["token"]
    up.send_signal(sig)
    out = finish(up)
    assert up.returncode == code, out
    assert "Traceback" not in out
    all_gone(token, [int(line.split()[1]) for line in pids.read_text().splitlines()])


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detach"])
def test_a_hangup_ignored_when_up_started_stays_ignored(project: Path, detach: bool) -> None:
    """`nohup hd up &` (SIGHUP ignored when it starts): the hangup of the closing
    terminal shut the stack down, exit 129, where nohup is there to keep it running; a
    script's `hd up &` by SIGINT the same way (adv45 R/8). It stays ignored; the services
    get the default disposition; SIGTERM still ends it."""
    dash, port = free_ports(2)
    pids = project / "pids"
    write_stack(project, stack_header(dash) + escaper_service(
        "web", port, "--pids", str(pids), *(["--ready-after", "30"] if detach else []),
        readiness={"log": "READY"} if detach else {"http": "/"}))
    up = subprocess.Popen([*HD_CLI, "up", *(["--detach"] if detach else []),
                           "--project-root", str(project)], cwd=project, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True, env={**os.environ, "NO_COLOR": "1"},
                          preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) > 1  # (written
                 and registry(project)["services"].get("web", {})  # whole, not just made)
                 .get("state") in ("starting", "running"), 30, what="web started")
        service = int(pids.read_text().split()[1])
        os.killpg(up.pid, signal.SIGHUP)  # as the terminal's hangup reaches its group
        time.sleep(1.0)
        assert up.poll() is None and alive(service), finish(up)
        ignored = int(next(line.split()[1] for line in
                           Path(f"/proc/{service}/status").read_text().splitlines()
                           if line.startswith("SigIgn:")), 16)
        assert not ignored & (1 << (signal.SIGHUP - 1)), hex(ignored)
        up.send_signal(signal.SIGTERM)
        out = finish(up)
        assert up.returncode == 143 and "Traceback" not in out, out
    finally:
        if up.poll() is None:
            up.kill()
        hd(project, "down", timeout=60)


def test_down_ends_a_daemon_stopped_before_it_served(project: Path) -> None:
    """The forked daemon SIGSTOPped in its first tenth of a second, while it holds the
    lifecycle lock `up` handed it: `hd down` waited on that lock for 300 s, calling its
    holder "not Hippodrome's", and no command ended the stack short of `kill -CONT`
    (adv44 L/5). Down goes on without the lock and ends it."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    up = start_up(project, "--detach")
    lock = project / ".hippodrome" / "lifecycle.lock"
    daemon = 0
    try:
        deadline = time.monotonic() + 10
        while not daemon and time.monotonic() < deadline:
            for name in os.listdir("/proc"):
                if name.isdigit():
                    with contextlib.suppress(OSError, IndexError):
                        stat = Path(f"/proc/{name}/stat").read_text()
                        # the daemon once it holds the lock: `up` forks it, or hands
                        # it to the seed it forked at its start (daemon/seed.py)
                        if stat.rsplit(")", 1)[1].split()[1] == str(up.pid) and \
                                holds(int(name), lock):
                            daemon = int(name)
                            os.kill(daemon, signal.SIGSTOP)
                            break
        if registry(project).get("daemon"):  # (seen under load, with four workers)
            pytest.skip("the daemon served before it was seen or stopped: the lock was "
                        "let go")
        assert daemon, "no daemon forked"
        # while `up` still waits for it: down said "ending it", then waited 300 s more
        # for that `up` and left the daemon stopped (adv47 G/2)
        down = hd(project, "down", timeout=60)
        said = down.stdout + down.stderr
        assert down.returncode == 0 and "is stopped (SIGSTOP" in said, said
        wait_for(lambda: not alive(daemon), 10, what="the stopped daemon ended")
        up.wait(30)
    finally:
        if up.poll() is None:
            up.kill()
        if daemon and alive(daemon):  # ours, by the pid it was forked as
            os.kill(daemon, signal.SIGKILL)
            os.kill(daemon, signal.SIGCONT)


def test_down_whose_daemon_dies_midway_ends_what_it_left_before_saying_stopped(
        project: Path) -> None:
    """kill -9 of the daemon during `hd down`: down said `stack stopped` while a service
    that ignores SIGTERM still ran (its guard ended it a second later)."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("stubborn", port, "--ignore-term",
                                                          stop_timeout=10))
    hd(project, "up", "--detach", check=True, timeout=60)
    daemon = registry(project)["daemon"]["pid"]
    service = registry(project)["services"]["stubborn"]["pid"]
    down = start_down(project)
    try:
        wait_for(lambda: registry(project)["services"]["stubborn"]["state"] == "stopping", 20,
                 what="the stop under way")
        os.kill(daemon, signal.SIGKILL)
        out = finish(down)
        assert not alive(service), out  # at once: not a second later, by the guard
        assert down.returncode == 0 and "stack stopped" in out, out
        assert "ended before it finished stopping the stack" in out, out
    finally:
        hd(project, "down", "--force", timeout=60)


def start_down(project: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*HD_CLI, "down", "--project-root", str(project)], cwd=project,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_up_detach_is_not_ready_while_a_restart_from_elsewhere_is_under_way(
        project: Path) -> None:
    """`hd restart` from another terminal while `up --detach` waited: it said `stack
    ready ... (0/2 ready ...)` and exited 0 with nothing up."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service(
        "slow", port, "--delay", "2", readiness={"http": "/healthz"}, start_timeout=30)
        + '[services.after]\ncommand = ["sleep", "600"]\ndepends_on = ["slow"]\n')
    up = start_up(project, "--detach")
    try:
        wait_for(lambda: (project / ".hippodrome" / "registry.json").exists() and
                 (registry(project).get("services") or {}).get("slow", {}).get("state")
                 == "starting", 30, what="slow starting")
        restart = hd(project, "restart", timeout=60)
        out = finish(up)
        assert up.returncode == 0, out
        assert "stack ready" in out and "not running" not in out, out
        assert restart.returncode == 0, restart.stdout + restart.stderr
        states = {n: e["state"] for n, e in registry(project)["services"].items()}
        assert states == {"slow": "running", "after": "running"}, states
    finally:
        hd(project, "down", timeout=60)


def test_sigusr1_does_not_end_up_detach_while_it_waits(project: Path) -> None:
    """SIGUSR1 (Ctrl+T's cousin, the foreground `up`'s "say the dashboard line") ended a
    waiting `up --detach` with 138 and the stack came up behind it, unwatched."""
    pids = slow_stack(project)
    up = start_up(project, "--detach")
    token, procs = started(project, pids)
    os.kill(up.pid, signal.SIGUSR1)
    time.sleep(0.5)
    assert up.poll() is None, finish(up)
    os.kill(up.pid, signal.SIGTERM)
    out = finish(up)
    assert up.returncode == 143 and "the stack was shut down" in out, out
    all_gone(token, procs)


@pytest.mark.parametrize("name", ["SIGUSR2", "SIGPWR", "SIGRTMIN+1"])
def test_usr1_to_the_detached_daemon_says_its_line_and_other_signals_shut_down(
        project: Path, name: str) -> None:
    """`kill -USR1` of the detached daemon (`ps` shows it as `hd up --detach`, and the
    README says USR1 reprints the dashboard line) killed it by default, and its guard
    ended the stack, with no word anywhere; SIGUSR2, SIGQUIT, SIGALRM the same (y/5),
    and SIGPWR, SIGSYS and the real-time signals (r/1)."""
    number = signal.SIGRTMIN + 1 if name == "SIGRTMIN+1" else getattr(signal, name)
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True, timeout=60)
    daemon = registry(project)["daemon"]["pid"]
    log = project / ".hippodrome" / "daemon.log"
    try:
        os.kill(daemon, signal.SIGUSR1)
        wait_for(lambda: log.read_text().count("| dashboard: ") >= 2, 10,
                 what="the dashboard line again")
        assert alive(daemon) and hd(project, "status").returncode == 0
        os.kill(daemon, number)
        wait_for(lambda: not alive(daemon), 30, what="the daemon's shutdown")
        said = log.read_text()
        assert f"shutting down ({name})" in said and "Traceback" not in said, said
        assert registry(project)["daemon"] is None
    finally:
        hd(project, "down", timeout=60)


@pytest.mark.parametrize(("first", "second", "key"), [
    (signal.SIGTERM, signal.SIGINT, "Ctrl+C"), (signal.SIGHUP, signal.SIGINT, "Ctrl+C"),
    (signal.SIGQUIT, signal.SIGQUIT, "Ctrl+\\")])
def test_ctrl_c_during_a_shutdown_a_signal_began_kills_at_once(
        project: Path, first: int, second: int, key: str) -> None:
    """A foreground `up` stopping after SIGTERM (a CI cancel) or SIGHUP, a service that
    ignores SIGTERM with a 60 s stop_timeout: the user's Ctrl+C was dropped without a
    word, and the stop waited the whole minute (y/6); Ctrl+\\ twice the same (r/5)."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port, "--ignore-term",
                                                          stop_timeout=60))
    up = start_up(project)
    try:
        wait_for(lambda: (project / ".hippodrome" / "registry.json").exists()
                 and registry(project)["services"].get("web", {}).get("ready"), 30,
                 what="the stack ready")
        web = registry(project)["services"]["web"]["pid"]
        up.send_signal(first)
        wait_for(lambda: registry(project)["services"]["web"]["state"] == "stopping", 20,
                 what="the stop under way")
        up.send_signal(second)
        out, _ = up.communicate(timeout=30)  # not the 60 s stop_timeout
        assert f"{key} during the shutdown" in out and "killing every service now" in out, out
        assert not alive(web)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
        hd(project, "down", timeout=60)


def test_a_foreground_up_that_down_stopped_before_ready_exits_1_and_says_who(
        project: Path) -> None:
    """`hd up` in the foreground (a CI step's "start and wait"), `hd down` from another
    shell before the stack was ready: exit 0, in silence, where `up --detach` says who
    shut it down, exit 1 (y/7)."""
    pids = slow_stack(project)
    up = start_up(project)
    try:
        started(project, pids)
        down = hd(project, "down", timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        out = finish(up)
        assert up.returncode == 1, out
        assert "the stack was shut down by `hd down` (or POST /api/shutdown) before it " \
            "was ready" in out, out
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
