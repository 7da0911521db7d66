"""`up --detach` returns once the stack's start is over, whatever ended it.

It used to wait for every service to be ready: a stack with no services, or one where
`hd stop` (from another terminal) stopped a service while it started, kept `up` waiting
forever. Stopping a dependency on purpose must not fail its dependants either: a failed
blocking service ends the whole stack, which nobody asked for.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

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


def test_a_stack_with_no_services_is_up_at_once(project: Path) -> None:
    dash, = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.off]\ncommand = ["sleep", "60"]\n'
                "enabled = false\n")
    up = hd(project, "up", "--detach", timeout=60)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "stack ready" in up.stdout and "no services" in up.stdout, up.stdout
    assert alive(registry(project)["daemon"]["pid"])
    hd(project, "down", check=True)


@pytest.mark.parametrize("stop", [["stop"], ["stop", "--service", "a"],
                                  ["stop", "--service", "b"]])
def test_a_stop_while_up_waits_ends_the_wait_not_the_stack(project: Path,
                                                          stop: list[str]) -> None:
    dash, a, b = free_ports(3)
    marks = project / "marks"
    write_stack(project, stack_header(dash)
                + toy_service("a", a, "--delay", "1.5", "--marker", str(marks),
                              readiness={"http": "/"})
                + toy_service("b", b, "--delay", "1", depends_on=["a"],
                              readiness={"http": "/"}))
    up = subprocess.Popen([*HD_CLI, "up", "--detach", "--project-root", str(project)],
                          cwd=project, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"})
    try:
        wait_for(marks.exists, 30, what="service a starting")
        said = hd(project, *stop, timeout=60)
        assert said.returncode == 0, said.stdout + said.stderr
        out, err = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert up.returncode == 0, out + err
    assert "stack ready" in out and "not running" in out, out
    status = json.loads(hd(project, "status", "--json", check=True).stdout)
    states = {r["name"]: (r["state"], r["reason"]) for r in status["services"]}
    stopped = {"a", "b"} if stop == ["stop"] else {stop[-1]}
    if stop[-1] == "a":
        stopped.add("b")  # waits on a: stopped with it, not failed
        assert "dependency 'a' is stopped" in states["b"][1], states
    for name in ("a", "b"):
        assert states[name][0] == ("stopped" if name in stopped else "running"), states
    assert alive(registry(project)["daemon"]["pid"]), "the stack was ended"
    hd(project, "down", check=True)
