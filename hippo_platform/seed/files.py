"""`.hippodrome/seed.json` and `.env.e2e`: what seeding made, for people and test suites.

Both are replaced atomically (temp file, fsync, rename), so a suite starting while a
seed runs reads the old file or the new one, never half. `.env.e2e` is written so
both `source .env.e2e` in a shell (each line is `export NAME='value'`) and dotenv
parsers read it; the parser `hd e2e` uses is hippo_contract.e2e_env's.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hippo_contract.e2e_env import ENV_FILE, NAME, SEED_FILE, read_env_file, seeding
from hippo_platform.services.common.state import atomic_write_bytes, read_json

__all__ = ["ENV_FILE", "SEED_FILE", "read_env_file", "read_seed_file", "seeding",
           "write_env_file", "write_seed_file"]


def read_seed_file(root: Path) -> dict[str, Any]:
    """The last seed's record, or {} when there is none or it cannot be read."""
    try:
        data = read_json(root / SEED_FILE, {})
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_seed_file(root: Path, record: Mapping[str, Any]) -> Path:
    path = root / SEED_FILE
    text = json.dumps(record, indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
    path.chmod(0o600)  # it holds an API key
    return path


def write_env_file(root: Path, values: Mapping[str, str], header: str) -> Path:
    lines = [f"# {line}" for line in header.splitlines()]
    for name in values:
        if not NAME.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(str(values[name]))}")
    path = root / ENV_FILE
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    path.chmod(0o600)
    return path
