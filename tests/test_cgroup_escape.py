"""A child that moves itself out of its service's cgroup is still the service's.

Container runtimes and `systemd-run --scope` move a process to another cgroup; the
process keeps the HIPPODROME_RUN mark it inherited. In cgroup mode, stopping a service
ended only its cgroup's members, so such a child outlived `hd stop`, `hd restart` and
`hd down`. On a machine where the child may not move (no cgroup v2 write access) it
stays in the service's process group, and the same promises hold.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
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


def start(project: Path, *flags: str) -> tuple[Path, int]:
    dash, port = free_ports(2)
    pids = project / "pids"
    write_stack(project, stack_header(dash) + escaper_service(
        "mig", port, "--leave-cgroup", *flags, "--pids", str(pids), readiness={"http": "/"},
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


def test_an_orphan_that_left_its_cgroup_under_another_services_mark_ends_at_down(
        project: Path, strays: list[int]) -> None:
    """It left the cgroup (or its group) and its parent, and took the run's mark for a
    service the stack lacks: no service's stop can reach it, and in cgroup mode the
    daemon does not adopt it. `hd down` ends what carries the run's mark, whichever
    service it names."""
    _, child = start(project, "--remark", "ghost", "--orphan")
    strays.append(child)
    wait_for(lambda: b"/ghost" in environment(child), 10, what="the child's new mark")
    hd(project, "stop", "--service", "mig", check=True)
    said = hd(project, "down", timeout=60)
    assert said.returncode == 0, said.stdout + said.stderr
    wait_for(lambda: not alive(child), 10, what=f"pid {child} ended by `hd down`")


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Pids of the children with no mark: the registry sweep cannot find them, so a
    failing test ends them here."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"while True" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def environment(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])


@pytest.mark.parametrize("how", [("stop", "--service", "mig"),
                                 ("restart", "--service", "mig"), ("down",)])
def test_a_child_that_also_cleared_its_environment_ends_with_its_service(
        project: Path, how: tuple[str, ...], strays: list[int]) -> None:
    """Out of the cgroup (or, without cgroups, its group: setsid) and with no mark left
    (an empty environment), it is still its parent's child: found as a descendant."""
    _, child = start(project, "--clear-env")
    strays.append(child)
    wait_for(lambda: environment(child) == b"", 10, what="the child's empty environment")
    assert os.getsid(child) == child
    said = hd(project, *how, timeout=60)
    assert said.returncode == 0, said.stdout + said.stderr
    wait_for(lambda: not alive(child), 10, what=f"pid {child} ended by `hd {how[0]}`")
    hd(project, "down", check=True)


def adopted_orphan(project: Path, strays: list[int]) -> tuple[int, int]:
    """A service's child that left its group and cleared its environment, then lost its
    parent: (its pid, the daemon's, which adopted it). Process-group mode only."""
    _, child = start(project, "--clear-env", "--orphan")
    strays.append(child)
    if registry(project)["daemon"]["mode"] == "cgroup":
        pytest.skip("cgroup mode: no subreaper; run with HIPPODROME_CGROUP=off")
    daemon = registry(project)["daemon"]["pid"]
    wait_for(lambda: environment(child) == b"" and parent(child) == daemon, 10,
             what="the orphan adopted by the daemon")
    return child, daemon


def test_an_orphan_that_left_everything_is_adopted_and_ended_at_down(
        project: Path, strays: list[int]) -> None:
    """Its parent exits too: nothing links it to its service any more, but in
    process-group mode the daemon is a child subreaper, so it is the daemon's own child,
    ended once the stack stops. (In cgroup mode it goes to init, as the README says: the
    subreaper would cost the daemon ctypes; CI runs this file in both modes.)"""
    child, daemon = adopted_orphan(project, strays)
    hd(project, "down", check=True, timeout=60)
    assert not alive(child), f"pid {child} outlived `hd down`"
    log = (project / ".hippodrome" / "daemon.log").read_text()
    assert "ending 1 process(es) that left their service" in log, log[-2000:]


