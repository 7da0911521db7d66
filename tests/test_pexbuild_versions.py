"""The PEX files are built for the CPython that builds them (3.11, 3.12 or 3.13); the
choices that do not need a full build (pexbuild.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hippo_tasks.packaging import pexbuild

REPO = Path(__file__).resolve().parents[1]


def test_the_version_is_part_of_what_decides_the_bytes() -> None:
    digests = {v: pexbuild.inputs_digest(REPO, v) for v in pexbuild.SUPPORTED}
    assert len(set(digests.values())) == len(pexbuild.SUPPORTED)
    assert pexbuild.interpreter_constraint("3.13") == "CPython==3.13.*"


def test_the_lock_serves_every_supported_version() -> None:
    """Universal: resolved from the floor with markers, and every wheel's hash, so a
    3.13 build finds cp313 wheels of the same pins."""
    text = (REPO / pexbuild.LOCK_PATH).read_text()
    assert "--universal" in pexbuild.LOCK_ARGS
    assert "; sys_platform == 'win32'" in text  # only a universal resolution keeps these
    match = re.search(r"^pydantic-core==.*?(?=^\S)", text, re.M | re.S)
    assert match is not None
    assert match.group(0).count("--hash=sha256:") > 20  # one per wheel, not one platform's


def test_an_unsupported_version_is_refused_before_anything_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hippo_tasks.packaging.pexbuild", "build",
         "--python-version", "3.9", "--out", str(tmp_path / "pex")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2
    assert "--python-version 3.9: supported are 3.11, 3.12, 3.13" in out.stderr
    assert not (tmp_path / "pex").exists()


def test_a_missing_interpreter_is_named(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    other = "3.13" if pexbuild.running_version() != "3.13" else "3.12"
    with pytest.raises(SystemExit, match=f"no working python{other} on PATH"):
        pexbuild.find_python(other)
    assert pexbuild.find_python(pexbuild.running_version()) == sys.executable
