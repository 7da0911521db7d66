"""The command line in pipes and with typos, run as a user runs it (`python -m invoke`).

A reader that goes away (`invoke logs | head`) must end the task quietly: no
BrokenPipeError traceback, no "Exception ignored" at exit. The pipe's read end is closed
before the task writes anything, so every write fails: no race with the reader.
A misspelt service name names the stack's services and the closest one.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import HD_CLI, PY, REPO, free_ports, hd, stack_header, toy_service, write_stack

EXIT_PIPE_CLOSED = 141


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from hippo_tasks.registry.cleanup import force_down
    from hippo_tasks.registry.store import Registry

    root = tmp_path_factory.mktemp("pipes") / "proj"
    dash, a, b = free_ports(3)
    write_stack(root, stack_header(dash)
                + toy_service("controller", a, "--lines", "3000")
                + toy_service("worker", b, "--lines", "3000"))
    try:
        hd(root, "up", "--detach", check=True)
        yield root
    finally:
        hd(root, "down")
        force_down(Registry(root))


def into_closed_pipe(root: Path, *args: str) -> tuple[int, str]:
    """Run `invoke ARGS` with stdout a pipe whose reader has already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [PY, "-m", "invoke", "-r", str(REPO), *args, "--project-root", str(root)],
            cwd=root, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
            env={**os.environ, "NO_COLOR": "1"})
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("args", [("logs", "--lines", "2000"),
                                  ("logs", "--service", "worker", "--lines", "5"),
                                  ("doctor",), ("status",), ("status", "--json")])
def test_a_closed_pipe_ends_the_task_quietly(stack: Path, args: tuple[str, ...]) -> None:
    code, stderr = into_closed_pipe(stack, *args)
    assert stderr == "", stderr
    assert code == EXIT_PIPE_CLOSED


def test_head_reads_its_lines_and_nothing_else_is_said(stack: Path) -> None:
    """The real thing: `invoke logs | head -n 3` in a shell."""
    cmd = (f"{PY} -m invoke -r {REPO} logs --lines 3000 --project-root {stack} | head -n 3; "
           "echo \"status=${PIPESTATUS[0]}\"")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 and lines[-1] in ("status=0", f"status={EXIT_PIPE_CLOSED}")
    assert proc.stderr == ""


def test_a_misspelt_service_lists_the_stack_and_suggests_the_closest(stack: Path) -> None:
    for verb in ("restart", "stop", "start"):
        res = hd(stack, verb, "--service", "controler")
        assert res.returncode == 2, res
        assert res.stderr.strip() == (
            "hippodrome: unknown service 'controler' (services in this stack: controller, "
            "worker); did you mean 'controller'?")
    res = hd(stack, "restart", "--service", "zzz")
    assert res.returncode == 2
    assert res.stderr.strip() == ("hippodrome: unknown service 'zzz' (services in this stack: "
                                  "controller, worker)")
    res = hd(stack, "logs", "--service", "wroker")
    assert res.returncode == 2 and res.stderr.rstrip().endswith("did you mean 'worker'?")
    assert "Traceback" not in res.stderr
    for verb in ("restart", "logs"):  # a difference in case only scored nothing
        res = hd(stack, verb, "--service", "WORKER")
        assert res.returncode == 2 and res.stderr.rstrip().endswith("did you mean 'worker'?")


HD = HD_CLI  # `hd` as installed: its entry point leaves with os._exit once output is flushed


@pytest.mark.parametrize("args", [("status", "--json"), ("logs", "--lines", "2000"),
                                  ("--version",)])
def test_hd_writes_everything_or_says_why_not(stack: Path, args: tuple[str, ...]) -> None:
    """Whole output down a pipe (the exit skips the interpreter's teardown, not the
    flush); a reader gone is quiet; a full disk is one line on stderr and status 120."""
    full = subprocess.run([*HD, *args], cwd=stack, capture_output=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})
    assert full.returncode == 0 and full.stderr == b""
    if args[0] == "status":
        assert {s["name"] for s in json.loads(full.stdout)["services"]} == \
            {"controller", "worker"}
    if args[0] == "logs":
        assert len(full.stdout.splitlines()) >= 2000
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        closed = subprocess.run([*HD, *args], cwd=stack, stdout=write_end,
                                stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert (closed.returncode, closed.stderr) == (EXIT_PIPE_CLOSED, b"")
    with open("/dev/full", "wb") as devfull:
        disk = subprocess.run([*HD, *args], cwd=stack, stdout=devfull,
                              stderr=subprocess.PIPE, timeout=60)
    assert disk.returncode == 120
    assert disk.stderr.decode() == ("hippodrome: the output could not be written: "
                                    "[Errno 28] No space left on device\n")


@pytest.mark.parametrize(("args", "code"), [(("status",), 5), (("logs", "-s", "nosuch"), 2)])
def test_a_failure_keeps_its_code_when_stderr_is_full(tmp_path: Path, args: tuple[str, ...],
                                                      code: int) -> None:
    """With stderr on a full device, writing the failure's sentence failed too, and that
    replaced the failure's code with 120, the code for the command's own output
    failing (adv36 c/3): `hd status` with no daemon said 120, not 5."""
    dash, port = free_ports(2)
    write_stack(tmp_path, stack_header(dash) + toy_service("web", port))
    with open("/dev/full", "wb") as devfull:
        res = subprocess.run([*HD, *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=devfull, timeout=60)
    assert res.returncode == code
