"""What a dead daemon's registry proves by a service's process group alone
(registry/cleanup.orphaned_groups): the live members of a recorded group whose leader is
gone, in the session that leader made, to be named by `hd down` and never signalled.
A group's number proves less than a mark: a number a live process holds, a member older
than the leader, a registry of another folder, of another boot or of the wrong shape
name nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stackutil import wait_for

from hippo_tasks.registry.cleanup import orphaned_groups
from hippo_tasks.registry.store import boot_time, identity
from hippo_tasks.supervision.ownership import new_token
from hippo_tasks.supervision.scope import start_ticks

LEADER = ("import os, subprocess, sys, time; child = subprocess.Popen([sys.executable, "
          "'-c', 'import time; time.sleep(60)']); print(child.pid, flush=True); "
          "time.sleep(60)")


@pytest.fixture
def group() -> Iterator[tuple[int, float, int]]:
    """A leader in a session and group of its own with a child in them: (leader pid,
    its start time as the registry records it, child pid)."""
    leader = subprocess.Popen([sys.executable, "-c", LEADER], stdout=subprocess.PIPE,
                              start_new_session=True)
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    created = identity(leader.pid)
    assert created is not None
    try:
        yield leader.pid, created, child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def registry(root: Path, pgid: Any, created: Any, pid: Any = None) -> dict[str, Any]:
    """A dead daemon's registry of this boot (its two start times agree with it)."""
    since_boot = identity(os.getpid())
    boot = boot_time()
    assert since_boot is not None and boot is not None
    return {"project_root": str(root),
            "daemon": {"pid": 1, "token": new_token(str(root)), "create_time": since_boot,
                       "started_at": boot + since_boot + 0.2},
            "services": {"web": {"pid": pgid if pid is None else pid, "pgid": pgid,
                                 "create_time": created}}}


def test_a_member_of_a_group_whose_leader_is_gone_is_named(
        tmp_path: Path, group: tuple[int, float, int]) -> None:
    leader, created, child = group
    data = registry(tmp_path, leader, created)
    # the leader lives: its mark and cgroup say the rest
    assert orphaned_groups(data, time.time()) == {}
    os.kill(leader, signal.SIGKILL)
    wait_for(lambda: start_ticks(leader) is None, what="the leader gone")
    assert orphaned_groups(data, time.time()) == {"web": [child]}


def test_a_member_born_after_the_registry_was_last_written_is_not_named(
        tmp_path: Path, group: tuple[int, float, int]) -> None:
    """The group's number given to a stranger's session after the daemon died (whose
    leader exited, leaving a `sleep` it started) named that sleep as the stack's (adv67
    F2): a member must have started before the registry's last write."""
    leader, created, child = group
    os.kill(leader, signal.SIGKILL)
    wait_for(lambda: start_ticks(leader) is None, what="the leader gone")
    data = registry(tmp_path, leader, created)
    assert orphaned_groups(data, time.time()) == {"web": [child]}
    boot, since_boot = boot_time(), identity(child)
    assert boot is not None and since_boot is not None
    assert orphaned_groups(data, boot + since_boot - 2.0) == {}
    assert orphaned_groups(data, None) == {}  # unknown: nothing


def test_nothing_is_named_by_a_number_a_live_process_holds_or_a_member_older_than_it(
        tmp_path: Path, group: tuple[int, float, int]) -> None:
    leader, created, child = group
    os.kill(leader, signal.SIGKILL)
    wait_for(lambda: start_ticks(leader) is None, what="the leader gone")
    assert orphaned_groups(registry(tmp_path, os.getpid(), created), time.time()) == {}
    # recorded as started after its member: not the group the registry knew
    later = created + 3600.0
    assert orphaned_groups(registry(tmp_path, leader, later), time.time()) == {}


@pytest.mark.parametrize(("pgid", "created", "pid"), [
    (True, 1.0, None), ("123", 1.0, None), (-5, 1.0, None), (0, 1.0, None), (1, 1.0, None),
    (None, 1.0, None), (12345, "x", None), (12345, True, None), (12345, None, None),
    (12345, 1.0, 12346),  # a group the service's main process did not lead
])
def test_wrong_shapes_name_nothing(tmp_path: Path, pgid: Any, created: Any, pid: Any) -> None:
    assert orphaned_groups(registry(tmp_path, pgid, created, pid), time.time()) == {}


@pytest.mark.parametrize("daemon", [
    {"started_at": None}, {"create_time": "1"}, {"started_at": True},
    {"started_at": 3600.0},  # its start times imply a boot an hour from this one's
])
def test_a_registry_of_another_boot_or_unknown_boot_names_nothing(
        tmp_path: Path, group: tuple[int, float, int], daemon: dict[str, Any]) -> None:
    """A registry from another boot named a group whose number now holds a stranger's
    processes, in a session whose leader had exited (a `nohup` job's)."""
    leader, created, _ = group
    os.kill(leader, signal.SIGKILL)
    wait_for(lambda: start_ticks(leader) is None, what="the leader gone")
    data = registry(tmp_path, leader, created)
    assert orphaned_groups(data, time.time())  # of this boot: named
    if daemon.get("started_at") == 3600.0:
        daemon = {"started_at": data["daemon"]["started_at"] + 3600.0}
    data["daemon"].update(daemon)
    assert orphaned_groups(data, time.time()) == {}


def test_another_folders_registry_or_a_bad_services_table_names_nothing(
        tmp_path: Path, group: tuple[int, float, int]) -> None:
    leader, created, _ = group
    os.kill(leader, signal.SIGKILL)
    wait_for(lambda: start_ticks(leader) is None, what="the leader gone")
    foreign = registry(tmp_path, leader, created)
    foreign["daemon"]["token"] = new_token(str(tmp_path / "elsewhere"))
    assert orphaned_groups(foreign, time.time()) == {}
    for services in ([], "web", {"web": [leader]}, {"web": None}):
        data = registry(tmp_path, leader, created)
        data["services"] = services
        assert orphaned_groups(data, time.time()) == {}