def test_an_adopted_orphan_ends_with_a_killed_daemon(project: Path, strays: list[int]) -> None:
    """The same orphan, and then `kill -9` of the daemon: the guard ended the run's marks
    and cgroups, and the orphan, with neither, ran on (adv30 p/1). The daemon names each
    orphan it adopts to its guard (at the next change of state or housekeeping tick),
    and the guard ends it, if it is still the process that was named."""
    child, daemon = adopted_orphan(project, strays)
    import time

    from hippo_tasks.daemon.engine import HOUSEKEEPING_S

    time.sleep(HOUSEKEEPING_S + 0.5)  # a housekeeping tick at the latest has named it
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(child), 10, what="the orphan ended by the guard")


@pytest.mark.parametrize("every", ["0.02", "0.005"])
@pytest.mark.parametrize("how", [("stop", "--service", "hop"), ("down",)])
def test_a_process_that_keeps_re_forking_itself_is_ended(project: Path,
                                                         how: tuple[str, ...],
                                                         every: str) -> None:
    """A child that ignores SIGTERM and every 20 ms forks a successor into a new process
    group (out of its cgroup too, where it may) and exits, keeping its mark: `hd stop`
    said `stopped` and `hd down` `stack stopped`, and it went on, under init (adv35
    x/1). A reading of /proc listed it, then found it gone, and its child, born after
    the listing, was in no reading at all once the machine was busy. Every 5 ms, faster
    than a reading and the SIGKILL after it, a successor was born each time in between,
    and it outlived `hd stop` 7 times in 9 (adv44 L/2)."""
    dash, port = free_ports(2)
    pids = project / "pids"
    write_stack(project, stack_header(dash) + escaper_service(
        "hop", port, "--hop", "--hop-every", every, "--pids", str(pids),
        readiness={"http": "/"}, stop_timeout=1))
    hd(project, "up", "--detach", check=True)
    try:
        wait_for(lambda: pids.read_text().count("hop ") >= 10, 10, what="the hopping child")
        said = hd(project, *how, timeout=60)
        assert said.returncode == 0, said.stdout + said.stderr
        written = pids.stat().st_size
        time.sleep(1.0)  # it writes a line each 20 ms while it lives
        assert pids.stat().st_size == written, pids.read_text().splitlines()[-3:]
    finally:
        (project / "pids.stop").touch()  # a survivor ends itself within 20 ms
        hd(project, "down", timeout=60)


@pytest.mark.parametrize("how", ["down", "kill -9 of the daemon"])
def test_a_process_in_the_runs_own_cgroup_ends_with_the_stack(project: Path, how: str,
                                                              strays: list[int]) -> None:
    """A child that moved itself into the run's own cgroup (the parent of its service's),
    cleared its environment and lost its parent: no service's scope holds it, and every
    `hd down` left it running, and the run's cgroup with it (adv35 x/2). The cgroup,
    named for the run, says it is ours: it is ended when the stack is down, by the
    daemon or, after a `kill -9` of it, by its guard."""
    _, child = start(project, "--clear-env", "--orphan", "--into-run-cgroup")
    strays.append(child)
    run_cgroup = Path(f"/proc/{child}/cgroup").read_text().strip().split(":", 2)[2]
    if registry(project)["daemon"]["mode"] == "cgroup":
        assert Path(run_cgroup).name.startswith("hippodrome-"), run_cgroup
    if how == "down":
        hd(project, "down", check=True, timeout=60)
        assert not alive(child), f"pid {child} outlived `hd down`"
        return
    daemon = registry(project)["daemon"]
    if daemon["mode"] != "cgroup":
        # Process-group mode: outside the run's cgroup (there is none), it is an orphan
        # the daemon adopted, named to the guard at the next housekeeping tick (the
        # README's 2 s window; test_an_adopted_orphan_ends_with_a_killed_daemon).
        from hippo_tasks.daemon.engine import HOUSEKEEPING_S

        time.sleep(HOUSEKEEPING_S + 0.5)
    os.kill(daemon["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(child), 10, what=f"pid {child} ended by the guard")
    hd(project, "down", timeout=60)
