"""Where a project lives and what it is called: root detection and the table prefix."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT_MARKERS = ("hippodrome.toml", "tasks.py")


def find_project_root(
    start: Path | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """Nearest parent holding a marker, else HIPPODROME_SRC_DIR, else the start folder."""
    env = os.environ if env is None else env
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).is_file() for marker in ROOT_MARKERS):
            return folder
    src = env.get("HIPPODROME_SRC_DIR")
    if src:
        return Path(src).resolve()
    return here


def sanitize_branch(branch: str) -> str:
    """`feature/add-auth` -> `feature-add-auth`: safe in AWS resource names."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", branch).strip("-").lower()
    return cleaned or "local"


def git_branch(root: Path) -> str | None:
    """The checked-out branch, also on an unborn one (`git init -b x`, no commit yet);
    None outside git and on a detached HEAD."""
    try:
        out = subprocess.run(
            ["git", "symbolic-ref", "--quiet", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    branch = out.stdout.strip()
    if out.returncode != 0 or not branch or branch == "HEAD":
        return None
    return branch


def default_table_prefix(root: Path) -> str:
    branch = git_branch(root)
    return f"dev-{sanitize_branch(branch)}-" if branch else "dev-local-"
