"""Fixtures that clean up after themselves, even when a test fails.

Every project folder a test makes is remembered; its finalizer, and a sweep at the end
of the session, clean it up from its registry (`down --force` semantics), so no test
leaves a process or a port behind.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from hippo_tasks.registry.cleanup import force_down  # noqa: E402
from hippo_tasks.registry.store import Registry  # noqa: E402

_ROOTS: list[Path] = []


def _sweep(root: Path) -> None:
    if (root / ".hippodrome" / "registry.json").exists():
        force_down(Registry(root))


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """An empty project folder; whatever stack runs in it is cleaned up afterwards."""
    root = tmp_path / "proj"
    root.mkdir()
    _ROOTS.append(root)
    yield root
    _sweep(root)


@pytest.fixture
def project2(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "proj2"
    root.mkdir()
    _ROOTS.append(root)
    yield root
    _sweep(root)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for root in _ROOTS:
        with contextlib.suppress(OSError):
            _sweep(root)
