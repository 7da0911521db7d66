"""A child that moves itself out of its service's cgroup is still the service's.

Container runtimes and `systemd-run --scope` move a process to another cgroup; the
process keeps the HIPPODROME_RUN mark it inherited. In cgroup mode, stopping a service
ended only its cgroup's members, so such a child outlived `hd stop`, `hd restart` and
`hd down`. On a machine where the child may not move (no cgroup v2 write access) it
stays in the service's process group, and the same promises hold.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from stackutil import (
    alive,
    escaper_service,
    free_ports,
    hd,
    registry,
    stack_header,
    wait_for,
    write_stack,
)


def start(project: Path) -> tuple[Path, int]:
    dash, port = free_ports(2)
    pids = project / "pids"
    write_stack(project, stack_header(dash) + escaper_service(
        "mig", port, "--leave-cgroup", "--pids", str(pids), readiness={"http": "/"},
        stop_timeout=2))
    hd(project, "up", "--detach", check=True)
    line = wait_for(lambda: [ln for ln in pids.read_text().splitlines()
                             if ln.split()[0] in ("left", "stayed")], 10,
                    what="the child moving out")[0]
    role, pid, _ = line.split()
    if registry(project)["daemon"]["mode"] == "cgroup":
        assert role == "left", "cgroup mode, but the child could not leave: a weaker test"
    return pids, int(pid)


@pytest.mark.parametrize("how", [("stop", "--service", "mig"),
                                 ("restart", "--service", "mig"), ("down",)])
def test_a_child_that_left_the_cgroup_ends_with_its_service(project: Path,
                                                           how: tuple[str, ...]) -> None:
    _, child = start(project)
    said = hd(project, *how, timeout=60)
    assert said.returncode == 0, said.stdout + said.stderr
    wait_for(lambda: not alive(child), 10, what=f"pid {child} ended by `hd {how[0]}`")
    hd(project, "down", check=True)
