"""The orphan guard of a daemon forked from `hd up` and of one started by exec
(supervision/orphans.py): sh waiting to exec a bare interpreter, in a session of its
own holding nothing of the daemon's but its pipe (no lifecycle lock, no socket, no
log), gone after a clean `down`, and still ending every service after `kill -9` of
the daemon.

(A guard forked from the daemon was tried and measured: its pages stop being shared
as soon as the daemon's refcounts write to them, and daemon + guard PSS went from
21.7 to 24.6 MB with 40 services.)"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import (
    PY,
    REPO,
    alive,
    free_ports,
    open_files,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

HD = [PY, "-c", "import sys; sys.argv[0] = 'hd'; from hippo_tasks.tasks.program import cli; "
      "cli()"]
INVOKE = [PY, "-m", "invoke", "-r", str(REPO)]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    dash, a, b = free_ports(3)
    write_stack(tmp_path, stack_header(dash)
                + toy_service("web", a, "--child", readiness={"http": "/healthz"})
                + toy_service("api", b, readiness={"http": "/healthz"}))
    try:
        yield tmp_path
    finally:
        force_down(Registry(tmp_path))


def up(root: Path, via: list[str]) -> dict[str, int]:
    done = subprocess.run([*via, "up", "--detach", "--project-root", str(root)], cwd=root,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    daemon = registry(root)["daemon"]
    return {"daemon": daemon["pid"], "guard": daemon["guard_pid"]}


def everything(root: Path) -> set[int]:
    from hippo_tasks.supervision.scope import marked_pids

    return set(marked_pids(registry(root)["daemon"]["token"]))


@pytest.mark.parametrize("via", [HD, INVOKE], ids=["forked daemon", "exec daemon"])
def test_the_guard_holds_only_its_pipe(project: Path, via: list[str]) -> None:
    pids = up(project, via)
    guard = pids["guard"]
    argv = Path(f"/proc/{guard}/cmdline").read_bytes().split(b"\0")
    assert argv[:2] == [b"/bin/sh", b"-c"] and argv[5:8] == [b"-I", b"-S", b"-c"], \
        "not sh waiting to exec the bare interpreter"
    stat = Path(f"/proc/{guard}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat[3]) == guard, "not a session of its own"
    held = open_files(guard)
    assert held[0].startswith("pipe:") and held[1] == held[2] == "/dev/null"
    assert len(held) == 3, held
    done = subprocess.run([*HD, "down", "--project-root", str(project)], cwd=project,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not alive(guard), 10)


@pytest.mark.parametrize("via", [HD, INVOKE], ids=["forked daemon", "exec daemon"])
def test_kill_9_of_the_daemon_still_ends_everything(project: Path, via: list[str]) -> None:
    pids = up(project, via)
    services = everything(project)
    assert len(services) >= 3, services  # web, its grandchild, api
    os.kill(pids["daemon"], signal.SIGKILL)
    wait_for(lambda: not any(alive(p) for p in services | {pids["guard"]}), 15)
