"""`hd logs --follow` over `.logs/latest/`: like `tail -F`, through `hd down` and into
the next `up`'s files.

A new run makes new files under the same names (`latest` is a link that moves). The
old run's file is read to its end before the new one is begun: a follower that looks
every 0.2 s switched as soon as it saw the new file, and whatever the old run wrote
after its last look (the service's last words at shutdown, a traceback at exit, the
stop notes) was never shown.

Each followed file is held open, as `tail -F` holds it: a log renamed away (logrotate's
`mv a.log a.log.1`) goes on growing under its new name until the daemon notices and
makes the name again, a second or two later. Read by name, those lines were never
shown, and nothing said so (adv36 f/2).
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from hippo_tasks.supervision.logs import MAX_LINE, pieces, utf8_edge
from hippo_tasks.terminal_text import line_for_terminal

UNFINISHED_S = 0.5
"""As the foreground terminal: a line left unfinished this long is shown as it is."""
READ_AT_ONCE = 1024 * 1024
"""A file is read at most this much per look: a log that grew by 200 MB at once is
printed as it is read, not held whole."""
HOLD_AT_MOST = 256
"""Files held open at once; past that, read by name (as before): a stack of a thousand
services would otherwise spend the descriptors every other open needs."""


def say_left_out(path: Path) -> None:
    """Something other than a log stands under a log's name: said, never read."""
    print(f"hippodrome: {path} is not a regular file: left out", file=sys.stderr, flush=True)


class Followed:
    """Where one name was read to: its file then (inode, the file held open, and the
    path it had in its run's folder, which stays when `latest` moves on: read by that
    path when it could not be held) and the offset."""

    __slots__ = ("fh", "inode", "offset", "real")

    def __init__(self, inode: int, offset: int, real: str, fh: BinaryIO | None) -> None:
        self.inode, self.offset, self.real, self.fh = inode, offset, real, fh


class Follower:
    def __init__(self, out: BinaryIO, prefix: Callable[[str], bytes],
                 open_log: Callable[[Path], BinaryIO],
                 shown: Callable[[bytes], bytes] = line_for_terminal) -> None:
        self.out = out
        self.shown = shown
        self.prefix = prefix
        self.open_log = open_log
        self.read_to: dict[Path, Followed] = {}
        self.partial: dict[Path, tuple[bytes, float]] = {}
        """Per name: a line not finished yet, and since when; shown once it has waited
        UNFINISHED_S (a prompt, a progress bar), as the foreground terminal does."""
        self.left_out: set[Path] = set()
        """Names seen holding something other than a log: said once."""
        self.held = 0
        """Files held open now (at most HOLD_AT_MOST)."""

    def begin(self, path: Path, inode: int, offset: int) -> None:
        """Follow `path` from `offset` (where the tail printed before ended)."""
        self.read_to[path] = Followed(inode, offset, os.path.realpath(path),
                                      self._hold(path, inode))

    def _hold(self, path: Path, inode: int) -> BinaryIO | None:
        """`path` open, if it is still the file `inode`; None when it cannot be held
        (HOLD_AT_MOST held already, or no descriptor left: read by name, as before)."""
        if self.held >= HOLD_AT_MOST:
            return None
        try:
            fh = self.open_log(path)
        except OSError:
            return None
        if os.fstat(fh.fileno()).st_ino != inode:
            fh.close()
            return None
        self.held += 1
        return fh

    def look(self, paths: list[Path]) -> None:
        """One look at every name: what was added since, and what waited long enough."""
        now = time.monotonic()
        for path in paths:
            self._look_at(path, now)
        for path, (rest, began) in list(self.partial.items()):
            if now - began >= UNFINISHED_S:
                self._emit(path, [rest])
                del self.partial[path]
        self.out.flush()

    def _look_at(self, path: Path, now: float) -> None:
        try:
            info = path.lstat()
        except FileNotFoundError:  # between runs, or renamed away: the file held (if it
            was = self.read_to.get(path)  # was) may still grow, the daemon writing on
            if was is not None and was.fh is not None:
                self._read(path, was, os.fstat(was.fh.fileno()).st_size, now)
            return
        if not stat.S_ISREG(info.st_mode):
            if path not in self.left_out:
                self.left_out.add(path)
                self.out.flush()
                say_left_out(path)
            return
        self.left_out.discard(path)
        was = self.read_to.get(path)
        if was is not None and was.inode != info.st_ino:
            self._finish(path, was, now)
            was = None
        if was is None:
            was = self.read_to[path] = Followed(info.st_ino, 0, os.path.realpath(path),
                                                self._hold(path, info.st_ino))
        elif info.st_size < was.offset:  # truncated in place
            was.offset = 0
            self.partial.pop(path, None)
        if info.st_size > was.offset:
            self._read(path, was, info.st_size, now)

    def _finish(self, path: Path, was: Followed, now: float) -> None:
        """The name holds a new file (a new run's, or the daemon's after a rename): the
        old one to its end first (held open, or in its run's folder), its unfinished
        line shown as it is. The daemon made the new one once it had stopped writing
        the old, so its end is the end."""
        try:
            fh = was.fh if was.fh is not None else self.open_log(Path(was.real))
            try:
                if os.fstat(fh.fileno()).st_ino == was.inode:
                    size = os.fstat(fh.fileno()).st_size
                    while was.offset < size:
                        fh.seek(was.offset)
                        data = fh.read(min(size - was.offset, READ_AT_ONCE))
                        if not data:
                            break
                        was.offset += len(data)
                        self._take(path, data, now)
            finally:
                fh.close()
                if was.fh is not None:
                    self.held -= 1
                was.fh = None
        except OSError:  # pruned, or replaced: nothing more to read of it
            pass
        rest, _ = self.partial.pop(path, (b"", now))
        if rest:
            self._emit(path, [rest])

    def _read(self, path: Path, was: Followed, size: int, now: float) -> None:
        if size <= was.offset:
            return
        try:
            if was.fh is not None:
                was.fh.seek(was.offset)
                data = was.fh.read(min(size - was.offset, READ_AT_ONCE))
            else:
                with self.open_log(path) as fh:
                    fh.seek(was.offset)
                    data = fh.read(min(size - was.offset, READ_AT_ONCE))
        except OSError:  # replaced by something that is no log meanwhile
            return
        was.offset += len(data)
        self._take(path, data, now)

    def _take(self, path: Path, data: bytes, now: float) -> None:
        before, began = self.partial.pop(path, (b"", now))
        *whole, rest = (before + data).split(b"\n")
        if whole:  # the unfinished line is a new one
            began = now
        while len(rest) > MAX_LINE:  # a line this long goes out in pieces as it comes
            cut = utf8_edge(rest, MAX_LINE)
            whole.append(rest[:cut])
            rest = rest[cut:]
        if rest:
            self.partial[path] = (rest, began)
        self._emit(path, [piece for line in whole for piece in pieces(line)])

    def _emit(self, path: Path, lines: list[bytes]) -> None:
        head = self.prefix(path.stem)
        for line in lines:
            self.out.write(head + self.shown(line) + b"\n")
