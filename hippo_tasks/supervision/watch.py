"""Hot reload: restart a service when files matching its `watch` globs change.

The kernel says what changed (watchfiles: inotify, FSEvents, kqueue), so an idle
watcher costs nothing however many files it covers; the polling watcher it replaces
stat()ed every matching file twice a second (a third of a core over 20,000 files).
Polling remains where notifications cannot work: network file systems and some bind
mounts never deliver them. `HIPPODROME_WATCH_POLL=1` forces it (watchfiles also
falls back to it by itself when the kernel refuses, and on WSL).

A burst of changes (a `git checkout`, an editor's save-and-format) becomes one
restart: the restart waits until the files have been quiet for DEBOUNCE seconds.
Only the folders the globs can reach are watched (`src/**/*.py` watches `src`, not a
`node_modules` beside it), and only paths matching a glob count, with Path.glob's
rules: `**` is any number of folders, `*`, `?` and `[...]` stay within one name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from hippo_tasks.model.globs import glob_regex, literal_folders

DEBOUNCE = 0.3
"""Seconds of quiet that end a burst."""
STEP_MS = 50
"""watchfiles hands over what it gathered once no event came for this long."""
POLL_DELAY_MS = 300
"""Between two scans, when polling."""
POLL_ENV = "HIPPODROME_WATCH_POLL"
ADDED = 1
"""watchfiles.Change.added (an IntEnum; its module is imported only by the watcher)."""


def poll_forced(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool | None:
    """True when the setting asks for polling; None leaves the choice to watchfiles
    (notifications, unless `WATCHFILES_FORCE_POLLING` is set or this is WSL)."""
    value = environ.get(POLL_ENV, "").strip().lower()
    return True if value in ("1", "true", "yes", "on") else None


def watch_roots(root: Path, patterns: Iterable[str]) -> list[Path]:
    """The folders to hand the kernel: each pattern's literal leading folders (the
    nearest existing one, so a folder made later is still seen), nested ones dropped."""
    found: set[Path] = set()
    for pattern in patterns:
        folder = Path(os.path.normpath(root.joinpath(*literal_folders(pattern))))
        while not folder.is_dir() and folder != folder.parent:
            folder = folder.parent
        found.add(folder)
    return sorted(f for f in found if not any(o != f and o in f.parents for o in found))


class GlobMatcher:
    """Which changed paths count: files matching a pattern, relative to the root."""

    def __init__(self, root: Path, patterns: Iterable[str]) -> None:
        self.root = root
        self.regexes = [glob_regex(p) for p in patterns]

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    def matches(self, path: str) -> bool:
        rel = self.relative(path)
        return any(rx.fullmatch(rel) for rx in self.regexes) and not os.path.isdir(path)

    def wants(self, change: Any, path: str) -> bool:
        """watchfiles' filter: a matching file, or a folder that appeared (moved in
        whole: the kernel names the folder, not each file in it)."""
        return self.matches(path) or (int(change) == ADDED and os.path.isdir(path))

    def expand(self, changes: Iterable[tuple[Any, str]]) -> set[str]:
        """Matching paths among the changes, a folder that appeared standing for its
        matching files (a folder merely "modified" is one whose entries changed: those
        entries are reported on their own)."""
        out: set[str] = set()
        for change, path in changes:
            if int(change) == ADDED and os.path.isdir(path):
                for folder, _dirs, files in os.walk(path):
                    out.update(self.relative(os.path.join(folder, f)) for f in files
                               if self.matches(os.path.join(folder, f)))
            elif self.matches(path):
                out.add(self.relative(path))
        return out


async def watch_files(
    root: Path,
    patterns: tuple[str, ...],
    on_change: Callable[[list[str]], Awaitable[None]],
    debounce: float = DEBOUNCE,
    poll: bool | None = None,
) -> None:
    """Forever: call `on_change(paths)` once per settled burst of changes.

    `poll` None reads HIPPODROME_WATCH_POLL. watchfiles' blocking `watch` runs in a
    thread of its own (its `awatch` goes through anyio, whose asyncio backend needs
    `ssl`, which the detached daemon keeps out); batches come back through the loop.
    """
    loop = asyncio.get_running_loop()
    matcher = GlobMatcher(root, patterns)
    batches: asyncio.Queue[set[str] | BaseException] = asyncio.Queue()
    stop = threading.Event()  # checked by watchfiles every STEP_MS

    def push(item: set[str] | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to tell
            loop.call_soon_threadsafe(batches.put_nowait, item)

    feeder = threading.Thread(
        target=_feed, name=f"watch {root}", daemon=True,
        args=(watch_roots(root, patterns), matcher, push, stop,
              poll_forced() if poll is None else poll))
    feeder.start()

    async def next_batch() -> set[str]:
        item = await batches.get()
        if isinstance(item, BaseException):
            raise item
        return item

    try:
        while True:
            burst = await next_batch()
            while True:  # the burst ends after `debounce` seconds without a change
                try:
                    burst |= await asyncio.wait_for(next_batch(), debounce)
                except TimeoutError:
                    break
            await on_change(sorted(burst))
    finally:
        stop.set()
        await loop.run_in_executor(None, feeder.join, 5.0)


def _feed(roots: list[Path], matcher: GlobMatcher,
          push: Callable[[set[str] | BaseException], None], stop: threading.Event,
          poll: bool | None) -> None:
    """In the watcher's thread: watchfiles' batches of matching paths, pushed to the
    loop; an error is pushed too, so the watcher fails loudly instead of waiting
    forever. watchfiles is imported here: a daemon whose services watch nothing never
    loads it."""
    try:
        from watchfiles import watch

        for changes in watch(*roots, watch_filter=matcher.wants, step=STEP_MS,
                             stop_event=stop, force_polling=poll,
                             poll_delay_ms=POLL_DELAY_MS, ignore_permission_denied=True):
            paths = matcher.expand(changes)
            if paths:
                push(paths)
    except Exception as exc:  # noqa: BLE001 - handed to the loop, which raises it
        push(exc)
