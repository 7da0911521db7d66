"""`invoke COMMAND` and `hd COMMAND` do and say the same, on a running stack.

The suite drives most commands through `hd` (tests/stackutil.py says why); the README's
first command is `invoke up`. Here each command people repeat runs through both, on the
same stack, and the two answers (exit status, what is printed, once pids and times are
masked) must match: a difference in how either reads its flags or reports shows here.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import PY, REPO, free_ports, hd, registry, stack_header, toy_service, write_stack

VARYING = re.compile(r"\b(pid|daemon pid) \d+|\d+(\.\d+)?\s?(s|ms|MB)\b|\d\d:\d\d:\d\d(\.\d+)?|"
                     r"\"(pid|started_at|since|uptime_s|ts|at|seconds)\": [0-9.e+-]+")


def masked(text: str) -> str:
    return VARYING.sub("#", text)


@pytest.fixture
def running(project: Path) -> Iterator[Path]:
    dash, a, b = free_ports(3)
    write_stack(project, stack_header(dash) + toy_service("db", a, "--say", "db up")
                + toy_service("web", b, "--say", "web up", depends_on=["db"]))
    hd(project, "up", "--detach", check=True, via_invoke=True)
    yield project
    hd(project, "down", via_invoke=True)


def both(root: Path, *args: str) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    ran = [hd(root, *args, via_invoke=via) for via in (True, False)]
    return tuple((r.returncode, masked(r.stdout), masked(r.stderr))  # type: ignore[return-value]
                 for r in ran)


@pytest.mark.parametrize("args", [
    ("status",), ("status", "--json"), ("control.status", "-j"),
    ("logs", "--service", "web", "--lines", "5"), ("logs", "-s", "db,web", "-l", "3"),
    ("logs", "--service", "nope"), ("status", "--bogus"), ("restart", "--service", "nope"),
])
def test_a_read_or_a_refusal_is_the_same_through_both(running: Path,
                                                      args: tuple[str, ...]) -> None:
    through_invoke, through_hd = both(running, *args)
    assert through_invoke[0] == through_hd[0], (through_invoke, through_hd)
    if args[0] == "status" and "--bogus" in args:  # each parser words it its own way
        assert "--bogus" in through_invoke[2] and "--bogus" in through_hd[2]
        return
    assert through_invoke == through_hd


def test_actions_through_invoke_do_what_they_do_through_hd(running: Path) -> None:
    for verb in ("stop", "start", "restart"):
        for via in (True, False):
            before = registry(running)["services"]["web"].get("pid")
            done = hd(running, verb, "--service", "web", via_invoke=via)
            assert done.returncode == 0, (verb, via, done.stdout, done.stderr)
            assert masked(done.stdout) == masked(
                hd(running, verb, "--service", "web", via_invoke=not via).stdout) \
                or verb == "restart", (verb, via)
            after = registry(running)["services"]["web"]
            assert after["state"] == ("stopped" if verb == "stop" else "running"), after
            if verb == "restart":
                assert after["pid"] != before
    cascade = hd(running, "restart", "--service", "db", "--cascade", via_invoke=True)
    assert cascade.returncode == 0 and "web" in cascade.stdout, cascade.stdout
    status = json.loads(hd(running, "status", "--json", via_invoke=True).stdout)
    assert {s["name"]: s["state"] for s in status["services"]} == {"db": "running",
                                                                   "web": "running"}


def test_down_and_up_again_through_invoke(running: Path) -> None:
    down = hd(running, "down", via_invoke=True)
    assert down.returncode == 0, down.stderr
    assert not (running / ".hippodrome" / "registry.json").exists() or \
        not registry(running).get("daemon")
    up = hd(running, "up", "--detach", via_invoke=True)
    assert up.returncode == 0 and "stack ready" in up.stdout + up.stderr, (up.stdout,
                                                                          up.stderr)


@pytest.mark.parametrize("args", [("status", "--help"), ("events.replay", "-h"),
                                  ("why", "--help"), ("why", "-h"), ("down", "--help")])
def test_help_after_a_task_is_its_help_through_both(project: Path,
                                                    args: tuple[str, ...]) -> None:
    """`TASK --help --project-root DIR` (the helper adds the folder): through hd it was
    "No idea what '--project-root' is", and through invoke `why --help` asked the
    daemon about a service named '--help'. Each parser words its usage its own way."""
    for via in (True, False):
        out = hd(project, *args, via_invoke=via)
        assert out.returncode == 0, (via, out.stdout, out.stderr)
        assert out.stdout.startswith("Usage: ") and args[0] in out.stdout, (via, out.stdout)
        assert "--project-root" in out.stdout


def test_closed_and_full_outputs_end_invoke_as_they_end_hd(project: Path) -> None:
    """`invoke up --detach >&-` started the stack and exited 1 with a traceback;
    `invoke status > /dev/full` and `invoke status | head -0` were tracebacks and exit 1,
    where hd says 120 with a sentence and 141 (adv43 V/2, V/3, V/7)."""
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("db", a))
    invoke = f"{PY} -m invoke -r {REPO}"
    try:
        for line, code, said in [
                (f"{invoke} up --detach >&-", 0, ""),
                (f"{invoke} status > /dev/full", 120,
                 "hippodrome: the output could not be written: [Errno 28] No space left"),
                (f"{invoke} status | head -c 0; exit ${{PIPESTATUS[0]}}", 141, ""),
                (f"{invoke} logs > /dev/full", 120, "the output could not be written")]:
            ran = subprocess.run(["bash", "-c", line], cwd=project, capture_output=True,
                                 text=True, timeout=120)
            assert ran.returncode == code and "Traceback" not in ran.stderr, (line, ran.stderr)
            assert said in ran.stderr, (line, ran.stderr)
        assert registry(project)["services"]["db"]["state"] == "running"
    finally:
        hd(project, "down")


CTRL_C_IN_PARSE = """
import os, signal, sys
from invoke.program import Program
parse_core = Program.parse_core
def interrupted(self, argv):
    os.kill(os.getpid(), signal.SIGINT)  # a Ctrl+C while invoke reads the line
    return parse_core(self, argv)
Program.parse_core = interrupted
sys.argv[0] = "hd"
from hippo_tasks.tasks.program import cli
cli()
"""


def test_a_ctrl_c_while_invoke_parses_is_130_and_said(project: Path) -> None:
    """invoke's Program turns a KeyboardInterrupt into exit 1 with no word: a Ctrl+C
    in the ~0.1 s hd hands a line to it ended `hd why db` that way (adv43 V/5, 5/60)."""
    ran = subprocess.run([PY, "-c", CTRL_C_IN_PARSE, "why", "db", "--project-root",
                          str(project)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 130, (ran.returncode, ran.stdout, ran.stderr)
    assert ran.stderr == "hippodrome: interrupted (Ctrl+C)\n", ran.stderr
