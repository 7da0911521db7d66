"""`.hippodrome/seed.json` and `.env.e2e`: what seeding made, for people and test suites.

Both are replaced atomically (temp file, fsync, rename), so a suite starting while a
seed runs reads the old file or the new one, never half; and together, both or neither.
`.env.e2e` is written so both `source .env.e2e` in a shell (each line is
`export NAME='value'`) and dotenv parsers read it; the parser `hd e2e` uses is
hippo_contract.e2e_env's.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hippo_contract.e2e_env import ENV_FILE, NAME, SEED_FILE, read_env_file, seeding
from hippo_platform.services.common.state import read_json, replace_all_or_none

__all__ = ["ENV_FILE", "SEED_FILE", "read_env_file", "read_seed_file", "seeding",
           "write_seed_files", "write_seed_record"]


def read_seed_file(root: Path) -> dict[str, Any]:
    """The last seed's record, or {} when there is none or it cannot be read."""
    try:
        data = read_json(root / SEED_FILE, {})
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_seed_files(root: Path, record: Mapping[str, Any], values: Mapping[str, str],
                     header: str) -> None:
    """seed.json and .env.e2e both replaced, or (raising the OSError) neither: they name
    one seeding. Replacing seed.json and then failing on .env.e2e (immutable, a full
    disk) left seed.json naming the new seeding and .env.e2e the old one."""
    lines = [f"# {line}" for line in header.splitlines()]
    for name in values:
        if not NAME.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(str(values[name]))}")
    # Both are written mode 0600: they hold the API key.
    replace_all_or_none({
        root / SEED_FILE: _json_bytes(record),
        root / ENV_FILE: ("\n".join(lines) + "\n").encode("utf-8"),
    })


def write_seed_record(root: Path, record: Mapping[str, Any]) -> None:
    """seed.json alone, for a change that leaves the seeding it names (and so .env.e2e)
    as it was: an account just made, recorded before anything else can fail."""
    replace_all_or_none({root / SEED_FILE: _json_bytes(record)})


def _json_bytes(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, indent=2, sort_keys=False) + "\n").encode("utf-8")
