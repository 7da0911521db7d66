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
from hippo_contract.small_file import Unusable, read_small_text
from hippo_platform.services.common.state import replace_all_or_none

__all__ = ["ENV_FILE", "SEED_FILE", "UnusableSeedFile", "read_env_file", "read_seed_file",
           "seeding", "write_seed_files", "write_seed_record"]


SEED_FILE_LIMIT = 8 * 1024 * 1024
"""Far above any record: a seeding writes a few KB."""


class UnusableSeedFile(ValueError):
    """seed.json is there but cannot be the record: one sentence, naming it and what to
    do. Read as "nothing seeded", a hand-edited one had its `accounts` dropped by the
    next seed's write, in silence, and each seed after made new accounts; a FIFO there
    hung `hd seed` and the stack's seed job (adv26 g/3)."""


def read_seed_file(root: Path) -> dict[str, Any]:
    """The last seed's record; {} when there is none. UnusableSeedFile otherwise."""
    path = root / SEED_FILE
    fix = ("move it away (it records each seed's account: keep a copy), then seed again")
    try:
        text = read_small_text(path, SEED_FILE_LIMIT)
    except FileNotFoundError:
        return {}
    except Unusable as exc:
        raise UnusableSeedFile(f"{path} {exc}: {fix}") from None
    except UnicodeDecodeError:
        raise UnusableSeedFile(f"{path} is not UTF-8 text: {fix}") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise UnusableSeedFile(f"{path} is nested too deeply to be a seed record: "
                               f"{fix}") from None
    except ValueError as exc:
        raise UnusableSeedFile(f"{path} is not valid JSON ({exc}): fix it, or {fix}") \
            from None
    if not isinstance(data, dict):
        raise UnusableSeedFile(f"{path} holds a JSON {type(data).__name__}, not the seed "
                               f"record (an object): {fix}")
    return data


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
