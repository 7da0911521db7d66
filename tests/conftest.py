"""Fixtures that clean up after themselves, even when a test fails.

Every project folder a test makes is remembered; its finalizer, and a sweep at the end
of the session, clean it up from its registry (`down --force` semantics), so no test
leaves a process or a port behind.
"""

from __future__ import annotations

import os
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

FALLBACK_ENV = "HIPPODROME_TEST_FALLBACK"
"""Test files (as noxfile's FALLBACK_SUITES names them) whose stacks run with the cgroup
path off: the newest Python runs them so in the same pytest run as the rest of the
suite (a second run for them cost CI its start-up and a tail of idle workers)."""


@pytest.fixture(autouse=True, scope="module")
def _fallback_mode(request: pytest.FixtureRequest) -> Iterator[None]:
    named = os.environ.get(FALLBACK_ENV, "").split()
    here = Path(request.path).resolve().relative_to(Path(__file__).resolve().parents[1])
    if str(here) not in named:
        yield
        return
    before = os.environ.get("HIPPODROME_CGROUP")
    os.environ["HIPPODROME_CGROUP"] = "off"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HIPPODROME_CGROUP", None)
        else:
            os.environ["HIPPODROME_CGROUP"] = before


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
    _end_daemons_under(getattr(session.config, "_tmp_path_factory", None))


def _end_daemons_under(factory: object) -> None:
    """Last resort: any daemon still writing a daemon.log under this session's temporary
    folders (one a failing test left with its registry moved, linked or deleted, where
    the sweep above cannot find it) is ended by pid: SIGTERM, then SIGKILL, and its
    guard ends its services. Only this session's folders, so no one else's stack."""
    import os
    import signal
    import time

    from hippo_tasks.supervision.scope import all_pids, daemon_log_folder

    try:
        base = str(factory.getbasetemp())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return
    me = os.getpid()
    left = [pid for pid in all_pids() if pid != me
            and (daemon_log_folder(pid) or "").startswith(base + os.sep)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [pid for pid in left if os.path.exists(f"/proc/{pid}")]
        if not left:
            return
