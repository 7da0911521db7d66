"""The environment every child starts from, apart from the supervisor's machinery.

Its own module, stdlib only: `hd up` and `hd seed` need it before any daemon exists,
and importing it from the supervisor cost the CLI asyncio and the whole lifecycle
(about 40 ms of every `hd up`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hippo_tasks.supervision.ownership import RUN_TOKEN_ENV
from hippo_tasks.supervision.scope import RUN_ENV


def child_env() -> dict[str, str]:
    """The environment children inherit: ours, minus what would confuse a child (and
    any ownership mark of a stack this daemon itself runs inside). `for_program` adds
    what a child run by this very interpreter needs."""
    env = dict(os.environ)
    for key in ("PYTHONSTARTUP", "PYTHONINSPECT", RUN_ENV, RUN_TOKEN_ENV):
        env.pop(key, None)
    added = env.pop(ADDED, None)
    if added:  # a daemon started by `python -m` with the entry for_program gave it
        paths = env.get("PYTHONPATH", "").split(os.pathsep)
        if added in paths:
            paths.remove(added)
        if any(paths):
            env["PYTHONPATH"] = os.pathsep.join(paths)
        else:
            env.pop("PYTHONPATH", None)
    return env


def for_program(env: dict[str, str], argv: Sequence[str]) -> dict[str, str]:
    """`env` for running `argv`: when its program is this interpreter (`${python}`, the
    bundled services, the daemon itself), with the folder holding hippo_tasks and
    hippo_platform first on PYTHONPATH, so `${python} -m ...` works from a plain checkout
    as well as from an install. Only then: given to every child, it put this install's
    site-packages ahead of a service's own virtualenv, which then imported our yaml and
    pydantic_core (a 3.11 build under 3.12) and whose `pip install` found its
    requirements "already satisfied" (adv26 f/2)."""
    if not argv or argv[0] != sys.executable or "HIPPODROME_PEX_DIR" in env:
        return env
    package_parent = path_entry(PACKAGES)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_parent in paths:
        return env
    return {**env, "PYTHONPATH": os.pathsep.join([package_parent, *paths]),
            ADDED: package_parent}


PACKAGES = str(Path(__file__).resolve().parents[2])
"""The folder holding hippo_tasks, hippo_contract and hippo_platform."""


@functools.lru_cache(maxsize=4)
def path_entry(folder: str) -> str:
    """A PYTHONPATH entry naming `folder`. PYTHONPATH is split at ':', which a path may
    hold (a checkout in `/home/me/a:b`): Python read two entries, and every `${python}`
    service imported another copy of Hippodrome, or failed to import it (adv45 R/15).
    Such a folder is named through a link in this user's own folder under the temporary
    directory; where none can be made there, the folder as it is."""
    if os.pathsep not in folder:
        return folder
    import hashlib
    import stat
    import tempfile

    try:
        # absolute: TMPDIR=. is kept as ".", and each service's cwd read it anew (A/5)
        base = Path(os.path.abspath(tempfile.gettempdir())) / f"hippodrome-{os.getuid()}"
        base.mkdir(mode=0o700, exist_ok=True)
        info = base.lstat()
        if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
                or info.st_mode & 0o022 or os.pathsep in str(base)):
            return folder  # not ours alone: a link there could be swapped under us
        digest = hashlib.sha256(folder.encode("utf-8", "surrogateescape")).hexdigest()
        link = base / f"packages-{digest[:16]}"
        with contextlib.suppress(OSError):
            if os.readlink(link) == folder:
                return str(link)
        made = base / f".packages-{digest[:16]}-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            made.unlink()
        os.symlink(folder, made)
        os.replace(made, link)
        return str(link)
    except OSError:
        return folder


ADDED = "HIPPODROME_ADDED_PYTHONPATH"
"""The PYTHONPATH entry for_program added, so child_env takes it out again for a child
of that program (the daemon, when it is started as `python -m hippo_tasks.daemon`)."""
