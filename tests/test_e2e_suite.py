"""The bundled stack's own end-to-end suite (hippo_platform/e2e), run with `invoke e2e`
as a user would, against a real `hd up --profile ecom` stack: every flow passes (the
analytics flow skips, naming why: global_worker is external in ecom), and the same suite
run without the stack's .env.e2e skips instead of failing on missing URLs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from data_stack import REPO, run_task
from stackutil import free_offset, hd

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

FLOWS = ("test_forking", "test_aliasing", "test_import_export", "test_text_onboarding")


@pytest.fixture(scope="module")
def ecom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("e2e-suite") / "proj"
    root.mkdir()
    try:
        up = hd(root, "up", "--detach", "--profile", "ecom", "--port-offset",
                str(free_offset()), env={"HIPPODROME_RANDOM_SEED": "42"}, timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        yield root
    finally:
        hd(root, "down", timeout=60)
        force_down(Registry(root))


def test_invoke_e2e_runs_every_flow_against_ecom(ecom: Path) -> None:
    done = run_task(ecom, "e2e", "hippo_platform.e2e", "--", "--pyargs", "-v", "-rs",
                    "-p", "no:cacheprovider", timeout=180)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for flow in FLOWS:
        assert f"{flow}.py::" in out and "FAILED" not in out, out
    assert "5 passed, 1 skipped" in out and "global_worker is not answering" in out, out


def test_the_suite_skips_outside_a_stack(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ENVIRONMENT", "HIPPODROME_API_KEY")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "hippo_platform.e2e", "-q", "-rs",
         "-p", "no:cacheprovider"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped" in done.stdout and "invoke e2e hippo_platform.e2e" in done.stdout
