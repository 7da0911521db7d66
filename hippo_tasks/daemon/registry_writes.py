"""When the daemon writes registry.json: coalesced per loop turn and paced, retried
every second while the disk refuses, never into a folder that is no longer the
project's, and never again once the daemon has left it. What goes in is the engine's."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections.abc import Callable

from hippo_tasks.daemon.project_home import ProjectHome
from hippo_tasks.errors.state_dir import StateDirError
from hippo_tasks.registry.store import Registry
from hippo_tasks.supervision.run_files import WriteTrouble

Change = Callable[[dict[str, object]], None]

SYNC_SHARE = 0.2
"""At most this share of the daemon's time goes to registry writes a transition asks
for: after a write that took d seconds, the next waits until d / SYNC_SHARE after it
(0.5 ms for 10 services: 2.5 ms). The start's end and shutdown write at once."""


class RegistryWrites:
    def __init__(self, registry: Registry, home: ProjectHome, note: Callable[[str], None],
                 content: Callable[[], Change], before: Callable[[], None]) -> None:
        """`content`: the change that puts the stack as it is now into the registry.
        `before`: run ahead of every write but the first, written or not (the subreaper
        names the orphans it adopted to the guard then)."""
        self.registry = registry
        self._home = home
        self._note = note
        self._content = content
        self._before = before
        self.loop: asyncio.AbstractEventLoop | None = None
        self.trouble: WriteTrouble | None = None
        self.trouble_path: str = str(registry.path)
        """The file the trouble is with: the lock (`registry.lock` made a link while the
        stack ran) was said as registry.json, and a link as "Too many levels of symbolic
        links" (adv54 F6)."""
        self.written: tuple[int, int, int] | None = None
        """registry.json's file_key as this daemon last wrote it."""
        self._cleared = False
        """The daemon has left the registry: a write still waiting must not put it back."""
        self._pending = False
        self._handle: asyncio.Handle | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._next = 0.0
        """Loop time before which a transition's write waits (see soon)."""

    def soon(self) -> None:
        """Once per loop turn with transitions, and no sooner than SYNC_SHARE allows:
        each write holds every service, so a chain of N services, whose transitions come
        one per turn, wrote N services about 3N times (a 300-link chain spent most of its
        9 s start writing the registry)."""
        if not self._pending and self.loop is not None:
            self._pending = True
            wait = self._next - self.loop.time()
            self._handle = (self.loop.call_later(wait, self.now) if wait > 0
                            else self.loop.call_soon(self.now))

    def flush(self) -> None:
        """Write now what a transition's write is still waiting to (an action answers
        after this: a script reading registry.json then sees what the answer says)."""
        if self._pending:
            if self._handle is not None:
                self._handle.cancel()
            self.now()

    def changed_by_another(self) -> bool:
        """Another writer, or damage (truncated, overwritten), since our last write."""
        return self.written is not None and self.registry.file_key() != self.written

    def now(self, first: bool = False) -> None:
        """Write the stack as it is. A failed write (disk full, read-only) is retried
        every second until one succeeds, so the registry catches up instead of lagging
        for good. The `first`, before any service starts, must succeed (StateDirError):
        it is how `status` and `down` find this stack, and on a full disk a foreground
        `up` started every service anyway, and `hd down` from another terminal said there
        was nothing to stop."""
        self._pending = False
        self._handle = None
        if not first:
            self._before()
        if self._cleared or not (first or self._home.here()):
            return
        began = time.monotonic()
        try:  # on the loop: a lock held by a suspended `hd` must not stall the daemon
            self.registry.update(self._content(), wait=5.0 if first else 0.2)
        except (OSError, StateDirError) as exc:
            if first:
                raise exc if isinstance(exc, StateDirError) else \
                    StateDirError.from_os(exc, self.registry.path) from None
            self._next = 0.0
            why = exc.problem if isinstance(exc, StateDirError) else (exc.strerror or str(exc))
            where = exc.path if isinstance(exc, StateDirError) else str(self.registry.path)
            if why == os.strerror(errno.ELOOP):  # O_NOFOLLOW met a link
                why = "it is a symbolic link: remove it (Hippodrome makes the file again)"
            if self.trouble is None:
                self.trouble, self.trouble_path = WriteTrouble(why, time.time()), where
                self._note(f"hippodrome | cannot write {where} ({why}); retrying every second")
            if self._retry is None and self.loop is not None:
                self._retry = self.loop.call_later(1.0, self._again)
            return
        self.trouble = None
        self.written = self.registry.file_key()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.loop is not None:
            self._next = self.loop.time() + (time.monotonic() - began) / SYNC_SHARE

    def _again(self) -> None:
        assert self.loop is not None
        self._retry = self.loop.call_later(1.0, self._again)  # until one works
        self.now()

    def leave(self, change: Change) -> None:
        """The daemon's last write: no other follows it."""
        self._cleared = True
        if not self._home.here():  # a folder made since at the moved project's old path
            return
        with contextlib.suppress(OSError, StateDirError):  # a folder gone or unwritable
            self.registry.update(change)
