"""A stop's last step (supervision/process.kill_scope): SIGKILL until the service's
processes are gone, bounded; what outlives the bound is named, not passed over."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import free_ports, hd, registry, stack_header, write_stack

from hippo_tasks.supervision.process import kill_scope
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
        assert f"process(es) of this stack still run (web: pid {pid})" in down.stderr, down
        assert "stack stopped, daemon exited" in down.stdout, down
    finally:
        (frozen_cgroup / "freezer.state").write_text("THAWED")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
