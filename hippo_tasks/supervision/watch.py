"""Hot reload: restart a service when files matching its `watch` globs change.

Polling, not inotify: it works the same on every filesystem (bind mounts, network
shares, editors that replace files by rename), needs no dependency, and costs nothing
for services that watch nothing. A burst of changes (a `git checkout`, an editor's
save-and-format) becomes one restart: the restart waits until the files have been
quiet for DEBOUNCE seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

POLL = 0.5
DEBOUNCE = 0.3

Fingerprint = dict[str, tuple[int, int]]


def scan(root: Path, patterns: Iterable[str]) -> Fingerprint:
    """Path -> (mtime_ns, size) of every file matching the globs under root."""
    seen: Fingerprint = {}
    for pattern in patterns:
        for path in root.glob(pattern):
            with contextlib.suppress(OSError):
                st = path.stat()
                if path.is_file():
                    seen[str(path.relative_to(root))] = (st.st_mtime_ns, st.st_size)
    return seen


def changed(before: Fingerprint, after: Fingerprint) -> list[str]:
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k))


async def watch_files(
    root: Path,
    patterns: tuple[str, ...],
    on_change: Callable[[list[str]], Awaitable[None]],
    poll: float = POLL,
    debounce: float = DEBOUNCE,
) -> None:
    """Forever: call `on_change(paths)` once per settled burst of changes."""
    loop = asyncio.get_running_loop()
    current = await loop.run_in_executor(None, scan, root, patterns)
    while True:
        await asyncio.sleep(poll)
        latest = await loop.run_in_executor(None, scan, root, patterns)
        diff = changed(current, latest)
        if not diff:
            continue
        # Wait for the burst to settle: no further change for `debounce` seconds.
        while True:
            await asyncio.sleep(debounce)
            settled = await loop.run_in_executor(None, scan, root, patterns)
            more = changed(latest, settled)
            if not more:
                break
            diff = sorted(set(diff) | set(more))
            latest = settled
        current = latest
        await on_change(diff)
