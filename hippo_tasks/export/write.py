"""Writing the manifests: one multi-document file per layout, `<DIR>/<layout>.yaml`,
replaced atomically (a reader never sees half of it; a failed write leaves the old).

Every OSError on the way (a read-only filesystem, a full disk, no permission) is the
one-line `-o DIR: ...` usage error (exit 2), never a traceback: even the cleanup of the
temporary file may fail on a filesystem that refused to make it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hippo_tasks.errors import UsageError, check_utf8
from hippo_tasks.model.textfile import replace_text


def write_manifests(folder: Path, layout: str, text: str) -> Path:
    # Written and said as `out\udcff`, a name found nowhere, which the `kubectl apply -f`
    # line printed next could not be pasted with (adv49 B/7).
    check_utf8("-o", str(folder), "the apply command printed must be")
    made = _make_folder(folder)
    path = folder / f"{layout}.yaml"
    tmp = folder / f".{layout}.yaml.{os.getpid()}.tmp"
    try:
        replace_text(path, text, tmp)
    except OSError as exc:
        left = f" (remove {tmp.name}, which could not be)" if os.path.lexists(tmp) else ""
        for new in reversed(made):  # "nothing was written" left an empty `k8s/` (adv56 7)
            with contextlib.suppress(OSError):
                new.rmdir()
        raise UsageError(f"-o {folder}: cannot write {path.name} ({exc.strerror or exc}); "
                         f"choose a folder you can write to; nothing was written{left}"
                         ) from exc
    return path


def _make_folder(folder: Path) -> list[Path]:
    """The folder made if missing; the ones this made, outermost first."""
    made = [f for f in (*reversed(folder.parents), folder) if not os.path.lexists(f)]
    try:
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"-o {folder}: exists and is not a folder; name a folder (it "
                             "is made if missing)")
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"-o {folder}: cannot make the folder ({exc.strerror or exc}); "
                         "choose a folder you can write to") from exc
    return made

