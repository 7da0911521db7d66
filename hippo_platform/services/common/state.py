"""Durable little files: atomic JSON replacement and a one-owner lock on a folder.

`atomic_write_*` writes to a new temp file in the target's own folder (so `os.replace`
stays a same-filesystem rename), fsyncs it, renames it over the target and fsyncs the
folder. Readers therefore see the old file or the new one, never half of one. The temp
name is unique per write: the reference used a fixed `*.tmp` name, and two writers at
once renamed each other's temp file away. It is made as `mkstemp` makes one (a random
name, created exclusively, never through a symlink, mode 0600) without tempfile, which
would bring random, shutil, bz2 and lzma into every service. `replace_all_or_none`
does the same for files that must change together: all of them, or none. Every other
open of a service's own state goes through `open_own`, and its folder through
`own_folder`: a regular file in a folder of its own, never through a link.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from hippo_contract.small_file import kind_of, open_regular

TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class StateFileError(RuntimeError):
    """A service's own state file or folder is something else: a link (committed to a
    repository, or planted), a named pipe, a folder. Never read or written through:
    fake_cell cut a linked `journal.jsonl`'s target to 0 bytes and wrote its journal
    there, seeded keys included (adv54 F7). The service says so and does not start."""


def _refused(path: Path) -> StateFileError:
    try:
        info = os.lstat(path)
    except OSError:
        return StateFileError(f"{path} cannot be opened as a file")
    if stat.S_ISLNK(info.st_mode):
        with contextlib.suppress(OSError):
            return StateFileError(
                f"{path} is a symbolic link (to {os.readlink(path)}): a service's state is "
                "never read or written through one; remove the link (the service makes "
                "the file again)")
    return StateFileError(f"{path} is {kind_of(info.st_mode)}, where the service keeps a "
                          "file: move it away (the service makes the file again)")


def open_own(path: Path, flags: int, mode: int = 0o644) -> int:
    """A descriptor on a state file of the service's own: a regular file, never through
    a link, never blocking on a named pipe (StateFileError otherwise)."""
    try:
        return open_regular(path, flags, "not a regular file", mode=mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.EINVAL):
            raise _refused(path) from None
        raise


def own_folder(folder: Path) -> None:
    """Make a service's state folder, which must be a folder here: it or the state root
    above it as a link had the service keep its files wherever the link led."""
    for part in (folder.parent, folder):
        if part.is_symlink():
            raise StateFileError(
                f"{part} is a symbolic link (to {os.readlink(part)}): a service's state is "
                "kept in its own folder, never through one; remove the link (the folder "
                "is made again)")
    folder.mkdir(parents=True, exist_ok=True)


def new_temp_file(path: Path) -> tuple[int, Path]:
    """A new file beside `path`, open for writing, that no other writer can have."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, TEMP_FLAGS, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def write_aside(path: Path, data: bytes, *, fsync: bool = True, mode: int = 0o600) -> Path:
    """A new temp file beside `path` holding `data`, ready to be renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if mode != 0o600:
                os.fchmod(handle.fileno(), mode)
            if fsync:
                os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    tmp = write_aside(path, data, fsync=fsync)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def _copy_aside(path: Path) -> Path | None:
    """What puts `path` back as it is now by one rename, or None when there is no such
    file: a copy of a regular file (its bytes and mode), else a second name for it (a
    symlink stays a link; a FIFO is not read, which would wait for a writer)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISREG(info.st_mode):
        return write_aside(path, path.read_bytes(), mode=stat.S_IMODE(info.st_mode))
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(6).hex()}.tmp")
        with contextlib.suppress(FileExistsError):
            os.link(path, tmp, follow_symlinks=False)
            return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def replace_all_or_none(files: Mapping[Path, bytes]) -> None:
    """Replace each file with its bytes, or leave them all as they were (two files that
    must agree, such as the seed's) and raise an OSError whose filename is the file that
    could not be written, not a temp file's. Every new file and a copy of every old one
    are written aside first, so a rename that fails after another went through is
    undone by one more rename, not by a write that could fail in turn."""
    temps: list[Path] = []
    staged: list[tuple[Path, Path, Path | None]] = []  # target, its new file, its old copy
    replaced: list[tuple[Path, Path | None]] = []
    path = Path()
    try:
        for path, data in files.items():
            new = write_aside(path, data)
            temps.append(new)
            old = _copy_aside(path)
            if old is not None:
                temps.append(old)
            staged.append((path, new, old))
        for path, new, old in staged:
            os.replace(new, path)
            replaced.append((path, old))
    except BaseException as exc:
        for done, old in reversed(replaced):
            with contextlib.suppress(OSError):
                if old is None:  # there was none: there is none again
                    done.unlink()
                else:
                    os.replace(old, done)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    finally:
        for tmp in temps:  # renamed away already when all went well
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    for folder in {path.parent for path in files}:
        fsync_dir(folder)


def write_or_cut_back(fd: int, data: bytes, size_before: int, path: Path) -> None:
    """Write `data` whole to an append-mode `fd`, or cut the file back to `size_before`
    and raise, naming `path` (a write on a descriptor names no file, and the answer
    must say which disk filled): a disk that fills mid-line left a partial line, the
    next acknowledged line was glued onto it, and both were dropped as one bad line at
    the next load."""
    view = memoryview(data)
    try:
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])
    except OSError as exc:
        os.ftruncate(fd, size_before)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def append_whole(path: Path, data: bytes) -> None:
    """Append `data` to `path` all or nothing (write_or_cut_back), made if missing."""
    fd = open_own(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        write_or_cut_back(fd, data, os.fstat(fd).st_size, path)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, value: Any, *, fsync: bool = True) -> None:
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    atomic_write_bytes(path, data, fsync=fsync)


def read_json(path: Path, default: Any = None) -> Any:
    """The decoded file, or `default` when it does not exist (a corrupt file raises)."""
    try:
        fd = open_own(path, os.O_RDONLY)
    except FileNotFoundError:
        return default
    with os.fdopen(fd, "rb") as handle:
        return json.loads(handle.read())


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` itself durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderLockedError(RuntimeError):
    pass


def lock_folder(folder: Path) -> IO[bytes]:
    """Hold an exclusive flock on `folder/.lock` for the life of the returned handle.

    Two processes writing one state folder would corrupt it; the kernel drops the lock
    when its holder dies, even by kill -9, so a crash never leaves a stale lock behind.
    """
    own_folder(folder)
    handle = os.fdopen(open_own(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_APPEND),
                       "a+b")  # held open
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise FolderLockedError(f"{folder} is in use by another process") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n".encode())
    handle.flush()
    return handle
