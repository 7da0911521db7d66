"""The clean-up from a registry (registry/cleanup.py) racing the daemon it outlived:
what the daemon removes as it finishes its own stop is gone, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from hippo_tasks.registry import cleanup
from hippo_tasks.supervision.ownership import new_token


def test_a_run_cgroup_removed_between_the_check_and_the_listing_is_no_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`down --force` (a test's teardown, CI, stop 52) found the run's cgroup, then the
    daemon, finishing its stop, removed it before it was listed: FileNotFoundError."""
    token = new_token(str(tmp_path))
    gone = tmp_path / f"hippodrome-{token}"  # proven the run's, then removed
    monkeypatch.setattr(cleanup, "is_hippodrome_cgroup", lambda path, tok: True)
    data = {"project_root": str(tmp_path), "daemon": {"token": token, "cgroup": str(gone)},
            "services": {}}
    scopes, names = cleanup.leftovers(data)
    assert names == {} and len(scopes) == 1  # the run's mark only
