"""Polling for changes where the kernel reports none (network file systems, some bind
mounts, WSL's Windows drives): a scan of the watched folders every POLL_DELAY_MS that
compares each file's whole stat: modification and change times to the nanosecond,
size, inode.

watchfiles' own polling (notify's PollWatcher) compares modification times in whole
seconds. A second save within the second of the one before was never seen, and the
service ran the old code for good; a generator writing all through a burst looked quiet
between two seconds, and its service restarted about once a second (adv38 w/1, w/2).
The scan hands over what it found as watchfiles' `watch` does: a set of (change, path),
filtered by the same `wants`, an empty set every `check_ms` with nothing found.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from hippo_tasks.supervision.watch import ADDED, DELETED, MODIFIED

Seen = dict[str, int | None]
"""Each path found: the hash of a file's (mtime_ns, ctime_ns, size, inode), None for a
folder. The hash, not the tuple: 3.7 MB for 24,000 files instead of 7.0, and two scans
are held at once (a change slipping through a 64-bit collision: about 1 in 10^19)."""


def scan(roots: Iterable[str], skip: Callable[[str], bool]) -> Seen:
    """Every file and folder under `roots`, following links to folders (each folder
    once: a link back up the tree is no loop), leaving out the folders `skip` names.
    About 4 us a file here, most of it the stat call."""
    seen: Seen = {}
    visited: set[tuple[int, int]] = set()
    stack = [os.fspath(r) for r in roots]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in visited:
                continue
            visited.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError:  # gone, or unreadable: the next scan looks again
            continue
        for entry in entries:
            path = entry.path
            try:
                if entry.is_dir():  # (through a link: the folder's type is its target's)
                    seen[path] = None
                    if not skip(path):
                        stack.append(path)
                    continue
                st = entry.stat()
            except OSError:  # a dangling link, or gone since the listing
                continue
            seen[path] = hash((st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino))
    return seen


def differences(before: Seen, now: Seen) -> set[tuple[int, str]]:
    """What changed between two scans. A folder counts when it appears or goes, or
    becomes a file (its times move with every file made in it, which the files
    themselves say)."""
    changes = {(ADDED, p) for p in now.keys() - before.keys()}
    changes |= {(DELETED, p) for p in before.keys() - now.keys()}
    changes |= {(MODIFIED, p) for p, was in before.items() if now.get(p, was) != was}
    return changes


def poll_changes(roots: Iterable[str], wants: Callable[[int, str], bool],
                 skip: Callable[[str], bool], halt: threading.Event, delay_ms: int,
                 check_ms: int, timed: Callable[[float], None] = lambda _s: None
                 ) -> Iterator[set[tuple[int, str]]]:
    """Until `halt` is set: each scan's changes that `wants` keeps, as soon as a scan
    finds some, else an empty set every `check_ms`. `timed`: told each scan's seconds
    (a change waits for the pause and the scan: a quiet period must outlast both)."""
    folders = list(roots)
    skipped: dict[str, bool] = {}

    def skip_once(path: str) -> bool:  # a folder's answer kept: 40 ms a scan of 2,000
        if path not in skipped:
            skipped[path] = skip(path)
        return skipped[path]

    before = scan(folders, skip_once)
    last = time.monotonic()
    while not halt.wait(delay_ms / 1000):
        began = time.monotonic()
        now = scan(folders, skip_once)
        timed(time.monotonic() - began)
        changes = {(change, path) for change, path in differences(before, now)
                   if wants(change, path)}
        before = now
        if changes or time.monotonic() - last >= check_ms / 1000:
            last = time.monotonic()
            yield changes
