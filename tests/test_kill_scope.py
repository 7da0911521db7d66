"""A stop's last step (supervision/process.kill_scope): SIGKILL until the service's
processes are gone, bounded; what outlives the bound is named, not passed over."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import free_ports, hd, registry, stack_header, wait_for, write_stack

from hippo_tasks.supervision.process import _left_at_deadline, given_up, kill_scope, outlived
from hippo_tasks.supervision.scope import RUN_ENV, Scope, start_ticks

FREEZER = Path("/sys/fs/cgroup/freezer")
MARK = f"killscope{os.getpid()}/svc"


@pytest.fixture
def frozen_cgroup() -> Iterator[Path]:
    """A cgroup v1 freezer group of this test's own: a task frozen there takes no
    signal, SIGKILL included, until it is thawed (`docker pause` freezes this way)."""
    if not os.access(FREEZER / "cgroup.procs", os.W_OK):
        pytest.skip("no writable cgroup v1 freezer here")
    group = FREEZER / f"hippodrome-test-{os.getpid()}"
    group.mkdir()
    try:
        yield group
    finally:
        (group / "freezer.state").write_text("THAWED")
        for _ in range(100):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def test_what_outlives_the_sigkill_bound_is_named(frozen_cgroup: Path) -> None:
    """A process that SIGKILL does not end within the bound (frozen here; on a loaded
    machine, a chain that re-forks faster than /proc is read, out of its cgroup: adv61
    F1) ended the stop as `stopped` with no word that anything was left."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            env={**os.environ, RUN_ENV: MARK})
    try:
        (frozen_cgroup / "cgroup.procs").write_text(str(proc.pid))
        (frozen_cgroup / "freezer.state").write_text("FROZEN")
        notes: list[str] = []
        began = time.monotonic()
        asyncio.run(kill_scope(None, Scope(MARK), limit=0.5, note=notes.append))
        assert time.monotonic() - began < 30  # bounded: it waited for no thaw
        assert start_ticks(proc.pid) is not None, "it died: a weaker test"
        assert len(notes) == 1 and f"pid {proc.pid}: they fork" in notes[0] \
            and "1 process(es) still ran 0.5s after SIGKILL" in notes[0], notes
    finally:
        (frozen_cgroup / "freezer.state").write_text("THAWED")
        proc.kill()
        proc.wait(10)


def test_only_what_outlived_every_sigkill_is_given_up(frozen_cgroup: Path) -> None:
    """The sweeps after the stops pass over what a stop gave up on (process.given_up):
    only a process that was there after the first round of SIGKILL and still is at the
    bound. A chain's newest link, born since (never signalled yet), is named but not
    given up: the sweep must still end it."""
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              env={**os.environ, RUN_ENV: MARK}) for _ in range(2)]
    try:
        for proc in procs:
            (frozen_cgroup / "cgroup.procs").write_text(str(proc.pid))
        (frozen_cgroup / "freezer.state").write_text("FROZEN")
        old, new = (proc.pid for proc in procs)
        ticks = start_ticks(old)
        assert ticks is not None
        notes: list[str] = []
        _left_at_deadline(Scope(MARK), 5, notes.append, {old: ticks})
        assert given_up([old, new]) == {old}
        assert f"2 process(es) still ran 5s after SIGKILL, pid {min(old, new)}, " \
            f"{max(old, new)}" in notes[0], notes
        assert outlived().keys() >= {old, new}  # both named by `hd down`
    finally:
        (frozen_cgroup / "freezer.state").write_text("THAWED")
        for proc in procs:
            proc.kill()
            proc.wait(10)
    assert not given_up([old, new])  # ended: another process may take the number


