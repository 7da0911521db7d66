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

import contextlib
import errno
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
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip")
"""Rotated files by these names are compressed copies: never read as lines."""
MATCHED = 256
"""Bytes compared to tell a truncated log's copy (copytruncate's) from other files."""
HOLD_AT_MOST = 256
"""Files held open at once; past that, read by name (as before): a stack of a thousand
services would otherwise spend the descriptors every other open needs."""


def out_of_descriptors(exc: OSError) -> bool:
    """The open-files limit (`ulimit -n`), not the file: said as such by the caller, where
    a log was called "not a regular file" and the follow ended in a traceback (adv45
    R/17)."""
    return exc.errno in (errno.EMFILE, errno.ENFILE)


def say_left_out(path: Path) -> None:
    """Something other than a log stands under a log's name: said, never read."""
    print(f"hippodrome: {path} is not a regular file: left out", file=sys.stderr, flush=True)


class Followed:
    """Where one name was read to: its file then (inode, the file held open, and the
    path it had in its run's folder, which stays when `latest` moves on: read by that
    path when it could not be held) and the offset."""

    __slots__ = ("fh", "inode", "last", "offset", "real")

    def __init__(self, inode: int, offset: int, real: str, fh: BinaryIO | None) -> None:
        self.inode, self.offset, self.real, self.fh = inode, offset, real, fh
        self.last = b""
        """The last bytes read (at most MATCHED): how its copy is told after a truncation."""


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
        self.since = time.time()
        """When following began: a rotated file written since then may hold unread lines."""
        self.seen: dict[Path, set[int]] = {}
        """Per name, the files (inodes) it has been read from."""

    def begin(self, path: Path, inode: int, offset: int) -> None:
        """Follow `path` from `offset` (where the tail printed before ended)."""
        was = self.read_to[path] = Followed(inode, offset, os.path.realpath(path),
                                            self._hold(path, inode))
        self.seen.setdefault(path, set()).add(inode)
        start = max(0, offset - MATCHED)
        with contextlib.suppress(OSError):  # (what a truncation is told by)
            was.last = self._bytes_at(path, was, start, offset - start)

    def _bytes_at(self, path: Path, was: Followed, start: int, count: int) -> bytes:
        """Up to `count` bytes from `start` of `was`'s file: through the one held, else
        opened by `path`. OSError when it cannot be read."""
        if was.fh is not None:
            was.fh.seek(start)
            return was.fh.read(count)
        with self.open_log(path) as fh:
            fh.seek(start)
            return fh.read(count)

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
            self._rotated_between(path, info.st_ino, now)
            was = None
        if was is None:
            was = self.read_to[path] = Followed(info.st_ino, 0, os.path.realpath(path),
                                                self._hold(path, info.st_ino))
            self.seen.setdefault(path, set()).add(info.st_ino)
        elif info.st_size < was.offset:  # truncated in place
            self._truncated(path, was, now)
        if info.st_size > was.offset and not self._read(path, was, info.st_size, now):
            self._truncated(path, was, now)  # and written past where it was read to
            self._read(path, was, info.st_size, now)

    def _truncated(self, path: Path, was: Followed, now: float) -> None:
        """logrotate's copytruncate: what was written since the last look is in the copy
        only; read from there, or said, as `tail -F` says it, never skipped in silence
        (adv37 t/3). Then the file is read from its start."""
        if not self._from_copy(path, was, now):
            self.out.flush()
            print(f"hippodrome: {path} was truncated: lines written to it in the last "
                  "moment before may be only in its copy", file=sys.stderr, flush=True)
        was.offset, was.last = 0, b""
        self.partial.pop(path, None)

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

    def _siblings(self, path: Path, skip: int) -> list[tuple[float, Path, int]]:
        """Files beside `path` named for it (`a.log.2`, `a.log-20261206`; not compressed
        ones), written since following began and never read here: (mtime, path, inode)."""
        seen = self.seen.setdefault(path, set())
        found: list[tuple[float, Path, int]] = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(path.parent):
                name = entry.name
                if not name.startswith((path.name + ".", path.name + "-")) or \
                        name.endswith(COMPRESSED):
                    continue
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and info.st_ino not in seen and \
                        info.st_ino != skip and info.st_mtime >= self.since:
                    found.append((info.st_mtime, Path(entry.path), info.st_ino))
        return sorted(found)

    def _from_copy(self, path: Path, was: Followed, now: float) -> bool:
        """`path` was truncated under `was.offset`: the newest copy beside it that holds
        the bytes last read at the same place (copytruncate's `cp`) is read on from
        there. False when there is none."""
        start = was.offset - len(was.last)
        for _, copy, inode in reversed(self._siblings(path, was.inode)):
            rest = Followed(inode, was.offset, str(copy), None)
            try:
                if start < 0 or self._bytes_at(copy, rest, start, len(was.last)) != was.last:
                    continue
            except OSError:
                continue
            self.seen[path].add(inode)
            self._finish(path, rest, now)
            return True
        return False

    def _rotated_between(self, path: Path, new: int, now: float) -> None:
        """Rotated twice between two looks (`mv a.log a.log.1`, then the file the daemon
        made next renamed too): that middle file was never read, and its lines were
        skipped with no word (adv37 t/1). Files beside it named for it (`a.log.2`,
        `a.log-20261206`, not compressed ones) that were written since following began
        and never read here are read whole, oldest first."""
        seen = self.seen.setdefault(path, set())
        for _, rotated, inode in self._siblings(path, new):
            seen.add(inode)
            self._finish(path, Followed(inode, 0, str(rotated), None), now)

    def _read(self, path: Path, was: Followed, size: int, now: float) -> bool:
        """What was added since the last read; False, reading nothing, when the bytes
        read last are no longer where they were: the file was truncated and written
        again past that point between two looks, and its size alone did not show it."""
        if size <= was.offset:
            return True
        start = was.offset - len(was.last)
        try:
            data = self._bytes_at(path, was, start, min(size - start, READ_AT_ONCE))
        except OSError as exc:  # replaced by something that is no log meanwhile
            if out_of_descriptors(exc):
                raise
            return True
        if not data.startswith(was.last):
            return False
        data = data[len(was.last):]
        was.offset += len(data)
        was.last = (was.last + data)[-MATCHED:]
        self._take(path, data, now)
        return True

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
