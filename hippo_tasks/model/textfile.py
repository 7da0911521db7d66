"""Reading a small text file a user named (the stack file, an `env_file`) safely (the
reading itself is hippo_contract/small_file.py's, which the platform's seed shares),
opening a file to append to (daemon.log, a service's log) where someone may have put
something else, and replacing a file a user reads (`hd init`'s starter, an export)
whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from hippo_contract.small_file import (
    MAX_BYTES,
    Unopenable,
    Unusable,
    open_regular,
    open_regular_for_reading,
    read_small_text,
)

__all__ = ["MAX_BYTES", "Unopenable", "Unusable", "not_utf8", "open_regular",
           "open_regular_for_append", "open_regular_for_reading", "private_dir",
           "read_small_text", "replace_text"]


def private_dir(path: Path, parents: bool = False) -> None:
    """`path` made (0755 under the umask), or as it was, but writable by no one else when
    it is ours: one made beforehand with `mkdir -m 777` (or a tmpfs mounted there, 1777)
    was used as it was, and another local user could plant files and links in
    `.hippodrome` or `.logs` (adv30 p's notes). A link is left as it is: `.logs ->
    ../shared` leads to a folder the user shares on purpose, and chmod through it took
    the others' write away (adv31 r/2). OSError when it cannot be made."""
    path.mkdir(mode=0o755, parents=parents, exist_ok=True)
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and \
                st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))


def not_utf8(exc: UnicodeDecodeError) -> str:
    """What read_small_text's decoding error means, with the line and what to do: it was
    Python's own words (`'utf-8' codec can't decode byte 0xff in position 0`)."""
    data = bytes(exc.object)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return ("is UTF-16 text (as some Windows editors save it); save it as UTF-8 "
                "(or run `iconv -f UTF-16 -t UTF-8`)")
    line = data[:exc.start].count(b"\n") + 1
    return (f"is not UTF-8 text (line {line}: byte 0x{data[exc.start]:02x}); save it as "
            "UTF-8")


def open_regular_for_append(path: Path, not_regular: str, follow_links: bool = False) -> int:
    """`open_regular` appending, the file made if missing."""
    return open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, not_regular,
                        follow_links)


def replace_text(path: Path, text: str, tmp: Path) -> None:
    """Write `text` to `tmp` beside `path`, then rename it over `path`: a reader never
    sees half a file and a failed write leaves the old one. The OSError that stopped it
    is raised; the temporary file is removed if it can be (on a read-only or full disk
    removing it can fail too, and that second error hid the first behind a traceback).
    Text that cannot be encoded fails before any file is made."""
    data = text.encode("utf-8")
    try:
        with contextlib.suppress(FileNotFoundError):  # what a crashed writer left there,
            os.unlink(tmp)  # or a link planted at the name: removed, never written through
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
