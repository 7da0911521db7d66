"""The webhook's answer when Hippodrome itself stops or restarts the target under an
event: it blamed the service ("closed the connection without answering, perhaps failing
while it handled the event"), and during a restart advised `hd start` (adv35 y/2)."""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from rawhttp import json_request
from stackutil import (
    HD_CLI,
    PY,
    TOYS,
    free_ports,
    hd,
    registry,
    stack_header,
    wait_for,
    write_stack,
)

SINK = str(TOYS / "event_sink.py")


def send(dash: int, detail_type: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"detail-type": detail_type, "detail": {}}).encode()
    status, said = json_request(dash, body)
    return status, said


def stack_with(project: Path, flags: str, stop: str = "", more: str = "",
               **settings: Any) -> int:
    dash, port = free_ports(2)
    sink = shlex.join([PY, SINK, "--port", str(port), "--record", str(project / "got.jsonl"),
                       *flags.split()])
    write_stack(project, stack_header(dash, **settings)
                + f'[services.svc]\nshell = {json.dumps(stop + "exec " + sink)}\n'
                  f'port = {port}\nstop_timeout = 2\n{more}\n'
                + '[[routes]]\ndetail_type_prefix = "Svc."\nservice = "svc"\n'
                  'path = "/events"\n')
    hd(project, "up", "--detach", timeout=60, check=True)
    return dash


@pytest.mark.parametrize(("argv", "did"), [
    (["-s", "svc"], "a restart of it by Hippodrome"),
    # the stack's: its stop half was said as "a stop of it by Hippodrome" (adv46 H/5)
    ([], "a restart of the stack by Hippodrome"),
], ids=["service", "stack"])
def test_an_event_under_way_when_hd_restarts_its_target_says_so(
        project: Path, argv: list[str], did: str) -> None:
    dash = stack_with(project, "--slow 30")
    try:
        box: list[tuple[int, dict[str, Any]]] = []
        sender = threading.Thread(target=lambda: box.append(send(dash, "Svc.Slow")))
        sender.start()
        wait_for(lambda: (project / "got.jsonl").exists(), 30, every=0.02,
                 what="the event at the target")
        restart = hd(project, "restart", *argv, timeout=60)
        sender.join(60)
        assert restart.returncode == 0, restart
        status, said = box[0]
        assert status in (502, 503), said
        assert f"{did} ended its process while it handled the event" in said["error"], said
        assert "perhaps failing" not in said["error"], said
    finally:
        hd(project, "down", timeout=60)


def restarting(project: Path, argv: list[str], state: str) -> subprocess.Popen[str]:
    """`hd restart ARGV` under way, once svc is in `state` for it."""
    restart = subprocess.Popen([*HD_CLI, "restart", *argv], cwd=project, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for(lambda: registry(project)["services"]["svc"]["state"] == state, 30,
             every=0.02, what=f"svc {state} for `hd restart {' '.join(argv)}`")
    return restart


@pytest.mark.parametrize(("argv", "doing"), [
    (["-s", "svc"], "it is stopping (a restart is under way)"),
    # the whole stack: its services stop first, and an event then was told "it is
    # stopped ... (start it: `hd start --service svc`)" (adv43 E/3)
    ([], "(a restart of the stack is under way)"),
], ids=["service", "stack"])
def test_an_event_during_a_restart_is_not_told_to_start_the_service(
        project: Path, argv: list[str], doing: str) -> None:
    dash = stack_with(project, "", stop="trap '' TERM; ")  # its stop takes stop_timeout
    try:
        restart = restarting(project, argv, "stopping")
        status, said = send(dash, "Svc.During")
        restart.communicate(timeout=60)
        assert status == 503, said
        assert f"{doing}, so nothing was sent to its port (send it again once it is " \
               "running" in said["error"], said
        assert "hd start" not in said["error"], said
    finally:
        hd(project, "down", timeout=60)


@pytest.mark.parametrize(("argv", "doing"), [
    (["-s", "svc"], "(a restart is under way)"),
    # a whole-stack restart's start half: it said "(a start is under way)", what a plain
    # `hd start` says (adv49 B/2)
    ([], "(a restart of the stack is under way)"),
], ids=["service", "stack"])
def test_an_event_refused_by_a_restart_not_yet_listening_is_said_not_sent(
        project: Path, argv: list[str], doing: str) -> None:
    """The restarted process starting, not listening yet: the refused connection was
    said as "a restart of it by Hippodrome ended its process while it handled the event
    ... it may have acted on it", 4-10 times a restart, though nothing was read (adv43
    E/1)."""
    (project / "go").write_text("")
    dash = stack_with(project, "", stop=f"while [ ! -e {shlex.quote(str(project / 'go'))} ]; "
                      "do sleep 0.05; done; ",
                      more='readiness = { http = "/healthz" }\nstart_timeout = 60\n')
    try:
        (project / "go").unlink()  # the next process waits before it listens
        restart = restarting(project, argv, "starting")
        status, said = send(dash, "Svc.Early")
        (project / "go").write_text("")
        out, _ = restart.communicate(timeout=60)
        assert restart.returncode == 0, out
        assert status == 503, said
        assert f"it is starting {doing} and does not listen yet, so nothing " \
               "was sent (send it again once it is running" in said["error"], said
        assert "ended its process" not in said["error"], said
    finally:
        hd(project, "down", timeout=60)


def test_an_event_for_a_target_in_its_restart_backoff_is_told_it_restarts_by_itself(
        project: Path) -> None:
    """A target that crashed: "it is backoff, so nothing was sent to its port (start it:
    `hd start --service svc`)", for a service Hippodrome was about to start again by
    itself (adv60 6)."""
    dash = stack_with(project, "", backoff_initial=30, backoff_max=30)
    try:
        body = json.dumps({"detail-type": "Svc.Crash", "exit": True}).encode()
        assert json_request(dash, body)[0] == 502  # it ended while handling it
        url = registry(project)["daemon"]["url"]

        def state() -> str:
            said = subprocess.run([*HD_CLI, "status", "--json", "--project-root",
                                   str(project)], capture_output=True, text=True,
                                  timeout=60, check=True).stdout
            return str(json.loads(said)["services"][0]["state"])

        wait_for(lambda: state() == "backoff", 30, what=f"svc in its backoff ({url})")
        status, said = send(dash, "Svc.Later")
        assert status == 503, said
        assert said["error"].endswith(
            "it is in a restart backoff (it ended and restarts by itself once its backoff "
            "is over), so nothing was sent to its port (send it again once it is running "
            "(`hd status` shows when))"), said
    finally:
        hd(project, "down", timeout=60)