def test_hd_down_names_a_service_process_that_outlived_its_daemon(
        project: Path, frozen_cgroup: Path) -> None:
    """A process of the stack that SIGKILL cannot reach outlives `hd down`: the stop
    named it in the daemon's output only, and `down` said "stack stopped", exit 0. It
    names it now, by service and pid, and exits 1."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.web]\ncommand = ["sleep", "600"]\n'
                'readiness = "none"\nstop_timeout = 1\n')
    hd(project, "up", "--detach", check=True)
    pid = registry(project)["services"]["web"]["pid"]
    try:
        (frozen_cgroup / "cgroup.procs").write_text(str(pid))
        (frozen_cgroup / "freezer.state").write_text("FROZEN")
        down = hd(project, "down", timeout=60)
        assert start_ticks(pid) is not None, "it died: a weaker test"
        assert down.returncode == 1, down
        assert f"outlived its daemon and still run (web: pid {pid})" in down.stderr, down
        assert "stack stopped, daemon exited" in down.stdout, down
        # Named once, by the stop that gave up on it; the sweeps after it pass it over
        # (they took it up again, 7 s each, for nothing SIGKILL had not already tried).
        service_log = (project / ".logs" / "latest" / "web.log").read_text()
        assert f"still ran 5s after SIGKILL, pid {pid}:" in service_log, service_log
        daemon_log = (project / ".hippodrome" / "daemon.log").read_text()
        assert "shutting down" in daemon_log and str(pid) not in daemon_log, daemon_log
    finally:
        thaw_and_end(frozen_cgroup, pid)


MARKED = "sleep 601 &\necho $! > {child}"
ENV_CLEARED = "env -i sh -c 'echo $$ > {child}; exec sleep 601' &"
"""A child that cleared its environment (no mark) and stayed in its service's group."""


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_child_that_cleared_its_environment_and_outlived_down_is_named_till_it_ends(
        project: Path, frozen_cgroup: Path, mode: str) -> None:
    """Process-group mode (`off`): a child that cleared its environment (`env -i`)
    carries nothing of the stack once its service's group is gone, and frozen, it
    outlived `hd down`, which said "stack stopped", exit 0, while the daemon's output
    named it (adv64 F1); a second `down` said "nothing to stop" (F2). The daemon
    writes what outlived its stops down as it exits: each `down` names it, exit 1,
    until it has ended."""
    env = {"HIPPODROME_CGROUP": mode}
    pid = up_with_a_child(project, ENV_CLEARED, env)
    try:
        (frozen_cgroup / "cgroup.procs").write_text(str(pid))
        (frozen_cgroup / "freezer.state").write_text("FROZEN")
        first = hd(project, "down", timeout=90, env=env)
        assert start_ticks(pid) is not None, "it died: a weaker test"
        assert first.returncode == 1, first
        assert f"outlived its daemon and still run (web: pid {pid})" in first.stderr, first
        again = hd(project, "down", timeout=30, env=env)
        assert again.returncode == 1 and f"(web: pid {pid})" in again.stderr, again
    finally:
        thaw_and_end(frozen_cgroup, pid)
    wait_for(lambda: start_ticks(pid) is None, what="the thawed child ending")
    last = hd(project, "down", timeout=30, env=env)
    assert last.returncode == 0, last
    assert not (project / ".hippodrome" / "outlived.json").exists()


@pytest.mark.parametrize(("mode", "start"), [("auto", MARKED), ("off", MARKED),
                                             ("off", ENV_CLEARED)],
                         ids=["cgroup", "group", "group-env-cleared"])
