"""`restart_cascades = true`: a service whose state lives only in its process (moto).
Ready again after any restart, a crash's included, it restarts what depends on it, as
`--cascade` does, so the jobs that filled it run again. A crashed moto came back empty
while `hd status` said healthy, and every table call failed for good."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from stackutil import PY, free_ports, hd, registry, stack_header, toy_service, wait_for, write_stack


def cascading_stack(project: Path, cascades: bool) -> Path:
    """store (the flag under test), fill (a job writing a line per run), app (a service
    depending on store)."""
    dash, store, app = free_ports(3)
    runs = project / "runs"
    job = (f'[services.fill]\nkind = "job"\ncommand = ["{PY}", "-c", "import sys; '
           f'open(sys.argv[1], \'a\').write(\'run\\\\n\')", "{runs}"]\ndepends_on = ["store"]\n')
    write_stack(project, stack_header(dash)
                + toy_service("store", store, readiness={"http": "/healthz"},
                              restart_cascades=cascades)
                + job + toy_service("app", app, depends_on=["store"]))
    return runs


def count(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def settle(project: Path) -> None:
    """Until no service is on its way anywhere (a cascade's restarts are over)."""
    wait_for(lambda: all(s["state"] in ("running", "stopped")
                         for s in registry(project)["services"].values()), 30,
             what="every service settled")


def pid(project: Path, name: str) -> int:
    return int(registry(project)["services"][name]["pid"] or 0)


@pytest.mark.parametrize("cascades", [True, False])
def test_a_crash_of_a_stateless_store_runs_its_jobs_again(project: Path, cascades: bool) -> None:
    runs = cascading_stack(project, cascades)
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        assert count(runs) == 1
        store, app = pid(project, "store"), pid(project, "app")
        os.kill(store, signal.SIGKILL)
        wait_for(lambda: pid(project, "store") not in (0, store) and
                 registry(project)["services"]["store"]["state"] == "running", 30,
                 what="store restarted after its crash")
        if cascades:
            wait_for(lambda: count(runs) == 2, 30, what="the job run again")
            wait_for(lambda: pid(project, "app") not in (0, app) and
                     registry(project)["services"]["app"]["state"] == "running", 30,
                     what="app restarted")
            log = (project / ".logs" / "latest" / "store.log").read_text()
            assert "keeps no state across restarts (restart_cascades)" in log
        else:
            hd(project, "status", check=True)  # a moment for a cascade that must not come
            assert count(runs) == 1 and pid(project, "app") == app
    finally:
        hd(project, "down", timeout=60)


def test_an_explicit_cascade_runs_the_job_once(project: Path) -> None:
    """`hd restart -s store --cascade` and the flag's own cascade are one cascade."""
    runs = cascading_stack(project, True)
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        hd(project, "restart", "--service", "store", "--cascade", check=True, timeout=60)
        assert count(runs) == 2
        # A plain restart cascades too, and returns once the cascade is done: it
        # returned with the cascade still under way (moto: seconds of 503s after it).
        plain = hd(project, "restart", "--service", "store", check=True, timeout=60)
        assert count(runs) == 3
        assert "app: running (pid" in plain.stdout and "fill: " in plain.stdout, plain.stdout
        assert registry(project)["services"]["app"]["state"] == "running"
        settle(project)
        assert count(runs) == 3
    finally:
        hd(project, "down", timeout=60)


def test_a_whole_stack_restart_runs_the_job_once(project: Path) -> None:
    """Every service restarts anyway: the flag's cascade must not restart them twice."""
    runs = cascading_stack(project, True)
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        hd(project, "restart", check=True, timeout=60)
        settle(project)
        hd(project, "status", check=True)  # a moment for a second cascade that must not come
        assert count(runs) == 2
        rows = json.loads(hd(project, "status", "--json", check=True).stdout)["services"]
        assert all(r["restarts"] <= 1 for r in rows), rows
    finally:
        hd(project, "down", timeout=60)


def test_a_cascade_leaves_running_a_dependant_it_could_not_start_again(project: Path) -> None:
    """d depends on a and on c, which was stopped: `restart -s a --cascade` stopped d,
    which could not start again without c, and exited 0 (a plain `restart -s d` in the
    same state exits 1). d is left running now, and the command says why, exit 1."""
    dash, a, c, d = free_ports(4)
    write_stack(project, stack_header(dash) + toy_service("a", a) + toy_service("c", c)
                + toy_service("d", d, depends_on=["a", "c"]))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        hd(project, "stop", "-s", "c", check=True)
        before = pid(project, "d")
        said = hd(project, "restart", "-s", "a", "--cascade", timeout=60)
        assert said.returncode == 1, said.stdout + said.stderr
        assert "d: running (pid" in said.stdout and "not restarted with the cascade from a: " \
            "its dependency 'c' is stopped" in said.stdout, said.stdout
        assert registry(project)["services"]["d"]["state"] == "running"
        assert pid(project, "d") == before
    finally:
        hd(project, "down", check=True)


def test_a_restart_of_a_service_whose_dependency_was_stopped_leaves_it_running(
        project: Path) -> None:
    """`hd restart -s d` with c, which d depends on, stopped on purpose: d was ended and
    left stopped, "dependency 'c' is stopped", and "while this one waited" for a stop
    made before it was asked (adv24 a/4). d runs on; exit 1 says why."""
    dash, c, d = free_ports(3)
    write_stack(project, stack_header(dash) + toy_service("c", c)
                + toy_service("d", d, depends_on=["c"]))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        hd(project, "stop", "-s", "c", check=True)
        before = pid(project, "d")
        said = hd(project, "restart", "-s", "d", timeout=60)
        assert said.returncode == 1, said.stdout + said.stderr
        assert "d: running (pid" in said.stdout and "not restarted: its dependency 'c' " \
            "is stopped" in said.stdout, said.stdout
        assert "while this one waited" not in said.stdout + said.stderr
        assert pid(project, "d") == before
        # with --cascade it was taken down all the same (adv25 d/10)
        said = hd(project, "restart", "-s", "d", "--cascade", timeout=60)
        assert said.returncode == 1 and "d: running (pid" in said.stdout and \
            "not restarted: its dependency 'c' is stopped" in said.stdout, said.stdout
        assert pid(project, "d") == before
        # d stopped too: the line said "d: stopped — stop requested" (adv25 d/1)
        hd(project, "stop", "-s", "d", check=True)
        said = hd(project, "restart", "-s", "d", timeout=60)
        assert said.returncode == 1 and "d: stopped — not restarted: its dependency 'c' " \
            "is stopped" in said.stdout, said.stdout + said.stderr
    finally:
        hd(project, "down", check=True)


def test_a_stop_of_a_completed_job_does_not_hold_back_its_dependants(project: Path) -> None:
    """`hd stop -s mig` of a job that had completed (nothing to stop: its row the same)
    marked it stopped on purpose, and `hd restart -s app` was refused for good, its
    advice to run the migration again (adv25 d/12)."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash)
                + '[services.mig]\nkind = "job"\ncommand = ["true"]\n'
                + toy_service("app", port, depends_on=["mig"]))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        hd(project, "stop", "-s", "mig", check=True)
        before = pid(project, "app")
        said = hd(project, "restart", "-s", "app", timeout=60)
        assert said.returncode == 0, said.stdout + said.stderr
        assert pid(project, "app") != before
    finally:
        hd(project, "down", timeout=60)


def test_a_crash_cascade_leaves_alone_a_dependant_whose_other_dependency_is_stopped(
        project: Path) -> None:
    """db (restart_cascades) crashed while left, which top also depends on, was stopped
    on purpose: the cascade stopped top, which could not start again, and nothing said
    so. top keeps running, and its log says why it was not restarted."""
    dash, db, left, top = free_ports(4)
    write_stack(project, stack_header(dash, backoff_initial=0.1)
                + toy_service("db", db, readiness={"http": "/healthz"}, restart_cascades=True)
                + toy_service("left", left, depends_on=["db"])
                + toy_service("top", top, depends_on=["db", "left"]))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        hd(project, "stop", "-s", "left", check=True)
        before, crashed = pid(project, "top"), pid(project, "db")
        os.kill(crashed, signal.SIGKILL)
        log = project / ".logs" / "latest" / "top.log"
        wait_for(lambda: "not restarted with the cascade from db" in log.read_text(), 30,
                 what="the note in top's log")
        settle(project)
        assert registry(project)["services"]["top"]["state"] == "running"
        assert pid(project, "top") == before
    finally:
        hd(project, "down", check=True)


def test_a_start_that_brings_back_a_cascading_service_answers_after_its_cascade(
        project: Path) -> None:
    """moto (restart_cascades) stopped, mid still running on it: `hd start -s top`
    started moto, answered `mid: running (pid N)` and `top: ...`, and the cascade moto's
    return set off restarted both half a second later (adv24 a/5). The start answers
    with the pids that stay."""
    dash, = free_ports(1)
    write_stack(project, stack_header(dash)
                + '[services.moto]\ncommand = ["sleep", "1000"]\nrestart_cascades = true\n'
                  '[services.mid]\nshell = "sleep 1; echo READY; exec sleep 1001"\n'
                  'readiness = { log = "READY" }\ndepends_on = ["moto"]\n'
                  '[services.top]\ncommand = ["sleep", "1003"]\ndepends_on = ["mid"]\n')
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        hd(project, "stop", "-s", "top", check=True)
        hd(project, "stop", "-s", "moto", check=True)
        start = hd(project, "start", "-s", "top", timeout=60)
        assert start.returncode == 0, start.stdout + start.stderr
        said = {line.split(":")[0]: line for line in start.stdout.splitlines()}
        time.sleep(2.0)  # any cascade still to come has begun
        settle(project)
        for name in ("mid", "top"):
            assert f"(pid {pid(project, name)})" in said[name], (name, said, pid(project, name))
    finally:
        hd(project, "down", timeout=60)


def test_a_crash_cascade_waits_for_a_dependency_another_command_is_restarting(
        project: Path) -> None:
    """a (restart_cascades) <- b <- c: a killed, and `hd restart -s b` from another
    terminal just after. The cascade left c out ("its dependency 'b' is pending: `hd
    start --service b`", a service already starting), and c ran on against a's lost
    state. It waits for b now, then restarts c."""
    dash, a, b, c = free_ports(4)
    write_stack(project, stack_header(dash)
                + toy_service("a", a, "--delay", "0.5", restart_cascades=True)
                + toy_service("b", b, "--delay", "0.3", depends_on=["a"])
                + toy_service("c", c, depends_on=["b"]))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        before = pid(project, "c")
        os.kill(pid(project, "a"), signal.SIGKILL)
        time.sleep(0.1)
        hd(project, "restart", "-s", "b", timeout=60)
        wait_for(lambda: pid(project, "c") not in (0, before), 30, what="c restarted")
        settle(project)
        log = (project / ".logs" / "latest" / "c.log").read_text()
        assert "not restarted with the cascade" not in log, log
        assert registry(project)["services"]["c"]["state"] == "running"
    finally:
        hd(project, "down", check=True)


def test_a_cascade_names_a_dependant_another_command_stopped_meanwhile(project: Path) -> None:
    """db (slow to come back) <- mid <- top, all running; `hd restart -s db --cascade`,
    then `hd stop -s top` while db restarts: the cascade left top out and said nothing,
    exit 0 (the API: ok true, no problems; adv28 m/3). top stays stopped (the later
    stop wins), and the cascade's answer names it, exit 1."""
    import subprocess

    from stackutil import HD_CLI

    dash, db, mid, top = free_ports(4)
    write_stack(project, stack_header(dash)
                + toy_service("db", db, "--delay", "3", readiness={"http": "/healthz"})
                + toy_service("mid", mid, depends_on=["db"])
                + toy_service("top", top, depends_on=["mid"]))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        cascade = subprocess.Popen([*HD_CLI, "restart", "-s", "db", "--cascade"], cwd=project,
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.0)  # db is on its way back up
        hd(project, "stop", "-s", "top", check=True, timeout=60)
        out, err = cascade.communicate(timeout=60)
        assert cascade.returncode == 1, out + err
        assert "top: stopped" in out and "'top' is stopped (stop requested" in err, out + err
        assert registry(project)["services"]["top"]["state"] == "stopped"
        assert "mid: running" in out
    finally:
        hd(project, "down", timeout=60)


def test_a_cascade_cut_short_names_what_it_did_not_reach(project: Path) -> None:
    """db <- mid <- top; `hd restart -s db --cascade`, and `hd stop -s mid` while mid
    restarts: the cascade ended at mid, and top, which it never reached, was left out
    of the answer as if it had not been asked for (adv29 n/7)."""
    import subprocess

    from stackutil import HD_CLI

    dash, db, mid, top = free_ports(4)
    write_stack(project, stack_header(dash) + toy_service("db", db)
                + toy_service("mid", mid, "--delay", "3", readiness={"http": "/healthz"},
                              depends_on=["db"])
                + toy_service("top", top, depends_on=["mid"]))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        cascade = subprocess.Popen([*HD_CLI, "restart", "-s", "db", "--cascade"], cwd=project,
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: registry(project)["services"]["mid"]["state"] == "starting", 20,
                 what="mid restarting")
        hd(project, "stop", "-s", "mid", check=True, timeout=60)
        out, err = cascade.communicate(timeout=60)
        assert cascade.returncode == 1, out + err
        assert "top: running" in out and "not restarted: the cascade from db ended at 'mid' " \
            "(stopped)" in out + err, out + err
    finally:
        hd(project, "down", timeout=60)


def slow_chain(project: Path, db_extra: str = "", top_stop: float = 3.0,
               after: float = 0.5) -> None:
    """db <- mid <- top <- leaf, each ready `after` s after its start; top ignores
    SIGTERM, so a stop of it takes its stop_timeout (`top_stop`)."""
    (dash,) = free_ports(1)
    shell = f'shell = "sleep {after}; echo up; exec sleep 600"\nreadiness = {{ log = "up" }}\n'
    write_stack(project, stack_header(dash)
                + f"[services.db]\n{shell}{db_extra}\n"
                + f'[services.mid]\n{shell}depends_on = ["db"]\n'
                + f'[services.top]\nshell = "trap \'\' TERM; sleep {after}; echo up; while '
                  f'true; do sleep 0.2; done"\nreadiness = {{ log = "up" }}\n'
                  f'depends_on = ["mid"]\nstop_timeout = {top_stop}\n'
                + f'[services.leaf]\n{shell}depends_on = ["top"]\n')


def state(project: Path, name: str) -> str:
    return str(registry(project)["services"][name]["state"])


def cascade_under_way(project: Path, starting: str) -> subprocess.Popen[str]:
    """slow_chain (each 1 s to come up) up, and `hd restart -s db --cascade` running,
    once `starting` is on its way up again."""
    from stackutil import HD_CLI

    slow_chain(project, after=1.0)
    hd(project, "up", "--detach", check=True, timeout=60)
    cascade = subprocess.Popen([*HD_CLI, "restart", "-s", "db", "--cascade"], cwd=project,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: state(project, starting) == "starting", 30, every=0.05,
                 what=f"{starting} restarting")
    except BaseException:
        hd(project, "down", timeout=60)
        cascade.communicate(timeout=60)
        raise
    return cascade


def test_a_stop_of_a_dependant_still_under_way_when_the_cascade_reaches_it_wins(
        project: Path) -> None:
    """`hd restart -s db --cascade`, then `hd stop -s top` while db and mid restart; top
    ignores SIGTERM, so its stop was still under way when the cascade reached it. The
    cascade restarted it: the stop said `top: stopped`, exit 0, the cascade exit 0, and
    top ran (adv32 t/1). The later stop wins."""
    cascade = cascade_under_way(project, "db")
    try:
        stop = hd(project, "stop", "-s", "top", timeout=60)
        out, _ = cascade.communicate(timeout=60)
        assert stop.returncode == 0 and "top: stopped" in stop.stdout, stop.stdout
        assert cascade.returncode == 1, out
        assert "top: stopped" in out and "'top' is stopped (stop requested, while this " \
            "one waited)" in out, out
        settle(project)
        assert state(project, "top") == "stopped", registry(project)["services"]["top"]
    finally:
        hd(project, "down", timeout=60)


def test_a_restart_whose_dependency_is_restarting_waits_for_it(project: Path) -> None:
    """`hd restart -s leaf` while its dependency top was being restarted (its slow stop
    under way): "not restarted: its dependency 'top' is stopping, so it could not start
    again (`hd start --service top`...)", exit 1 in 0.1 s, and leaf never restarted
    (adv32 t/2)."""
    import subprocess

    from stackutil import HD_CLI

    slow_chain(project, top_stop=2.0)
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        before = pid(project, "leaf")
        top = subprocess.Popen([*HD_CLI, "restart", "-s", "top"], cwd=project, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for(lambda: state(project, "top") == "stopping", 30, every=0.05,
                 what="top's stop under way")
        leaf = hd(project, "restart", "-s", "leaf", timeout=60)
        assert leaf.returncode == 0, leaf.stdout + leaf.stderr
        assert "not restarted" not in leaf.stdout + leaf.stderr
        assert "leaf: running" in leaf.stdout and pid(project, "leaf") != before
        top.communicate(timeout=60)
        assert top.returncode == 0
    finally:
        hd(project, "down", timeout=60)


def test_a_cascade_cut_short_by_a_stop_is_answered_once_the_stop_is_over(
        project: Path) -> None:
    """`hd restart -s db --cascade`, then a whole-stack `hd stop` while mid restarts: the
    cascade answered `db: stopping` and "db did not come up" of a db that had come up and
    was being stopped (adv32 t/3). It answers once the stop is over."""
    cascade = cascade_under_way(project, "mid")
    try:
        hd(project, "stop", check=True, timeout=60)
        out, _ = cascade.communicate(timeout=60)
        assert cascade.returncode == 1, out
        assert ": stopping" not in out and "did not come up" not in out, out
        assert "db: stopped" in out and "mid: stopped" in out, out
    finally:
        hd(project, "down", timeout=60)


def test_a_crash_cascade_met_by_a_stack_restart_restarts_nothing_twice(
        project: Path) -> None:
    """db (restart_cascades) killed -9, a whole-stack `hd restart` 0.2 s later: it
    answered exit 0 with every pid, and a second later the crash's cascade restarted top
    and leaf again, the pids printed dead (adv32 t/5)."""
    import re

    slow_chain(project, db_extra="restart_cascades = true\n", top_stop=1.0)
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        for gap in (0.1, 0.3):
            os.kill(pid(project, "db"), signal.SIGKILL)
            time.sleep(gap)
            done = hd(project, "restart", timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
            answered = {m[0]: int(m[1]) for m in
                        re.findall(r"^(\w+): running \(pid (\d+)\)", done.stdout, re.M)}
            assert set(answered) == {"db", "mid", "top", "leaf"}, done.stdout
            time.sleep(3)  # what a cascade carried out late would have restarted by now
            settle(project)
            now = {name: pid(project, name) for name in answered}
            assert now == answered, (answered, now)
    finally:
        hd(project, "down", timeout=60)


def test_a_cascade_held_at_a_link_does_not_go_on_above_it(project: Path) -> None:
    """db <- mid <- top <- leaf, mid stopped on purpose: `restart -s db --cascade` left
    top running (its dependency mid stopped), then restarted leaf, which depends only
    on top, which it had not restarted (adv32 t's notes); a stop of mid arriving during
    the cascade ended it at mid instead. The cascade goes on only from what it
    restarted: leaf keeps its process and the answer says why."""
    dash, db, mid, top, leaf = free_ports(5)
    write_stack(project, stack_header(dash) + toy_service("db", db)
                + toy_service("mid", mid, depends_on=["db"])
                + toy_service("top", top, depends_on=["mid"])
                + toy_service("leaf", leaf, depends_on=["top"]))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        hd(project, "stop", "-s", "mid", check=True)
        before = {n: pid(project, n) for n in ("db", "top", "leaf")}
        said = hd(project, "restart", "-s", "db", "--cascade", timeout=60)
        assert said.returncode == 1, said.stdout + said.stderr
        assert pid(project, "db") != before["db"]
        assert pid(project, "top") == before["top"]
        assert pid(project, "leaf") == before["leaf"], said.stdout
        assert "leaf: running" in said.stdout and "not restarted" in said.stdout.split(
            "leaf: running", 1)[1].splitlines()[0], said.stdout
        assert registry(project)["services"]["mid"]["state"] == "stopped"
    finally:
        hd(project, "down", check=True)


def test_a_completed_job_stopped_during_a_cascade_is_not_run_again(project: Path) -> None:
    """store (1 s to come back) <- fill (a job, completed) and app: `hd restart -s store
    --cascade`, and `hd stop -s fill` while store restarts. The later stop wins, as for
    a running service: fill does not run again (it did, adv32 t's notes), and the
    cascade's answer names it as it is (it left it out)."""
    from stackutil import HD_CLI

    dash, store, app = free_ports(3)
    runs = project / "runs"
    job = (f'[services.fill]\nkind = "job"\ncommand = ["{PY}", "-c", "import sys; '
           f'open(sys.argv[1], \'a\').write(\'run\\\\n\')", "{runs}"]\ndepends_on = ["store"]\n')
    write_stack(project, stack_header(dash)
                + toy_service("store", store, "--delay", "1", readiness={"http": "/healthz"})
                + job + toy_service("app", app, depends_on=["store"]))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        assert count(runs) == 1
        cascade = subprocess.Popen([*HD_CLI, "restart", "-s", "store", "--cascade"],
                                   cwd=project, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        wait_for(lambda: state(project, "store") == "starting", 30, every=0.05,
                 what="store restarting")
        hd(project, "stop", "-s", "fill", check=True, timeout=60)
        out, _ = cascade.communicate(timeout=60)
        settle(project)
        assert count(runs) == 1, out
        assert state(project, "fill") == "stopped", out
        assert "fill: completed" in out, out  # named, as it is: not run again
        assert state(project, "app") == "running"
    finally:
        hd(project, "down", timeout=60)


def test_a_double_clicked_cascade_answers_its_origin_once_the_second_restart_is_over(
        project: Path) -> None:
    """Two `hd restart -s db --cascade` a moment apart make one more restart of db (as
    documented), and `hd stop -s mid` while the cascades are at mid. The first
    cascade's answer was read while db went through the second one's restart: `db:
    starting`, "db did not come up: another command (a stop, `hd down`) changed the
    stack", though nothing had stopped db and it came up (adv38 m/1). (Each cascade
    now goes on past db once db's second restart is over: adv48 A/4.)"""
    from stackutil import HD_CLI

    slow_chain(project, top_stop=0.5, after=1.0)
    hd(project, "up", "--detach", check=True, timeout=60)
    cascades: list[subprocess.Popen[str]] = []
    try:
        for _ in range(2):
            cascades.append(subprocess.Popen(
                [*HD_CLI, "restart", "-s", "db", "--cascade"], cwd=project, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            time.sleep(0.03)
        wait_for(lambda: state(project, "mid") in ("stopping", "stopped", "pending",
                                                   "starting"), 30, every=0.02,
                 what="the cascades at mid")
        hd(project, "stop", "-s", "mid", check=True, timeout=60)
        for cascade in cascades:
            out, _ = cascade.communicate(timeout=60)
            assert cascade.returncode == 1, out  # mid stopped meanwhile
            assert "db: running" in out and "did not come up" not in out, out
            assert "mid: stopped" in out, out
    finally:
        for cascade in cascades:
            if cascade.poll() is None:
                cascade.kill()
                cascade.communicate()
        hd(project, "down", timeout=60)


def test_a_cascade_that_fails_at_its_first_service_names_what_it_did_not_reach(
        project: Path) -> None:
    """x <- y, x failing on its restart: `hd restart -s x --cascade` said only `x:
    failed`, exit 1; y, left running on a failed dependency, was not named, where a
    cascade ending further on names what it did not reach (adv38 m/2)."""
    (dash,) = free_ports(1)
    flag = project / "flag"
    write_stack(project, stack_header(dash)
                + f'[services.x]\nshell = "test -e {flag} && exit 3; sleep 0.2; echo up; '
                  'exec sleep 600"\nreadiness = { log = "up" }\n'
                + '[services.y]\nshell = "echo up; exec sleep 600"\nreadiness = { log = "up" }'
                  '\ndepends_on = ["x"]\n')
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        before = pid(project, "y")
        flag.touch()
        said = hd(project, "restart", "-s", "x", "--cascade", timeout=60)
        assert said.returncode == 1, said.stdout + said.stderr
        assert "x: failed" in said.stdout, said.stdout
        assert f"y: running (pid {before}) — not restarted: the cascade from x ended at " \
            "'x' (failed)" in said.stdout, said.stdout
        assert pid(project, "y") == before
    finally:
        hd(project, "down", timeout=60)


def test_two_restarts_at_once_each_answer_the_pids_that_run(project: Path) -> None:
    """Two `hd restart -s store` at once (restart_cascades): both exit 0, and one named
    the first new store (and app), which the second restart had replaced two seconds
    before that answer was printed (adv44 L/3). Each answer names what runs."""
    import re

    from stackutil import HD_CLI, alive

    cascading_stack(project, True)
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        runs = [subprocess.Popen([*HD_CLI, "restart", "-s", "store", "--project-root",
                                  str(project)], cwd=project, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                for _ in range(2)]
        outs = [r.communicate(timeout=120)[0] for r in runs]
        assert all(r.returncode == 0 for r in runs), outs
        for out in outs:
            for name, said in re.findall(r"^(store|app): running \(pid (\d+)\)", out, re.M):
                assert alive(int(said)), (name, said, outs)
    finally:
        hd(project, "down", timeout=60)

