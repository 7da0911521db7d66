"""Writing the manifests: one multi-document file per layout, `<DIR>/<layout>.yaml`,
replaced atomically (a reader never sees half of it; a failed write leaves the old)."""

from __future__ import annotations

import os
from pathlib import Path

from hippo_tasks.errors import UsageError


def write_manifests(folder: Path, layout: str, text: str) -> Path:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"-o {folder}: exists and is not a folder; name a folder (it is "
                         "made if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"-o {folder}: cannot make the folder ({exc.strerror or exc}); "
                         "choose a folder you can write to") from exc
    path = folder / f"{layout}.yaml"
    tmp = folder / f".{layout}.yaml.{os.getpid()}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"-o {folder}: cannot write {path.name} ({exc.strerror or exc}); "
                         "choose a folder you can write to; nothing was written") from exc
    return path
