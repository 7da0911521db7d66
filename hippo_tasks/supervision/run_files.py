"""The run's log files: `.logs/<stamp>/<service>.log`, the `latest` link, pruning of
old runs, and what a disk that refuses writes does to them (logs.py's sink for files).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from hippo_tasks.model.textfile import open_regular_for_append, private_dir
from hippo_tasks.mounts import mount_points_in
from hippo_tasks.supervision.logs import LogChunk


class WriteTrouble:
    """Log files that cannot be written (disk full, file system gone read-only): what
    status, the API and the page show while it lasts. A plain class: `hd logs` loads
    this module, and a dataclass would bring dataclasses and inspect to it."""

    __slots__ = ("error", "since", "lines_dropped")

    def __init__(self, error: str, since: float, lines_dropped: int = 0) -> None:
        self.error = error
        self.since = since
        self.lines_dropped = lines_dropped

    def as_json(self) -> dict[str, object]:
        return {"error": self.error, "since": round(self.since, 3),
                "lines_dropped": self.lines_dropped}


class MountedInside(OSError):
    """A run folder holds another file system's mount point: left whole."""


def _remove_tree(folder: Path) -> None:
    """rm -r --one-file-system without shutil (it loads bz2 and lzma into the daemon for
    its whole life), and without recursion (3.11's os.walk recurses: a tree 1,100
    folders deep stops it). Links are removed, never followed. A folder on another
    device (a mount in an old run: a service's tmpfs, a bind mount) is never entered:
    pruning emptied the file system mounted there (adv58 F2). Such a run is left whole,
    MountedInside naming the mount, before anything of it is removed."""
    top = os.lstat(folder)
    order: list[str] = []
    stack = [os.fspath(folder)]
    while stack:  # first every folder, so a mount anywhere stops the whole removal
        path = stack.pop()
        order.append(path)
        with os.scandir(path) as listing:
            for entry in listing:
                if entry.is_dir(follow_symlinks=False):
                    if entry.stat(follow_symlinks=False).st_dev != top.st_dev:
                        raise MountedInside(errno.EBUSY, "another file system is mounted "
                                            "there", entry.path)
                    stack.append(entry.path)
    for path in reversed(order):  # deepest first
        with os.scandir(path) as listing:
            for entry in listing:
                if not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.path)
        os.rmdir(path)


NOT_REGULAR = "not a regular file (something else was put where this log file belongs)"


