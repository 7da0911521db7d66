"""Writing the manifests: one multi-document file per layout, `<DIR>/<layout>.yaml`,
replaced atomically (a reader never sees half of it; a failed write leaves the old).

Every OSError on the way (a read-only filesystem, a full disk, no permission) is the
one-line `-o DIR: ...` usage error (exit 2), never a traceback: even the cleanup of the
temporary file may fail on a filesystem that refused to make it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hippo_tasks.errors import UsageError


def write_manifests(folder: Path, layout: str, text: str) -> Path:
    data = text.encode("utf-8")  # before any file is made: a failure here leaves none
    _make_folder(folder)
    path = folder / f"{layout}.yaml"
    tmp = folder / f".{layout}.yaml.{os.getpid()}.tmp"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        left = "" if _remove(tmp) else f" (remove {tmp.name}, which could not be)"
        raise UsageError(f"-o {folder}: cannot write {path.name} ({exc.strerror or exc}); "
                         f"choose a folder you can write to; nothing was written{left}"
                         ) from exc
    return path


def _make_folder(folder: Path) -> None:
    try:
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"-o {folder}: exists and is not a folder; name a folder (it "
                             "is made if missing)")
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"-o {folder}: cannot make the folder ({exc.strerror or exc}); "
                         "choose a folder you can write to") from exc


def _remove(tmp: Path) -> bool:
    """Remove the temporary file if it was made; whether none is left. Its unlink may
    fail too (EROFS when it was never made), which must not hide the first error."""
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)
    return not os.path.lexists(tmp)
