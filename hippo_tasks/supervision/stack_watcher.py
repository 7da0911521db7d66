"""The stack's one file watcher: a thread running watchfiles over every watched folder,
handing each settled burst of changes to the service it concerns.

watchfiles' blocking `watch` runs in a thread of its own (its `awatch` goes through
anyio, whose asyncio backend needs `ssl`, which the detached daemon keeps out).
Everything it finds reaches the loop as a plain callback (`call_soon_threadsafe`), and
the quiet period that ends a burst is a `call_later` timer per service: no task awaits
anything, so there is nothing for a cancellation to get lost in (Python 3.11's
`wait_for` swallowed the one shutdown sent when a batch landed in the same loop turn,
and `hd down` waited for ever). `stop()` is final and bounded: from its first moment
no change is handed on, and it waits for the thread at most `timeout` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from hippo_tasks.supervision.watch import (
    ADDED,
    DEBOUNCE,
    DECODE_ERROR,
    DELETED,
    GATHER_MS,
    MODIFIED,
    POLL_DELAY_MS,
    STEP_MS,
    Subscriber,
    Watched,
    inside,
    out_of_bounds,
    outermost,
    own_prefixes,
    poll_forced,
    target_folders,
    unreadable,
    walk,
    watch_roots,
)

COARSE_REALTIME = 5
"""CLOCK_REALTIME_COARSE (linux/time.h); Python's time module does not name it."""
CHECK_MS = 1000
"""How often, with nothing happening, the thread checks that each watched folder is
still the one it watches (deleted, or moved away and replaced by a copy)."""
Roots = dict[Path, tuple[int, int]]
"""Each folder handed to the kernel, with its (device, inode)."""


def resolved(path: str) -> str:
    """`path` with its folder's links resolved, by the kernel in one walk where it can
    (the folder opened as a path, read back from /proc). os.path.realpath stats every
    component on its own: over the 1,100 folders of a deep tree made while watched, each
    one an event, that was over a million stat calls. The name itself is left as it
    is: a change to a link is the link's, not its target's."""
    folder, name = os.path.split(path)
    o_path = getattr(os, "O_PATH", 0)
    if not o_path or not os.path.isdir("/proc/self/fd"):
        return os.path.join(os.path.realpath(folder), name)
    try:
        fd = os.open(folder or ".", o_path | os.O_DIRECTORY)
    except OSError:  # gone, or longer than the kernel takes: nothing of ours
        return path
    try:
        return os.path.join(os.readlink(f"/proc/self/fd/{fd}"), name)
    except OSError:
        return path
    finally:
        os.close(fd)


