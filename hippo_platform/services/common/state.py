"""Durable little files: atomic JSON replacement and a one-owner lock on a folder.

`atomic_write_*` writes to a new temp file in the target's own folder (so `os.replace`
stays a same-filesystem rename), fsyncs it, renames it over the target and fsyncs the
folder. Readers therefore see the old file or the new one, never half of one. The temp
name is unique per write: the reference used a fixed `*.tmp` name, and two writers at
once renamed each other's temp file away. It is made as `mkstemp` makes one (a random
name, created exclusively, never through a symlink, mode 0600) without tempfile, which
would bring random, shutil, bz2 and lzma into every service.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def new_temp_file(path: Path) -> tuple[int, Path]:
    """A new file beside `path`, open for writing, that no other writer can have."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, TEMP_FLAGS, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_json(path: Path, value: Any, *, fsync: bool = True) -> None:
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    atomic_write_bytes(path, data, fsync=fsync)


def read_json(path: Path, default: Any = None) -> Any:
    """The decoded file, or `default` when it does not exist (a corrupt file raises)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return default
    return json.loads(data)


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
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".lock", "a+b")  # noqa: SIM115 (held open on purpose)
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