def test_after_a_kill_9_of_the_daemon_every_down_names_a_survivor_till_it_ends(
        project: Path, frozen_cgroup: Path, mode: str, start: str) -> None:
    """The daemon killed, no list of what outlived it is written: the first `down`
    found the frozen child by the registry's mark and named it, cleared the registry,
    and the next `down` said "nothing to stop", exit 0 (adv65 F1). In process-group mode
    a child that cleared its environment carries no mark: every `down` said `stack
    stopped`, exit 0 (adv65 F2); it is a member of the group the registry recorded, in
    its session, whose leader is gone: named (never signalled), by each `down`."""
    env = {"HIPPODROME_CGROUP": mode}
    pid = up_with_a_child(project, start, env)
    try:
        (frozen_cgroup / "cgroup.procs").write_text(str(pid))
        (frozen_cgroup / "freezer.state").write_text("FROZEN")
        os.kill(registry(project)["daemon"]["pid"], signal.SIGKILL)
        for n in range(2):
            down = hd(project, "down", timeout=60, env=env)
            assert start_ticks(pid) is not None, "it died: a weaker test"
            assert down.returncode == 1 and f"(web: pid {pid})" in down.stderr, down
            # The lines above the last one said "stopped leftover 'web' (pids ..., N)",
            # "nothing to clean" and "nothing to stop" of the process it then named
            # (adv65 F3, adv66 F3 and F4).
            said = down.stdout + down.stderr
            assert "nothing to clean" not in said and "nothing to stop" not in said, said
            assert "cleaned up" not in said or "but for what outlived SIGKILL" in said, said
            assert not re.search(rf"stopped leftover 'web' \(pids [0-9, ]*\b{pid}\b", said), said
            if n == 0 and start == MARKED:
                assert f"pid {pid} outlived SIGKILL and still runs" in said, said
    finally:
        thaw_and_end(frozen_cgroup, pid)
    wait_for(lambda: start_ticks(pid) is None, what="the thawed child ending")
    last = hd(project, "down", timeout=30, env=env)
    assert last.returncode == 0 and "nothing to stop" in last.stdout, last


def test_a_frozen_orphan_does_not_shelter_a_chain_adopted_beside_it(
        project: Path, frozen_cgroup: Path) -> None:
    """Process-group mode: the sweep of adopted orphans waited out the first round's
    grace and a frozen orphan's whole SIGKILL bound, which used up its time, and a chain
    adopted meanwhile (its links ignoring SIGTERM) was never looked for: `hd down` named
    the frozen one and left the chain running (adv67 F1)."""
    beat, stop, orphan = project / "beat", project / "stop", project / "orphan.pid"
    chain = project / "chain.sh"
    chain.write_text(f'[ -e {stop} ] && exit 0\necho $$ >> {beat}\nsleep 0.3\n'
                     f'setsid env -i sh {chain} &\nexit 0\n')
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.web]\ncommand = ["sh", "-c", "'
                f"trap '' TERM; setsid env -i sh -c 'sleep 901 & echo $! > {orphan}'; "
                f'setsid env -i sh {chain} & exec sleep 600"]\n'
                'readiness = "none"\nstop_timeout = 1\n')
    env = {"HIPPODROME_CGROUP": "off"}
    frozen = 0
    try:
        hd(project, "up", "--detach", check=True, env=env)
        wait_for(lambda: orphan.exists() and orphan.read_text().strip()
                 and beat.exists(), what="the orphan and the chain")
        frozen = int(orphan.read_text())
        (frozen_cgroup / "cgroup.procs").write_text(str(frozen))
        (frozen_cgroup / "freezer.state").write_text("FROZEN")
        down = hd(project, "down", timeout=90, env=env)
        assert down.returncode == 1 and f"(adopted: pid {frozen})" in down.stderr, down
        written = beat.stat().st_size
        time.sleep(1.0)  # a link writes its pid every 0.3 s while the chain lives
        assert beat.stat().st_size == written, beat.read_text().split()[-3:]
    finally:
        stop.touch()  # a survivor ends itself at its next link
        thaw_and_end(frozen_cgroup, frozen)


def thaw_and_end(group: Path, pid: int) -> None:
    """A test's frozen process thawed and ended (0: none was frozen yet)."""
    (group / "freezer.state").write_text("THAWED")
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def up_with_a_child(project: Path, start: str, env: dict[str, str]) -> int:
    """`hd up` of a service `web` (stop_timeout 1) whose shell runs `start` (which
    writes its child's pid to `{child}`) and then execs a sleep: the child's pid."""
    (dash,) = free_ports(1)
    child = project / "child.pid"
    (project / "svc.sh").write_text(start.format(child=child) + "\nexec sleep 600\n")
    write_stack(project, stack_header(dash) + '[services.web]\ncommand = ["sh", "'
                + str(project / "svc.sh") + '"]\nreadiness = "none"\nstop_timeout = 1\n')
    hd(project, "up", "--detach", check=True, env=env)
    wait_for(lambda: child.exists() and child.read_text().strip(), what="the child's pid")
    return int(child.read_text())
