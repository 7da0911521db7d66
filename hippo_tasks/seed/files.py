"""`.hippodrome/seed.json` and `.env.e2e`: what seeding made, for people and test suites.

Both are replaced atomically (temp file, fsync, rename), so a suite starting while a
seed runs reads the old file or the new one, never half. `.env.e2e` is written so
both `source .env.e2e` in a shell (each line is `export NAME='value'`) and dotenv
parsers read it; `read_env_file` is the parser `invoke e2e` uses.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hippo_tasks.services.common.state import atomic_write_bytes, read_json

SEED_FILE = Path(".hippodrome") / "seed.json"
ENV_FILE = Path(".env.e2e")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        if not _NAME.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(str(values[name]))}")
    path = root / ENV_FILE
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    path.chmod(0o600)
    return path


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines, with an optional `export `, quotes as a shell would read them.

    Comments and blank lines are skipped; a line that is not an assignment is a
    ValueError naming its line number, since silently ignoring it could hide a typo.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        name, sep, rest = line.partition("=")
        if not sep or not _NAME.match(name.strip()):
            raise ValueError(f"{path}:{number}: expected NAME=value, got {raw.strip()!r}")
        try:
            words = shlex.split(rest, comments=True)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
        values[name.strip()] = " ".join(words)
    return values
