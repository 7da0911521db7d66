"""Processes of a stack that outlived its stop: SIGKILL did not end them within its
bound (frozen by a cgroup freezer or `docker pause`, stuck in the kernel, a chain that
outran it). The daemon writes them down as it exits (`.hippodrome/outlived.json`), and
each `hd down` names those that still live, exit 1, until none does.

`down` also looks for what the registry proves the stack's (its run's mark, its
cgroups), but in process-group mode a child that cleared its environment and left its
group carries nothing of the stack once its service is gone: the daemon named it in
its own output, and `down` said "stack stopped", exit 0 (adv64 F1). And a `down` after
that one said "nothing to stop" while it still lived (adv64 F2)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from hippo_tasks.model.textfile import Unusable, read_small_text, replace_text
from hippo_tasks.supervision.scope import start_ticks, ticks_of

FILE = "outlived.json"

Entries = dict[int, tuple[int, str]]
"""pid -> (start ticks, service): the pid names that process only while both match."""


def write(state_dir: Path, entries: Entries) -> None:
    """As the daemon exits: those of `entries` that still live, added to what an earlier
    run's file names and still lives. A disk that cannot take it loses only the naming:
    the daemon's output said it already."""
    alive = {**_alive(_read(state_dir)), **_alive(entries)}
    if not alive:
        return
    text = json.dumps([{"pid": pid, "ticks": ticks, "service": service}
                       for pid, (ticks, service) in sorted(alive.items())])
    with contextlib.suppress(OSError):
        replace_text(state_dir / FILE, text, state_dir / f".outlived-{os.getpid()}.tmp")


def remember(state_dir: Path, by_service: dict[str, list[int]]) -> None:
    """What a `down` found of its stack still alive, kept for the next `down`: the
    registry that proved it the stack's (after a `kill -9` of the daemon, or `down
    --force`) is cleared by then, and a second `down` said "nothing to stop", exit 0
    (adv65 F1)."""
    entries: Entries = {}
    for service, pids in by_service.items():
        for pid, ticks in ticks_of(pids).items():
            entries[pid] = (ticks, service)
    write(state_dir, entries)


def still_alive(state_dir: Path) -> dict[str, list[int]]:
    """What the file names and still lives, by service; the file goes once none does."""
    alive = _alive(_read(state_dir))
    if not alive:
        with contextlib.suppress(OSError):
            (state_dir / FILE).unlink(missing_ok=True)
    by_service: dict[str, list[int]] = {}
    for pid, (_, service) in sorted(alive.items()):
        by_service.setdefault(service, []).append(pid)
    return by_service


def _read(state_dir: Path) -> Entries:
    """A file that is missing, damaged or not ours in shape names nothing; nor a link,
    which any file (and any process in it) could be put behind (adv65 F4)."""
    if os.path.islink(state_dir / FILE):
        return {}
    try:
        listed = json.loads(read_small_text(state_dir / FILE))
    except (OSError, ValueError, Unusable):
        return {}
    entries: Entries = {}
    for item in listed if isinstance(listed, list) else []:
        if not isinstance(item, dict):
            continue
        pid, ticks, service = item.get("pid"), item.get("ticks"), item.get("service")
        if type(pid) is int and type(ticks) is int and isinstance(service, str) and pid > 0:
            entries[pid] = (ticks, service)
    return entries


def _alive(entries: Entries) -> Entries:
    return {pid: v for pid, v in entries.items() if start_ticks(pid) == v[0]}