def encodable(path: str) -> bool:
    """A name the kernel gave as bytes that are not UTF-8 holds surrogates in Python."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def file_clock_ns() -> int:
    """Now, on the clock the kernel stamps files with (Linux: CLOCK_REALTIME_COARSE, a
    tick behind the fine one): a file written after this reads as written since, one
    written before as before, but within the same tick. With the fine clock and a
    margin, files written just before the stack started counted as changed."""
    if sys.platform == "linux":
        return time.clock_gettime_ns(COARSE_REALTIME)
    return time.time_ns()


class StackWatcher:
    """Watch every service's globs with one watchfiles watcher (one inotify instance).

    `on_change(name, paths, first)`: once per settled burst of a service's changes
    (paths relative to its cwd; `first`, time.monotonic() when the burst's first change
    came in). `on_note(name, text)`: something the service's log should say
    (a folder that cannot be watched, watching that stopped)."""

    def __init__(self, watched: Sequence[Watched],
                 on_change: Callable[[str, list[str], float], None],
                 on_note: Callable[[str, str], None], own: Iterable[Path] = (),
                 debounce: float = DEBOUNCE, poll: bool | None = None) -> None:
        self.own = own_prefixes(own)
        self.subscribers = [Subscriber(w, self.own) for w in watched]
        self.watched = list(watched)
        self.on_change = on_change
        self.on_note = on_note
        self.poll = poll_forced() if poll is None else poll
        self._quiet = debounce
        self.debounce = debounce + (POLL_DELAY_MS if self.poll else STEP_MS) / 1000
        """The quiet is timed from each hand-over, which comes a little after the change:
        one to two STEP_MS with the kernel's notifications, up to a scan when polling.
        Timed over `debounce` alone, saves 0.28 s apart (never 0.3 s of quiet) restarted
        the service every second save (adv38 w/3); over this, changes less than
        `debounce` apart are always one burst."""
        self._halt = threading.Event()
        self._stopped = False
        self._pending: dict[str, set[str]] = {}
        self.changed: frozenset[str] = frozenset()
        """The services with a change seen and not yet acted on (the quiet period still
        running), replaced whole, so a status read from another thread sees one set:
        `wait_ready` right after a save answered ready for the process the reload was
        about to end (adv57 F1)."""
        self._first: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._said: set[str] = set()
        self._links: set[str] = set()
        """Links to folders made inside the watched folders while watched (_roots)."""
        self._followed: set[str] = set()
        """Links to folders found in the watched folders when the watch began: the
        kernel's watches follow them, but names only the link when it is removed."""
        self._bad: dict[str, str] = {}
        """Links in the watched folders that are not followed (out_of_bounds), with why.
        notify cannot be told to pass one by: while any is there, the folders are
        scanned (poll_scan) instead, which does."""
        self._caught_up = file_clock_ns()
        """When the watch last handed over a batch (or found none), on the clock files are
        stamped with: see _recover_batch."""
        self._target_ids: dict[Path, tuple[int, int] | None] = {}
        self._scan_s = 0.0
        """How long the polling scan last took (a tree of 100,000 files: about 0.4 s),
        which a change seen at the end of one waits on top of the pause: a burst kept
        up all through was quiet between two hand-overs otherwise."""
        self._last_wanted = 0.0
        """time.monotonic() of the last change the filter kept, set in the thread. A
        quiet period ends only when this is older than `debounce` too: the thread may
        still be sorting a large batch (50,000 files) it has not handed over."""

    # ---- on the loop ----------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._feed, name="hippodrome watch",
                                        daemon=True)
        self._thread.start()

    async def stop(self, timeout: float = 5.0) -> None:
        """From now on nothing is handed on; the thread is told to end and waited for
        (at most `timeout` s: watchfiles looks at the stop event every STEP_MS)."""
        self._stopped = True
        self._halt.set()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._pending.clear()
        self.changed = frozenset()
        self._first.clear()
        deadline = time.monotonic() + timeout
        while self._thread is not None and self._thread.is_alive() \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def _receive(self, batch: dict[str, set[str]]) -> None:
        """A batch from the thread: each service's quiet period starts over."""
        if self._stopped or self._loop is None:
            return
        for name, paths in batch.items():
            self._pending.setdefault(name, set()).update(paths)
            self._first.setdefault(name, time.monotonic())
            old = self._timers.pop(name, None)
            if old is not None:
                old.cancel()
            self._timers[name] = self._loop.call_later(self.debounce, self._settled, name)
        self.changed = frozenset(self._pending)

    def _settled(self, name: str) -> None:
        assert self._loop is not None
        busy = self.debounce + self._scan_s - (time.monotonic() - self._last_wanted)
        if busy > 0 and not self._stopped:  # changes still coming in: not quiet yet
            self._timers[name] = self._loop.call_later(busy, self._settled, name)
            return
        self._timers.pop(name, None)
        paths = self._pending.pop(name, set())
        first = self._first.pop(name, time.monotonic())
        if paths and not self._stopped:
            self.on_change(name, sorted(paths), first)  # its restart is asked first
        self.changed = frozenset(self._pending)

    def _say(self, name: str, text: str) -> None:
        if not self._stopped:
            self.on_note(name, text)

    # ---- to the loop, from the thread -----------------------------------------------
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is None or self._stopped:
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to tell
            self._loop.call_soon_threadsafe(fn, *args)

    def _note_all(self, text: str, once: str | None = None) -> None:
        """Tell every watching service (`once`: a key said only the first time)."""
        if once is not None:
            if once in self._said:
                return
            self._said.add(once)
        for w in self.watched:
            self._post(self._say, w.name, text)

    def _dispatch(self, changes: set[tuple[Any, str]], gone: Collection[str] = ()) -> None:
        batch = {s.name: paths for s in self.subscribers
                 if (paths := s.expand(changes, gone))}
        if batch:
            self._post(self._receive, batch)

    # ---- in the thread --------------------------------------------------------------
    def _wants(self, change: Any, path: str) -> bool:
        """watchfiles' filter: what some service counts (or a folder that appeared).
        Hippodrome's own folders are also left out when reached through a link (`ln -s
        .logs logs` under `**/*`: each restart's log lines restarted it again): one
        resolution per change, here rather than once per service."""
        if not path.isascii() and not encodable(path):
            # Only the polling scan gives such a name (watchfiles raises, _feed): passed
            # on, the restart's own log line could not be written (adv39's notes).
            self._say_undecodable(f"{os.fsencode(path)!r}", path)
            return False
        if self.own and inside(resolved(path), self.own):
            return False
        if int(change) == DELETED and (path in self._followed or path in self._links):
            return True  # a link to a folder removed: _retarget says whose it was
        if any(s.wants(change, path) for s in self.subscribers):
            self._last_wanted = time.monotonic()
            return True
        return False

    def _took(self, seconds: float) -> None:
        self._scan_s = seconds

    def _skipped(self, folder: str) -> bool:
        """A folder the polling scan need not enter: Hippodrome's own, or one every
        service ignores (`.git`, `node_modules`, `__pycache__`)."""
        return bool(self.own and inside(os.path.realpath(folder), self.own)) or not any(
            s.admits(ADDED, folder) for s in self.subscribers) or (
            os.path.islink(folder) and out_of_bounds(folder) is not None)

    def _roots(self) -> Roots:
        """The folders to watch now, with their identities: each service's, and each link
        to a folder made inside them while watched (links there at the start are followed
        by the kernel's watches; one made later was not, and edits under it restarted
        nothing)."""
        folders = outermost(r for w in self.watched for r in watch_roots(w.cwd, w.patterns))
        links = sorted(link for link in self._links
                       if os.path.isdir(link) and not out_of_bounds(link))
        out: Roots = {}
        for folder in [*folders, *map(Path, links)]:
            with contextlib.suppress(OSError):
                st = os.stat(folder)
                out[folder] = (st.st_dev, st.st_ino)
        return out

    def _targets(self) -> dict[Path, tuple[int, int] | None]:
        """Each pattern's folder with its (device, inode), None while it does not exist."""
        out: dict[Path, tuple[int, int] | None] = {}
        for folder in {t for w in self.watched for t in target_folders(w.cwd, w.patterns)}:
            try:
                st = os.stat(folder)
                out[folder] = (st.st_dev, st.st_ino) if os.path.isdir(folder) else None
            except OSError:
                out[folder] = None
        return out

    def _retarget(self, count_new: bool = True) -> None:
        """Take in the patterns' folders and the followed links as they are now.

        A pattern's folder that is new (made, recreated, or a copy in place of one
        moved away) counts by its matching files, as a folder moved in does: what was
        written into it before the new watch began is not lost. Only such a folder: one
        that merely became a root of its own (`dist` made, so `src` is no longer watched
        through their parent) is the same folder, and counting it restarted services
        nothing had touched. Not `count_new` when the batch's own events counted it.

        A pattern's folder moved away, or a followed link to a folder removed, counts
        as itself: the kernel names only the folder or the link, which matches no glob,
        and nothing restarted though every file the service read there was gone
        (adv34 w/3). A real folder removed names each of its files."""
        now = self._targets()
        fresh = {(ADDED, str(f)) for f, ident in now.items() if count_new
                 and ident is not None and self._target_ids.get(f) != ident}
        gone = {str(f) for f, ident in now.items()
                if ident is None and self._target_ids.get(f) is not None}
        self._target_ids = now
        links = {link for link in self._followed | self._links if not os.path.lexists(link)}
        self._followed -= links
        self._links -= links
        gone |= links
        if fresh or gone:
            self._dispatch(fresh | {(DELETED, path) for path in gone}, gone)

    def _say_unreadable(self, roots: Roots) -> list[str]:
        """Name each folder that cannot be watched, and each link not followed, in the
        logs of the services whose cwd holds it; return the readable folders to add on
        their own."""
        links: set[str] = set()
        blocked, extra = unreadable(roots, links)
        self._bad = {link: why for link in links if (why := out_of_bounds(link))}
        # Only the links whose removal would count: a pnpm tree links thousands of folders
        # under node_modules, which no service counts, each looked at on every batch.
        self._followed |= {link for link in links if link not in self._bad and any(
            s.admits(DELETED, link) and s.matcher.may_hold(link) for s in self.subscribers)}
        for folder in blocked:
            self._say_under(folder, "cannot watch", "(permission denied): changes in it are "
                            "not seen; the rest is watched")
        for link, why in self._bad.items():
            self._say_under(link, "not following", f"({why}){self._scanning}")
        return extra

    @property
    def _scanning(self) -> str:
        return ": changes under it are not seen" + ("" if self.poll else (
            "; while it is there, the watched folders are scanned every 0.3 s instead "
            "(the kernel's watches would follow it)"))

    def _say_under(self, path: str, what: str, why: str) -> None:
        """Tell the services whose cwd holds `path`, once each."""
        from hippo_tasks.terminal_text import for_terminal

        for s in self.subscribers:
            key = f"{s.name}\0{what}\0{path}\0{why}"
            if path.startswith(s.cwd + os.sep) and key not in self._said:
                self._said.add(key)
                self._post(self._say, s.name, f"file watching: {what} "
                           f"{for_terminal(os.path.relpath(path, s.cwd))} {why}")

    def _say_undecodable(self, error: str, name: str | None) -> None:
        """Tell the services whose globs the file would match, once each; all of them
        when watchfiles did not give the name. Every watching service was told, so a
        stray file in one service's folder showed in the logs of all."""
        told = [s.name for s in self.subscribers
                if name is None or s.counts(ADDED, name)]
        for service in told:
            if f"decode\0{service}" not in self._said:
                self._said.add(f"decode\0{service}")
                self._post(self._say, service, "file watching: a changed file's name is "
                           f"not UTF-8 ({error}); changes to it are not seen, the rest is")

    def _recover_batch(self, since: int) -> None:
        """watchfiles drops a whole batch when one name in it is not UTF-8: a change to
        `src/good.py` in the same burst as `src/\\xffbad.py` restarted nothing. The
        batch is found again by time: the matching files changed since the last batch
        was handed over (a walk of the watched folders, only after such an error, and
        once each time a watch begins)."""
        changes: set[tuple[Any, str]] = set()
        for folder in outermost(f for w in self.watched for f in target_folders(w.cwd,
                                                                                w.patterns)):
            self._changed_in(folder, since, changes)
        if changes:
            self._dispatch(changes)

    def _changed_in(self, folder: Path, since: int, changes: set[tuple[Any, str]]) -> None:
        """Add to `changes` the matching files under `folder` changed since `since`."""
        for base, dirs, files in walk(folder):
            dirs[:] = [d for d in dirs if not (self.own and inside(
                os.path.join(base, d), self.own))]
            for name in files:
                path = os.path.join(base, name)
                if not encodable(path):  # the undecodable one is not seen, as said
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if max(st.st_mtime_ns, st.st_ctime_ns) >= since and \
                        self._wants(MODIFIED, path):
                    changes.add((MODIFIED, path))

    def _feed(self) -> None:
        """Watch until stopped; watch again when a watched folder is replaced or a
        name cannot be decoded; on any other error say so and end."""
        try:
            from watchfiles._rust_notify import WatchfilesRustInternalError

            roots = self._roots()
            self._target_ids = self._targets()
            while not self._halt.is_set():
                try:
                    roots = self._watch(roots)
                except WatchfilesRustInternalError as exc:
                    undecodable = DECODE_ERROR.search(str(exc))
                    if not undecodable:
                        raise
                    self._say_undecodable(str(exc), undecodable.group(1))
                    # The burst the dropped batch was in may go on (a file made, then
                    # written): walked once it has had a quiet period's time, not at
                    # once, when the next watch's first look found the rest of the same
                    # save 0.4 s later, a second restart (a CI rehearsal). Caught up from
                    # the walk: that look found the same save again (adv40 q/1).
                    self._halt.wait(self.debounce)
                    since, self._caught_up = self._caught_up, file_clock_ns()
                    self._recover_batch(since)
                except FileNotFoundError:  # a folder went between stat and watch
                    self._halt.wait(CHECK_MS / 1000)
                    roots = self._roots()
                    self._retarget()
        except Exception as exc:  # noqa: BLE001 - said in each log; the stack goes on
            self._note_all(f"file watching stopped: {exc!r}; hot reload is off until the "
                           "stack restarts")

    def _watch(self, roots: Roots) -> Roots:
        """One watchfiles watch over `roots`, until stopped (returns them) or until the
        folders to watch change (returns the new ones)."""
        from watchfiles import watch

        extra = self._say_unreadable(roots)
        bad = dict(self._bad)
        began, self._caught_up = self._caught_up, file_clock_ns()
        settled_in = False
        # Scanning where a link must be passed by: changes are seen a scan apart then.
        self.debounce = self._quiet + (POLL_DELAY_MS if self.poll or bad else STEP_MS) / 1000
        self._scan_s = 0.0
        if self.poll or bad:
            from hippo_tasks.supervision.poll_scan import poll_changes

            batches: Iterable[set[tuple[Any, str]]] = poll_changes(
                [*map(str, roots), *extra], self._wants, self._skipped, self._halt,
                POLL_DELAY_MS, CHECK_MS, self._took)
        else:
            batches = watch(*roots, *extra, watch_filter=self._wants, step=STEP_MS,
                            debounce=GATHER_MS, stop_event=self._halt,
                            rust_timeout=CHECK_MS, yield_on_timeout=True,
                            force_polling=False, ignore_permission_denied=True)
        for changes in batches:
            if not settled_in:
                # The kernel's watches are in place by the first hand-over; setting them
                # up over 5,000 folders outlasts `up` saying ready, and a save made
                # meanwhile was never seen. What changed since the last hand-over (for
                # the first watch, since the watcher began) is found by a walk, once.
                settled_in = True
                self._recover_batch(began)
            if changes:
                for change, path in changes:
                    if int(change) == ADDED and os.path.islink(path) and os.path.isdir(path):
                        why = out_of_bounds(path)
                        if why is None:
                            self._links.add(path)
                        else:  # the running watch does not follow it; the next one scans
                            self._say_under(path, "not following", f"({why}): changes under "
                                            "it are not seen")
                self._dispatch(changes)
                # A pattern's folder replaced under a watched parent was counted by
                # these events: it is the one known from now, or the next new root
                # counted its files again, a restart for a file nobody touched (a/7).
                self._retarget(count_new=False)
            self._caught_up = file_clock_ns()
            now = self._roots()
            if now != roots:
                self._retarget()
                return now
            if bad and any(out_of_bounds(link) != why for link, why in bad.items()):
                return now  # one gone (or leading elsewhere): the kernel's watches again
        return roots


async def watch_files(root: Path, patterns: tuple[str, ...],
                      on_change: Callable[[list[str]], Awaitable[None]],
                      debounce: float = DEBOUNCE, poll: bool | None = None) -> None:
    """Until cancelled: `on_change(paths)` once per settled burst of changes to one
    folder's globs (a StackWatcher of one; `poll` None reads HIPPODROME_WATCH_POLL)."""
    bursts: asyncio.Queue[list[str]] = asyncio.Queue()
    watcher = StackWatcher([Watched("", root, tuple(patterns))],
                           lambda _name, paths, _first: bursts.put_nowait(paths),
                           lambda _name, _text: None, debounce=debounce, poll=poll)
    watcher.start()
    try:
        while True:
            await on_change(await bursts.get())
    finally:
        await watcher.stop()
