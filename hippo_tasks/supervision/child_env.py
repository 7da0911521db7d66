"""The environment every child starts from, apart from the supervisor's machinery.

Its own module, stdlib only: `hd up` and `hd seed` need it before any daemon exists,
and importing it from the supervisor cost the CLI asyncio and the whole lifecycle
(about 40 ms of every `hd up`).
"""

from __future__ import annotations

import os
from pathlib import Path

from hippo_tasks.supervision.ownership import RUN_TOKEN_ENV
from hippo_tasks.supervision.scope import RUN_ENV


def child_env() -> dict[str, str]:
    """The environment children inherit: ours, minus what would confuse a child (and
    any ownership mark of a stack this daemon itself runs inside), plus the folder
    holding hippo_tasks (and hippo_platform) on PYTHONPATH, so `${python} -m ...` works from a
    plain checkout as well as from an install."""
    env = dict(os.environ)
    for key in ("PYTHONSTARTUP", "PYTHONINSPECT", RUN_ENV, RUN_TOKEN_ENV):
        env.pop(key, None)
    package_parent = str(Path(__file__).resolve().parents[2])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_parent not in paths and "HIPPODROME_PEX_DIR" not in env:
        env["PYTHONPATH"] = os.pathsep.join([package_parent, *paths])
    return env
