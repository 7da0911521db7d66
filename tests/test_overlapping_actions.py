"""Two terminals (or a double-clicked button) asking for the same action at once.

Requests for one service coalesce (service.py), and each answer is the service's state
when that request settled: two overlapping `hd restart -s a` used to answer with the
state when the answer was read, by which time the other restart was stopping the
service, so one of them said `a: stopping` and exited 0.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from stackutil import (
    HD_CLI,
    alive,
    free_ports,
    hd,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)


def restart(url: str, out: list[Any]) -> None:
    req = urllib.request.Request(url + "/api/services/a/restart", method="POST", data=b"",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        out.append(json.loads(resp.read())["services"][0])


def test_overlapping_restarts_each_answer_with_their_own_outcome(project: Path) -> None:
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service(
        "a", port, "--delay", "0.3", readiness={"http": "/"}, stop_timeout=3))
    hd(project, "up", "--detach", check=True)
    url = registry(project)["daemon"]["url"]
    for _ in range(5):
        rows: list[Any] = []
        pair = [threading.Thread(target=restart, args=(url, rows)) for _ in range(2)]
        for t in pair:
            t.start()
        for t in pair:
            t.join(90)
        assert len(rows) == 2, rows
        for row in rows:
            assert (row["state"], row["ready"]) == ("running", True), row
            assert row["pid"] is not None
    hd(project, "down", check=True)


def test_a_restart_that_leaves_the_service_stopped_says_why_and_exits_1(
        project: Path) -> None:
    """db was stopped on purpose; `hd restart -s api` took the healthy api down and it
    could not come back (its dependency is stopped): that printed `api: stopped`, exit 0.
    Then exit 1 with api stopped; now api is not taken down at all (adv24 a/4)."""
    dash, db, api = free_ports(3)
    write_stack(project, stack_header(dash) + toy_service("db", db)
                + toy_service("api", api, depends_on=["db"]))
    hd(project, "up", "--detach", check=True)
    hd(project, "stop", "--service", "db", check=True)
    restart = hd(project, "restart", "--service", "api", timeout=60)
    said = restart.stdout + restart.stderr
    assert restart.returncode == 1, said
    assert "api: running" in said and "not restarted: its dependency 'db' is stopped" \
        in said and "`hd start --service db`, then `hd restart --service api`" in said, said
    start = hd(project, "start", "--service", "api", timeout=60)
    assert start.returncode == 0, start.stdout + start.stderr
    assert "api: running" in start.stdout and "db: running" in start.stdout
    hd(project, "down", check=True)


def test_a_start_during_a_whole_stack_stop_waits_for_it(project: Path) -> None:
    """`hd stop` and `hd start -s b` at once (b depends on a): the stop stopped b, the
    start ran in between, found a still running and started b, then the stop stopped a
    under it; both exited 0, each printing the opposite of the end state. b ignores
    SIGTERM (stop_timeout 1 s) to hold the stop between b and a long enough."""
    dash, a, b = free_ports(3)
    write_stack(project, stack_header(dash) + toy_service("a", a)
                + toy_service("b", b, "--ignore-term", depends_on=["a"], stop_timeout=1))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        out: dict[str, Any] = {}
        stop = threading.Thread(target=lambda: out.update(stop=hd(project, "stop")))
        stop.start()
        wait = threading.Event()
        wait.wait(0.4)  # b's stop is under way (it waits out its 1 s)
        start = hd(project, "start", "--service", "b", timeout=60)
        stop.join(60)
        rows = registry(project)["services"]
        assert rows["a"]["state"] == rows["b"]["state"] == "running", rows
        assert start.returncode == 0, start.stdout + start.stderr
        assert "a: running" in start.stdout and "b: running" in start.stdout, start.stdout
        assert out["stop"].returncode == 0 and "a: stopped" in out["stop"].stdout
    finally:
        hd(project, "down")


def test_a_service_stopped_during_a_whole_stack_restart_is_not_answered_running(
        project: Path) -> None:
    """`hd restart` (the whole stack) said `leaf: running (pid N)`, exit 0, for a service
    another terminal had stopped while the restart waited for a slow one."""
    import subprocess

    from stackutil import HD_CLI

    dash, fast, slow, leaf = free_ports(4)
    write_stack(project, stack_header(dash) + toy_service("fast", fast)
                + toy_service("slow", slow, "--delay", "3", readiness={"http": "/"})
                + toy_service("leaf", leaf, depends_on=["fast"]))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        restart = subprocess.Popen([*HD_CLI, "restart"], cwd=project, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # slow is on its way back (3 s): a fixed sleep could land after it on a loaded
        # machine, with the restart over
        wait_for(lambda: registry(project)["services"]["slow"]["state"] == "starting", 30,
                 every=0.05, what="slow starting again")
        stop = hd(project, "stop", "--service", "leaf", timeout=60)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        out, err = restart.communicate(timeout=60)
        assert restart.returncode == 1, out + err
        assert "leaf: stopped" in out and "'leaf' is stopped (stop requested, while this " \
            "one waited)" in err, out + err
    finally:
        hd(project, "down", timeout=60)


def test_a_restart_overtaken_by_down_says_the_stack_was_shut_down(project: Path) -> None:
    """`hd restart -s db` (db ignores SIGTERM, so its stop takes a while) and `hd down`
    from another terminal: the restart said "'db' is not running; `hd start --service
    db` starts it", exit 1, with no daemon left to start anything."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.db]\ncommand = ["sh", "-c", '
                '"trap \'\' TERM; while true; do sleep 0.2; done"]\nstop_timeout = 2\n')
    hd(project, "up", "--detach", check=True)
    restart = subprocess.Popen([*HD_CLI, "restart", "-s", "db"], cwd=project, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = registry(project)["daemon"]["url"]

    def db_stopping() -> bool:
        with urllib.request.urlopen(url + "/api/status", timeout=10) as resp:
            rows = json.loads(resp.read())["services"]
        return any(r["name"] == "db" and r["state"] == "stopping" for r in rows)

    # the restart under way, not merely asked for (a loaded run's restart reached the
    # daemon after the shutdown began: refused as a request to a stack shutting down)
    wait_for(db_stopping, 30, what="the restart stopping db")
    hd(project, "down", check=True, timeout=60)
    out, _ = restart.communicate(timeout=60)
    assert restart.returncode == 5, out
    assert "the stack was shut down by `hd down` (or POST /api/shutdown) while the restart " \
           "db waited" in out, out
    assert "hd start" not in out, out


def chain_of_three(project: Path, ready_after: float, mid_after: float | None = None) -> None:
    """db <- mid <- leaf, each ready `ready_after` s after its start (mid `mid_after`)."""
    (dash,) = free_ports(1)
    chain = ""
    for name, dep in (("db", None), ("mid", "db"), ("leaf", "mid")):
        after = mid_after if name == "mid" and mid_after is not None else ready_after
        chain += (f'[services.{name}]\nshell = "sleep {after}; echo up; exec sleep '
                  '600"\nreadiness = { log = "up" }\n'
                  + (f'depends_on = ["{dep}"]\n' if dep else ""))
    write_stack(project, stack_header(dash) + chain)


def test_a_cascade_overtaken_by_a_stack_restart_waits_through_it(project: Path) -> None:
    """`hd restart -s db --cascade`, then a whole-stack `hd restart` from another
    terminal: the cascade answered `mid: starting`, "another command (a stop, `hd down`)
    changed the stack", exit 1, though only a restart came and every service ended
    running."""
    chain_of_three(project, 0.5)
    hd(project, "up", "--detach", check=True)
    cascade = subprocess.Popen([*HD_CLI, "restart", "-s", "db", "--cascade"], cwd=project,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.8)
    hd(project, "restart", check=True, timeout=60)
    out, _ = cascade.communicate(timeout=60)
    assert cascade.returncode == 0, out
    assert all(f"{n}: running" in out for n in ("db", "mid", "leaf")), out
    hd(project, "down", timeout=60)


def test_a_cascade_that_meets_a_dependant_the_stack_restart_stopped_waits_through_it(
        project: Path) -> None:
    """The same race a step later (CI, under load): the stack restart had stopped leaf
    but not yet mid, which waited for slowstop (it ignores SIGTERM), so mid came up for
    the cascade, which then found leaf stopped and answered `leaf: stopped — restart
    requested`, "mid did not come up: another command changed the stack", exit 1."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash)
                + '[services.db]\ncommand = ["sleep", "600"]\n'
                + '[services.mid]\nshell = "sleep 1.2; echo up; exec sleep 600"\n'
                  'readiness = { log = "up" }\ndepends_on = ["db"]\n'
                + '[services.leaf]\ncommand = ["sleep", "600"]\ndepends_on = ["mid"]\n'
                + '[services.slowstop]\ncommand = ["sh", "-c", "trap \'\' TERM; while true;'
                  ' do sleep 0.1; done"]\nstop_timeout = 4\ndepends_on = ["mid"]\n')
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        cascade = subprocess.Popen([*HD_CLI, "restart", "-s", "mid", "--cascade"],
                                   cwd=project, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        wait_for(lambda: any(r["name"] == "mid" and r["state"] == "starting" for r in json.loads(
            hd(project, "status", "--json").stdout)["services"]), timeout=10)
        stack = subprocess.Popen([*HD_CLI, "restart"], cwd=project, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = cascade.communicate(timeout=60)
        stack_out, _ = stack.communicate(timeout=60)
        assert stack.returncode == 0, stack_out
        assert cascade.returncode == 0, out
        assert all(f"{n}: running" in out for n in ("mid", "leaf", "slowstop")), out
    finally:
        hd(project, "down", timeout=60)


def test_a_stack_restart_overtaken_by_a_stop_answers_the_row_as_it_ended(
        project: Path) -> None:
    """A whole-stack restart, then `hd stop -s leaf` while leaf still waited for its
    dependencies: the restart's answer read `leaf: pending`, which it never left for a
    start; it ended `stopped`."""
    chain_of_three(project, 0.7)
    hd(project, "up", "--detach", check=True)
    restart = subprocess.Popen([*HD_CLI, "restart"], cwd=project, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for(lambda: registry(project)["services"]["leaf"]["state"] != "running", 30,
             every=0.05, what="the restart under way")
    hd(project, "stop", "-s", "leaf", check=True)
    out, _ = restart.communicate(timeout=60)
    assert "leaf: pending" not in out, out
    assert "leaf: stopped" in out and restart.returncode == 1, out
    hd(project, "down", timeout=60)


def test_a_stack_restart_overtaken_by_a_stop_while_one_starts_answers_it_stopped(
        project: Path) -> None:
    """The same with mid already starting when the stop came: its row read `mid:
    starting` (the API's with a pid that no longer ran), then `mid: stopping`; it ended
    stopped."""
    chain_of_three(project, 0.2, mid_after=5)
    hd(project, "up", "--detach", check=True, timeout=60)
    restart = subprocess.Popen([*HD_CLI, "restart"], cwd=project, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(1.5)
    hd(project, "stop", check=True, timeout=60)
    out, _ = restart.communicate(timeout=60)
    # Answered once the stop is over, as README promises: it had said `mid: stopping` of
    # a service `hd stop` had already reported stopped (adv28 l/1).
    assert "mid: stopped" in out, out
    assert restart.returncode == 1, out
    hd(project, "down", timeout=60)


def test_a_start_during_a_shutdown_is_exit_5_as_one_it_overtook(project: Path) -> None:
    """Sent while `hd down` stopped the stack: exit 1, "the daemon answered 503", where
    the same start sent a moment earlier was exit 5."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash)
                + '[services.stub]\ncommand = ["sh", "-c", "trap \'\' TERM; while true; do '
                  'sleep 0.2; done"]\nstop_timeout = 4\n'
                + '[services.b]\ncommand = ["sleep", "600"]\n')
    hd(project, "up", "--detach", check=True)
    hd(project, "stop", "-s", "b", check=True)
    down = subprocess.Popen([*HD_CLI, "down"], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.0)  # the stub holds the shutdown up for 4 s
        start = subprocess.run([*HD_CLI, "start", "-s", "b"], cwd=project, text=True,
                               capture_output=True, timeout=30)
        assert start.returncode == 5, start.stdout + start.stderr
        assert "the stack is shutting down (by `hd down`" in start.stderr, start.stderr
    finally:
        down.communicate(timeout=60)


@pytest.mark.parametrize("which", ["stack", "b"])
def test_a_stop_during_a_stack_restarts_stop_half_is_not_undone_by_its_start_half(
        project: Path, which: str) -> None:
    """`hd restart`, then `hd stop` (or `hd stop -s b`) while the restart still stopped
    the stack: the stop said "stopped", exit 0, and the restart then started every
    service again (y/4). The later stop wins; the restart answers them stopped."""
    dash, a, b = free_ports(3)
    write_stack(project, stack_header(dash) + toy_service("a", a)
                + toy_service("b", b, "--ignore-term", depends_on=["a"], stop_timeout=3))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        restart = subprocess.Popen([*HD_CLI, "restart"], cwd=project, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # b's stop is under way (it waits out its 3 s): a fixed 0.3 s came after it on a
        # loaded machine, and the restart was over before the stop
        wait_for(lambda: registry(project)["services"]["b"]["state"] == "stopping", 30,
                 every=0.05, what="b stopping")
        stop = hd(project, "stop", *(["-s", "b"] if which == "b" else []), timeout=60)
        out, _ = restart.communicate(timeout=60)
        assert stop.returncode == 0 and "b: stopped" in stop.stdout, stop.stdout + stop.stderr
        rows = registry(project)["services"]
        assert rows["b"]["state"] == "stopped", rows
        assert rows["a"]["state"] == ("stopped" if which == "stack" else "running"), rows
        assert restart.returncode == 1 and "b: stopped" in out, out
        # It names the stop that overtook it; it said "restart requested", itself (r/10).
        assert "'b' is stopped (stop requested, while this one waited)" in out, out
        assert "restart requested" not in out, out
    finally:
        hd(project, "down", timeout=60)


def test_a_stack_start_overtaken_by_a_stop_answers_a_service_it_brought_up_stopped(
        project: Path) -> None:
    """`hd start` of the stack, `a` up for it and `b` still starting, then `hd stop`:
    the start answered `a: stopping` and "a did not come up", while the stop went on to
    stop it (adv44 L/1). Answered once that stop is over, `a` is stopped, as `b` is."""
    dash, a, b = free_ports(3)
    write_stack(project, stack_header(dash) + toy_service("a", a)
                + toy_service("b", b, "--delay", "3", "--ignore-term", depends_on=["a"],
                              stop_timeout=2))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        hd(project, "stop", check=True, timeout=60)
        start = subprocess.Popen([*HD_CLI, "start"], cwd=project, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for(lambda: (rows := registry(project)["services"])["a"]["state"] == "running"
                 and rows["b"]["state"] == "starting", 30, every=0.05,
                 what="a running, b starting")
        stop = hd(project, "stop", timeout=60)
        out, _ = start.communicate(timeout=60)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "a: stopped" in out and "a: stopping" not in out, out
        assert "a did not come up" not in out and "b: stopped" in out, out
        assert start.returncode == 1, out  # it ended stopped: said, as for b
    finally:
        hd(project, "down", timeout=60)


def test_three_overlapping_restarts_each_answer_with_the_end_state(project: Path) -> None:
    """`hd restart -s slow`, a whole-stack `hd restart` and `hd restart -s a --cascade`,
    0.1 s apart: the first said "slow did not come up: another command (a stop, `hd
    down`) changed the stack", exit 1, while both others exited 0 and slow ran (y/3)."""
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("a", a)
                + '[services.slow]\nshell = "sleep 1.5; echo up; exec sleep 600"\n'
                  'readiness = { log = "up" }\ndepends_on = ["a"]\n')
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        runs = []
        for argv in (["restart", "-s", "slow"], ["restart"], ["restart", "-s", "a",
                                                              "--cascade"]):
            runs.append(subprocess.Popen([*HD_CLI, *argv], cwd=project, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            time.sleep(0.1)
        outs = [(run.wait(60), run.communicate()[0]) for run in runs]
        assert [code for code, _ in outs] == [0, 0, 0], outs
        assert "slow: running" in outs[0][1] and "changed the stack" not in outs[0][1], outs
    finally:
        hd(project, "down", timeout=60)


def test_up_while_the_stack_shuts_down_says_so_not_use_restart(project: Path) -> None:
    """`hd up` while the daemon finished a shutdown whose `hd down` was killed (a live
    one holds `up` until it is over): "already running ... Use `hd restart`", and `hd
    restart` sent one back to `hd up` (r/8). It says the stack is shutting down."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash)
                + toy_service("web", port, "--ignore-term", stop_timeout=5))
    hd(project, "up", "--detach", check=True, timeout=60)
    down = subprocess.Popen([*HD_CLI, "down"], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                registry(project).get("daemon") or {}).get("shutting_down"):
            time.sleep(0.05)
        down.kill()
        down.communicate(timeout=10)
        up = hd(project, "up", "--detach", timeout=60)
        said = up.stdout + up.stderr
        assert up.returncode == 7, said
        assert "is shutting down (asked by `hd down`" in said and "hd restart" not in said, said
    finally:
        if down.poll() is None:
            down.kill()
            down.communicate()
        hd(project, "down", timeout=60)


def test_down_force_ends_a_graceful_down_that_waits_out_a_stop_timeout(project: Path) -> None:
    """A service that ignores SIGTERM with stop_timeout = 120: `hd down` waits it out,
    and `hd down --force`, the way out the docs give, waited behind it for the lock (up
    to 300 s, then exit 9) while the service ran on (adv24 a/9). It acts at once."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash)
                + toy_service("slow", port, "--ignore-term", stop_timeout=120))
    hd(project, "up", "--detach", check=True, timeout=60)
    pid = registry(project)["services"]["slow"]["pid"]
    graceful = subprocess.Popen([*HD_CLI, "down"], cwd=project, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.5)  # the stop is under way: SIGTERM sent, ignored
        forced = subprocess.run([*HD_CLI, "down", "--force"], cwd=project, text=True,
                                capture_output=True, timeout=30)
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert "is still stopping the stack gracefully: --force ends what is left now" in \
            forced.stdout + forced.stderr, forced.stdout + forced.stderr
        assert wait_for(lambda: not alive(pid), timeout=10), "the service outlived --force"
        graceful.communicate(timeout=30)
    finally:
        if graceful.poll() is None:
            graceful.kill()
            graceful.communicate()
        hd(project, "down", "--force", timeout=60)



def test_a_dependant_held_by_a_stop_during_a_stack_restart_names_that_stop(
        project: Path) -> None:
    """`hd restart`, then `hd stop -s a` while a stopped (slowly): b, which needs a, stayed
    stopped, right, but its row blamed the restart: "restart requested, while this one
    waited" (adv25 d/4)."""
    dash, a, b = free_ports(3)
    write_stack(project, stack_header(dash)
                + toy_service("a", a, "--ignore-term", stop_timeout=2)
                + toy_service("b", b, depends_on=["a"]))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        restart = subprocess.Popen([*HD_CLI, "restart"], cwd=project, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for(lambda: registry(project)["services"]["a"]["state"] == "stopping", 30,
                 every=0.05, what="a waiting out its 2 s")  # b is stopped
        hd(project, "stop", "-s", "a", timeout=60)
        out, _ = restart.communicate(timeout=60)
        assert restart.returncode == 1, out
        assert "'b' is stopped (not started again: 'a', which it needs, was stopped " \
            "meanwhile, while this one waited)" in out, out
        assert "restart requested" not in out, out
    finally:
        hd(project, "down", timeout=60)


def _act(url: str, name: str, op: str, out: dict[str, Any], key: str) -> None:
    req = urllib.request.Request(f"{url}/api/services/{name}/{op}", method="POST", data=b"",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        out[key] = json.loads(resp.read())


def test_clicks_of_start_stop_start_stop_end_stopped_as_the_last_one_asked(
        project: Path) -> None:
    """start, stop, start, stop 0.3 s apart on a slow service (a double-clicked page):
    the second start waited for the first stop to end and was carried out after the
    second stop had answered `stopped`, ok true; the service ended running (adv28 m/1).
    A later stop wins: the service ends stopped, and the start it overruled says so."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service(
        "slow", port, "--delay", "1.5", "--ignore-term", readiness={"http": "/"},
        stop_timeout=1.5))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        url = registry(project)["daemon"]["url"]
        hd(project, "stop", "-s", "slow", check=True, timeout=60)
        out: dict[str, Any] = {}
        clicks = []
        for i, op in enumerate(["start", "stop", "start", "stop"]):
            clicks.append(threading.Thread(target=_act, args=(url, "slow", op, out, f"{i}")))
            clicks[-1].start()
            time.sleep(0.3)
        for t in clicks:
            t.join(60)
        assert len(out) == 4, out
        time.sleep(2.5)  # what a start carried out late would have brought up by now
        row = registry(project)["services"]["slow"]
        assert row["state"] == "stopped", (row, out)
        assert out["3"]["ok"] is True and out["3"]["services"][0]["state"] == "stopped", out
        assert out["2"]["ok"] is False, out["2"]
        assert out["2"]["services"][0]["state"] == "stopped", out["2"]
    finally:
        hd(project, "down", timeout=60)


def _down_under_way(project: Path, stop_timeout: float) -> subprocess.Popen[str]:
    """A stack whose one service ignores SIGTERM, and a first `hd down`, now waiting out
    that service's stop_timeout."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("slow", port, "--ignore-term",
                                                          stop_timeout=stop_timeout))
    hd(project, "up", "--detach", check=True, timeout=60)
    return subprocess.Popen([*HD_CLI, "down"], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_down_during_another_down_says_that_one_stopped_the_stack(project: Path) -> None:
    """Two terminals: `hd down`, and a second `hd down` a second later while a service
    waits out its stop_timeout. The second waited, then said "no daemon was running;
    nothing to stop" (adv28 l/4)."""
    first = _down_under_way(project, stop_timeout=3)
    try:
        wait_for(lambda: registry(project)["services"]["slow"]["state"] == "stopping", 30,
                 every=0.05, what="the first down under way")
        second = hd(project, "down", timeout=60)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "no daemon was running" not in second.stdout, second.stdout
        assert f"the stack was stopped by `down` (pid {first.pid}) while this one waited" \
            in second.stdout, second.stdout + second.stderr
    finally:
        first.communicate(timeout=60)
        hd(project, "down", timeout=60)


def test_ctrl_c_of_a_waiting_down_says_the_shutdown_goes_on(project: Path) -> None:
    """Ctrl+C while `hd down` waited out a stop_timeout: exit 130 and no word, while the
    daemon went on stopping the stack (adv28 l/6; start/stop/restart said so already)."""
    import signal

    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("slow", port, "--ignore-term",
                                                          stop_timeout=5))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        down = subprocess.Popen([*HD_CLI, "down"], cwd=project, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: registry(project)["services"]["slow"]["state"] == "stopping", 20,
                 what="the stop under way")
        down.send_signal(signal.SIGINT)
        out, err = down.communicate(timeout=30)
        assert down.returncode == 130, out + err
        assert "stopped waiting; the shutdown goes on in the daemon" in err, out + err
    finally:
        hd(project, "down", timeout=60)


def test_ctrl_c_of_a_down_waiting_for_another_down_says_that_one_goes_on(
        project: Path) -> None:
    """The second `hd down`, waiting for the first's lock, exited 130 with no word
    after Ctrl+C, where a lone waiting `down` says the shutdown goes on (adv29 n/2)."""
    import signal

    first = _down_under_way(project, stop_timeout=5)
    try:
        time.sleep(1.0)
        second = subprocess.Popen([*HD_CLI, "down"], cwd=project, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert second.stdout is not None
        assert "waiting for `down`" in second.stdout.readline()
        second.send_signal(signal.SIGINT)
        out, err = second.communicate(timeout=30)
        assert second.returncode == 130, out + err
        assert f"stopped waiting; `down` (pid {first.pid}) goes on with this stack" in err, \
            out + err
    finally:
        first.communicate(timeout=60)
        hd(project, "down", timeout=60)