class RunFiles:
    """`.logs/<stamp>/<service>.log`, the `latest` link, and pruning of old runs.

    A write that fails (ENOSPC, EROFS) never reaches the service: its lines are counted
    as dropped, and once a write succeeds again the file gets a note saying how many
    were lost and since when, on a line of its own."""

    STAMP = "%Y%m%d-%H%M%S"
    _RUN = re.compile(r"^\d{8}-\d{6}(-\d+)?\Z")

    def __init__(self, logs_root: Path, keep: int, now: float | None = None,
                 publish: bool = True) -> None:
        """`publish`: point `latest` at the new run and prune old ones now; else at
        `publish()`, once the start is sure to go on (the daemon: after its first
        registry write)."""
        private_dir(logs_root, parents=True)
        stamp = time.strftime(self.STAMP, time.localtime(now))
        run = logs_root / stamp
        n = 1
        while True:
            try:
                run.mkdir(mode=0o755)  # not 0777 under umask 000: others could plant links
                break
            except FileExistsError:
                n += 1
                run = logs_root / f"{stamp}-{n}"
        self.dir = run
        self._files: dict[str, int] = {}
        self._mid_line: set[str] = set()
        """Services whose file ends in an unfinished line of the child's."""
        self.trouble: WriteTrouble | None = None
        self._dir_stamp = 0
        """The run folder's mtime when drop_replaced last looked: an idle daemon with 40
        services stat()ed 80 names every 2 s for nothing (a third of its idle CPU)."""
        self._dropped: dict[str, tuple[int, float, str]] = {}
        """Per service: lines not written, since when, why (for the recovery note)."""
        self._lost: dict[str, tuple[int, float, str]] = {}
        """Per service, every line not written this run (never reset by a note that got
        in between): what a failure names its log file with."""
        self._torn: set[str] = set()
        """Services whose last unwritten output ended mid-line: the recovery note, a line
        of its own, ends that line, so the line break that comes next ends nothing (it
        was an empty line after the note, adv53 F5)."""
        if publish:
            self.publish(keep)

    def publish(self, keep: int, say: Callable[[str], None] | None = None) -> None:
        """`latest` -> this run, and the runs past `keep` pruned (`say`: a run left as it
        is, for a mount in it or what cannot be removed)."""
        self._link_latest(self.dir.parent, self.dir)
        self.prune(self.dir.parent, keep, current=self.dir, say=say)

    def abandon(self) -> None:
        """A start refused before it was published (its registry could not be written):
        its empty folder goes, and `latest` and the older runs stay as they were. Each
        refused foreground `up` pointed `latest` at an empty run and pruned a real one,
        until every log of the runs to diagnose was gone (q/1)."""
        self.close()
        with contextlib.suppress(OSError):
            self.dir.rmdir()  # only if empty: nothing of a service's is ever removed

    @staticmethod
    def _link_latest(root: Path, run: Path) -> None:
        tmp = root / f".latest-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(run.name)
        try:
            os.replace(tmp, root / "latest")
        except OSError:  # a folder at `latest`: each refused `up` left a link (c/17)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    @classmethod
    def prune(cls, root: Path, keep: int, current: Path | None = None,
              say: Callable[[str], None] | None = None) -> list[Path]:
        """Remove the oldest runs past `keep` (the current one counted, never removed),
        whatever their services wrote into them (`${logs_dir}/traces/`). One that
        cannot be removed whole is left for the next start: a failed prune must never
        stop the stack from starting.

        Runs are named by local time, so after the clock went back (a time zone
        change, the end of summer time, `TZ=UTC` beside a shell in America/*) the
        current run's name sorted first, and it was pruned at its own start: every line
        of that run was lost, and `hd logs` said there were no logs."""
        runs = sorted(p for p in root.iterdir() if p.is_dir() and cls._RUN.match(p.name)
                      and not p.is_symlink() and p != current)
        removed = []
        for old in runs[: max(0, len(runs) + (current is not None) - max(keep, 1))]:
            try:
                mounted = mount_points_in(os.path.realpath(old))
                if mounted or os.lstat(old).st_dev != os.lstat(root).st_dev:
                    raise MountedInside(errno.EBUSY, "another file system is mounted "
                                        "there", mounted[0] if mounted else str(old))
                _remove_tree(old)
                removed.append(old)
            except MountedInside as exc:
                if say is not None:
                    say(f"hippodrome | left {old} as it is, not pruned: a file system is "
                        f"mounted at {exc.filename} (unmount it, then remove the folder)")
            except OSError as exc:  # (an immutable folder was left without a word: adv60 2)
                if say is not None:
                    say(f"hippodrome | left {old}, not pruned: cannot remove "
                        f"{exc.filename or old} ({exc.strerror or exc}); remove it by hand")
        return removed

    def reopen_if_gone(self) -> bool:
        """Make this run's folder again if it was deleted under us (`rm -rf .logs`,
        `git clean -xdf`): the open files would take every later line into deleted
        inodes, and `hd logs` would say there are no logs. True when it was gone."""
        if self.dir.is_dir():
            return False
        self.close()
        self._mid_line.clear()
        private_dir(self.dir.parent, parents=True)  # parents=True alone made it 0777
        self.dir.mkdir(mode=0o755, exist_ok=True)   # under umask 000
        self._link_latest(self.dir.parent, self.dir)
        return True

    def relink_latest(self) -> bool:
        """Point `latest` at this run again if the link was deleted (`rm .logs/latest`)
        while the run's folder stayed: `hd logs` said "no logs yet ... start the stack
        with `hd up`" beside a running stack, whose `up` then refused to start (adv51
        H/2). Whatever else stands there is left alone. True when it was made again."""
        latest = self.dir.parent / "latest"
        if os.path.lexists(latest) or not self.dir.is_dir():
            return False
        self._link_latest(self.dir.parent, self.dir)
        return True

    def drop_replaced(self) -> list[Path]:
        """Close the files deleted (`rm a.log`) or replaced (by a folder, a link, a pipe,
        another file) under their names since they were opened, so the next line opens
        the name again: a new file, or the trouble `status` shows while something else
        stands there. Every later line went into the deleted inode, `hd logs` said there
        was no log, and nothing said why. The paths that were closed."""
        closed: list[Path] = []
        try:  # a name deleted, renamed or made changes the folder: else nothing to look at
            stamp = os.stat(self.dir).st_mtime_ns
        except OSError:
            return closed
        if stamp == self._dir_stamp:
            return closed
        self._dir_stamp = stamp
        for service, fd in list(self._files.items()):
            path = self.path(service)
            try:
                here = os.stat(path, follow_symlinks=False)
                open_one = os.fstat(fd)
                same = (here.st_dev, here.st_ino) == (open_one.st_dev, open_one.st_ino)
            except OSError:
                same = False
            if not same:
                os.close(fd)
                del self._files[service]
                self._mid_line.discard(service)
                closed.append(path)
        return closed

    def path(self, service: str) -> Path:
        return self.dir / f"{service}.log"

    def _fd(self, service: str) -> int:
        """Never through a symlink, and never blocking: a link or a named pipe put where
        the file belongs (a service can write into `${logs_dir}`) would have had our
        writes land outside the project, or frozen the daemon's loop in open()."""
        fd = self._files.get(service)
        if fd is None:
            if os.path.islink(self.dir):  # the run's own folder, swapped for a link: its
                # files were opened through it, appending to another folder's (adv34 w/6)
                raise OSError(errno.EINVAL, f"{self.dir} is a symbolic link now, not the "
                              "run's folder: not written through it (remove the link)")
            try:
                fd = open_regular_for_append(self.path(service), NOT_REGULAR,
                                             follow_links=False)
            except OSError as exc:  # a link (ELOOP), a pipe (ENXIO), a folder (EISDIR):
                if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # the errno's
                    raise OSError(errno.EINVAL, NOT_REGULAR) from None  # words led nowhere
                raise
            self._files[service] = fd
            if os.fstat(fd).st_size == 0:  # a new file: no half line of ours to end first
                self._mid_line.discard(service)
        return fd

    def write_chunk(self, raw: bytes, chunk: LogChunk) -> None:
        service = chunk.service
        if chunk.system:
            raw = b"".join(b"--- hippodrome: " + line + b"\n" for line in chunk.lines)
        try:
            fd = self._fd(service)
            if service in self._dropped:
                self._write(service, fd, self._recovery_note(service))
                del self._dropped[service]  # only once it is written: still failing, the
                self._mid_line.discard(service)  # count and start time go on
            if chunk.system and service in self._mid_line:  # a note starts on its own line
                raw = b"\n" + raw
            if not chunk.system and service in self._torn:
                self._torn.discard(service)
                raw = raw.removeprefix(b"\n")
            self._write(service, fd, raw)
        except OSError as exc:
            self._failed(service, len(chunk.lines), exc)
            if not chunk.system:
                (self._torn.add if raw and not raw.endswith(b"\n") else
                 self._torn.discard)(service)
            return
        if chunk.system or raw.endswith(b"\n"):
            self._mid_line.discard(service)
        elif raw:
            self._mid_line.add(service)
        if self._dropped:  # the disk writes again: the others' notes too, not only once
            self._catch_up()  # each prints again (a stopped one never did: q/13)
        if not self._dropped:  # only once every failing file writes again: another
            self.trouble = None  # service's good write cleared a problem still going on

    def _catch_up(self) -> None:
        """Write the recovery note of every log that failed, as far as the disk lets."""
        for service in list(self._dropped):
            try:
                self._write(service, self._fd(service), self._recovery_note(service))
            except OSError:
                return
            del self._dropped[service]
            self._mid_line.discard(service)

    def _write(self, service: str, fd: int, raw: bytes) -> None:
        """All of `raw` or, as far as the disk lets, none: a write cut short by a full
        disk left the line it was in half there, read as a whole (wrong) line by
        anything parsing the log, and not counted as dropped (adv26 g/7). The part that
        went in is cut off again; where even that fails, the file is known to end
        mid-line."""
        view = memoryview(raw)
        done = 0
        try:
            while view:
                written = os.write(fd, view)
                done += written
                view = view[written:]
        except OSError:
            if done:
                try:
                    os.ftruncate(fd, os.fstat(fd).st_size - done)
                except OSError:
                    self._mid_line.add(service)
            raise

    def _failed(self, service: str, lines: int, exc: OSError) -> None:
        why = exc.strerror or str(exc)
        now = time.time()
        if self.trouble is None:
            self.trouble = WriteTrouble(why, now)
        self.trouble.error = why
        self.trouble.lines_dropped += lines
        lines = max(lines, 1)  # a piece of a line (its end still to come) is a line lost
        count, since, _ = self._dropped.get(service, (0, now, why))
        self._dropped[service] = (count + lines, since, why)
        count, since, _ = self._lost.get(service, (0, now, why))
        self._lost[service] = (count + lines, since, why)

    def unwritten(self, service: str) -> str | None:
        """What this service's log file lacks, for the failure that names the file: every
        line this run could not write there, a recovery note between them or not (a
        small note got in on a nearly full disk, the count was reset, and the failure
        named a file holding none of its 3,000 lines as whole, adv27 i/9)."""
        if service not in self._lost:
            return None
        count, since, why = self._lost[service]
        when = time.strftime("%H:%M:%S", time.localtime(since))
        return f"{count} line{'s' * (count != 1)} not written there: {why}, since {when}"

    def _recovery_note(self, service: str) -> bytes:
        count, since, why = self._dropped[service]
        lead = b"\n" if service in self._mid_line else b""
        when = time.strftime("%H:%M:%S", time.localtime(since))
        return lead + (f"--- hippodrome: {count} lines were not written here ({why}, "
                       f"since {when}); the daemon kept supervising\n").encode()

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
