"""Reading a small regular file someone named, safely, for both sides (the orchestrator's
stack and .env files, the platform's seed.json).

`Path.read_text` follows whatever the name points at: a FIFO blocks forever, a link to
/dev/zero reads until memory runs out, a directory or a dangling link looked like "no
file" to `is_file()`. Here only a regular file of bounded size is read, opened without
blocking (a file swapped for a FIFO after a check still cannot hang), and anything else
is an Unusable naming what it is.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

MAX_BYTES = 4 * 1024 * 1024
"""Far above any stack or .env file people write (the bundled stack is ~20 KB)."""


class Unusable(ValueError):
    """The name exists but is not a readable regular file; the text says what it is."""


class Unopenable(Unusable):
    """The name exists but cannot be opened (no permission, a name too long): nothing
    is known of its content, so a caller must not take it for a corrupt file."""

    def __init__(self, text: str, error: OSError) -> None:
        super().__init__(text)
        self.error = error


def open_regular(path: Path, flags: int, not_regular: str, follow_links: bool = False,
                 mode: int = 0o644) -> int:
    """A descriptor on `path` opened with `flags`, without blocking (a named pipe with no
    reader or writer would hold the opener for ever: ENXIO instead) and only for a
    regular file (else OSError(EINVAL, `not_regular`)). A link there is refused (ELOOP)
    unless `follow_links`: Hippodrome's own files in `.hippodrome` and `.logs`, and the
    bundled services' state, are never written through one (a link committed to a
    cloned repository, or planted, had `hd up` append to or truncate the file it led to,
    adv24 c/12). The descriptor blocks again once opened."""
    flags |= os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    fd = os.open(path, flags, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, not_regular)
    os.set_blocking(fd, True)
    return fd


def open_regular_for_reading(path: Path, follow_links: bool = False) -> BinaryIO:
    """`open_regular` for reading, as a binary file: a log, a registry or daemon.log that
    a command looks into must not hold it for ever when a named pipe is put there."""
    return os.fdopen(open_regular(path, os.O_RDONLY, "not a regular file", follow_links), "rb")


def read_small_text(path: Path, limit: int = MAX_BYTES) -> str:
    """The file's text (UTF-8). FileNotFoundError when nothing has this name (not
    even a dangling link); Unusable for anything else that cannot be a text file;
    UnicodeDecodeError for bytes that are not UTF-8."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if os.path.islink(path):
            raise Unusable(f"is a symbolic link to {os.readlink(path)}, which does not "
                           "exist") from None
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unusable("is a symbolic link that leads back to itself (a loop)") from None
        raise Unopenable(f"cannot be opened: {exc.strerror or exc}", exc) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unusable(f"is {kind_of(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise Unusable(f"is {info.st_size} bytes; the limit is {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            # At most what fstat said plus a page: a 1 KB registry was read into a 4 MiB
            # buffer, a MemoryError traceback under a tight `ulimit -v`.
            chunk = os.read(fd, min(limit + 1 - size, max(info.st_size - size, 0) + 4096))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while we read
            raise Unusable(f"is over {limit} bytes")
    except OSError as exc:
        raise Unusable(f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8-sig")  # a BOM (Windows editors save one) is dropped


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"
