"""Cleaning up from the registry alone: for a dead daemon, or `down --force`.

Only processes we recorded, and only while they are still the same processes (PID and
start time), are signalled. A process group whose leader has exited is still ours: a
PID that is some group's ID is never handed to a new process while the group lives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from hippo_tasks.registry.store import Data, Registry, daemon_alive, is_same_process

GRACE = 2.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _our_groups(data: Data) -> dict[str, int]:
    """Service name -> process group that is still ours and still has members."""
    groups = {}
    for name, entry in (data.get("services") or {}).items():
        pgid = entry.get("pgid")
        if not pgid:
            continue
        leader_ours = is_same_process(entry.get("pid"), entry.get("create_time"))
        leader_gone = not _pid_exists(int(pgid))
        if (leader_ours or leader_gone) and _group_alive(int(pgid)):
            groups[name] = int(pgid)
    return groups


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def end_groups(groups: dict[str, int], grace: float = GRACE) -> list[str]:
    lines = []
    for name, pgid in groups.items():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        lines.append(f"stopped leftover '{name}' (process group {pgid})")
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(g) for g in groups.values()):
        time.sleep(0.02)
    for name, pgid in groups.items():
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            lines.append(f"'{name}' ignored SIGTERM for {grace:g}s: sent SIGKILL")
    return lines


def clean_stale(registry: Registry, data: Data) -> list[str]:
    """After a dead daemon: end what it left running, clear its entries. Quiet if clean."""
    daemon = data.get("daemon")
    if daemon is None and not data.get("services"):
        return []
    if daemon_alive(data):
        return []
    lines = []
    if daemon:
        lines.append(f"found a stale registry entry: daemon pid {daemon.get('pid')} is gone")
    lines += end_groups(_our_groups(data))
    registry.update(_clear)
    return lines


def force_down(registry: Registry) -> list[str]:
    """`down --force`: end the daemon (if ours), its guard and every recorded group."""
    data = registry.read()
    lines = list(registry.warnings)
    daemon: dict[str, Any] = data.get("daemon") or {}
    if daemon_alive(data):
        pid = int(daemon["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        lines.append(f"killed daemon pid {pid}")
    lines += end_groups(_our_groups(data))
    registry.update(_clear)
    if not lines:
        lines.append("nothing to clean: no recorded process is running")
    return lines


def _clear(data: Data) -> None:
    data["daemon"] = None
    data["services"] = {}
