"""Python 3.11 is the floor: an older interpreter is refused at once with a sentence."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import pytest

from tests.stackutil import REPO


def _older_python() -> str | None:
    """A CPython older than 3.11 on this machine (PATH or pyenv), if there is one."""
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [shutil.which(f"python3.{minor}") for minor in (10, 9, 8)]
    candidates += sorted(glob.glob(f"{pyenv}/versions/3.1[0-9].*/bin/python3")
                         + glob.glob(f"{pyenv}/versions/3.[6-9].*/bin/python3"), reverse=True)
    for path in filter(None, candidates):
        out = subprocess.run([path, "-c", "import sys; print(sys.version_info < (3, 11))"],
                             capture_output=True, text=True, timeout=30, check=False)
        if out.returncode == 0 and out.stdout.strip() == "True":
            return path
    return None


@pytest.mark.parametrize("argv", [["-c", "import hippo_tasks"],
                                  ["-m", "hippo_tasks.tasks.program", "--list"],
                                  ["-c", "import tasks"]])
def test_older_python_is_refused_with_a_sentence(argv: list[str]) -> None:
    old = _older_python()
    if old is None:
        pytest.skip("no Python older than 3.11 on this machine")
    res = subprocess.run([old, *argv], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 1
    assert "hippodrome: Python 3.11 or newer is needed" in res.stderr
    assert "Traceback" not in res.stderr


def test_this_python_is_accepted() -> None:
    import hippo_tasks

    assert sys.version_info[:2] >= hippo_tasks.MIN_PYTHON
