"""Three lifecycle commands overlapping (a whole-stack restart, a start and a stop from
three terminals), each waited into place by the state it races, not by a fixed sleep.
The daemon keeps one record per waiting command of what was stopped meanwhile; these
records must stay each command's own."""

from __future__ import annotations

import subprocess
from pathlib import Path

from stackutil import (
    HD_CLI,
    free_ports,
    hd,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)


def state(project: Path, name: str) -> str:
    return str(registry(project)["services"][name]["state"])


def test_a_stack_restart_a_start_and_a_stop_each_answer_and_the_daemon_goes_on(
        project: Path) -> None:
    """`hd restart` (app ignores SIGTERM: its stop half lasts 2 s), `hd start -s db`
    while app is stopping (it waits for the restart's stop), `hd stop -s app` once db is
    coming back. The daemon answered the restart 500 `ValueError: list.remove(x): x not
    in list`: one command's empty record of stops was taken for another's, equal one.
    The restart was then never marked over, and a later `hd start -s flaky` waited for
    it for ever (adv34 v/1)."""
    dash, db, app = free_ports(3)
    write_stack(project, stack_header(dash)
                + toy_service("db", db, "--delay", "1.0")
                + toy_service("app", app, "--delay", "1.0", "--ignore-term",
                              depends_on=["db"], stop_timeout=2)
                + '[services.flaky]\nshell = "sleep 0.3; exit 3"\nblocking = false\n'
                  'auto_restart = false\n')
    hd(project, "up", "--detach", timeout=60)
    try:
        restart = subprocess.Popen([*HD_CLI, "restart"], cwd=project, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for(lambda: state(project, "app") == "stopping", 30, every=0.02,
                 what="app stopping for the restart")
        start = subprocess.Popen([*HD_CLI, "start", "-s", "db"], cwd=project, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for(lambda: state(project, "db") == "starting", 30, every=0.02,
                 what="db coming back in the restart's start half")
        stop = hd(project, "stop", "-s", "app", timeout=60)
        said, _ = restart.communicate(timeout=60)
        started, _ = start.communicate(timeout=60)
        assert "Traceback" not in said + started + stop.stdout + stop.stderr
        assert "ValueError" not in said and "answered 500" not in said, said  # not a pid's 500
        assert start.returncode == 0, started
        assert stop.returncode == 0 and state(project, "app") == "stopped", stop.stdout
        # The daemon is not left waiting for a restart that never ends.
        flaky = hd(project, "start", "-s", "flaky", timeout=30)
        assert flaky.returncode == 1 and "flaky" in flaky.stdout + flaky.stderr, flaky
    finally:
        hd(project, "down", timeout=60)


def test_two_stack_restarts_overlapping_both_answer_the_stack_running(project: Path) -> None:
    """`hd restart` twice, the second while the first's start half brings db back (a
    double-clicked "restart all"): the first answered every service `stopped (restart
    requested, while this one waited)`, exit 1, advising `hd start`, while the second
    brought them all up (adv34 w/1). Each now answers the stack as it ends: running."""
    dash, db, web = free_ports(3)
    write_stack(project, stack_header(dash) + toy_service("db", db, "--delay", "1.0")
                + toy_service("web", web, depends_on=["db"]))
    hd(project, "up", "--detach", timeout=60)
    try:
        first = subprocess.Popen([*HD_CLI, "restart"], cwd=project, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for(lambda: state(project, "db") == "starting", 30, every=0.02,
                 what="db coming back in the first restart's start half")
        second = hd(project, "restart", timeout=60)
        said, _ = first.communicate(timeout=60)
        for out, code in ((said, first.returncode), (second.stdout + second.stderr,
                                                     second.returncode)):
            assert code == 0, out
            assert "db: running (pid" in out and "web: running (pid" in out, out
            assert "stopped" not in out, out
    finally:
        hd(project, "down", timeout=60)
