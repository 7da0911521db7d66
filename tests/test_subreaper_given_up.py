"""A stack run in-process in process-group mode (tests/harness.py) makes the pytest
worker a child subreaper (ownership.establish). Kept afterwards, every later orphan of
that worker stayed its zombie: on CI a test's chain of orphans, a link a millisecond,
left 30,000 of them, the machine's pid table full and a dozen later tests failing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Harness, run
from stackutil import stack_header

from hippo_tasks.supervision.scope import stat_fields

ORPHAN = ("import os, time\nif os.fork():\n    os._exit(0)\n"
          "print(os.getpid(), flush=True)\nos.close(1)\nos.close(2)\ntime.sleep(30)\n")


def test_a_process_group_stack_run_in_process_leaves_no_subreaper_behind(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPPODROME_CGROUP", "off")
    text = stack_header(1) + '[services.web]\ncommand = ["sleep", "600"]\nreadiness = "none"\n'

    async def scenario(h: Harness) -> None:
        assert h.ownership.base is None
        assert await h.stack.start_and_wait() is None

    run(project, text, scenario)
    out = subprocess.run([sys.executable, "-c", ORPHAN], capture_output=True, text=True,
                         timeout=10, check=True)
    orphan = int(out.stdout)
    try:
        fields = stat_fields(orphan)
        assert fields is not None
        assert int(fields[1]) != os.getpid(), \
            "the orphan was adopted by this worker: it is still a subreaper"
    finally:
        os.kill(orphan, signal.SIGTERM)
