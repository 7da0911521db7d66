"""`.env.e2e`: written by the platform's seed job, read by `invoke e2e` (DESIGN section 3).

Each line is `export NAME='value'`, so both `source .env.e2e` in a shell and dotenv
parsers read it; `read_env_file` is the one parser, so the writer's quoting and the
reader's can never drift apart.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ENV_FILE = Path(".env.e2e")
SEED_FILE = Path(".hippodrome") / "seed.json"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


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
        if not sep or not NAME.match(name.strip()):
            raise ValueError(f"{path}:{number}: expected NAME=value, got {raw.strip()!r}")
        try:
            words = shlex.split(rest, comments=True)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
        values[name.strip()] = " ".join(words)
    return values
