"""Helpers for the tests of the data tooling: a free port range for a whole stack, and
the seed/probes/e2e tasks run through invoke's own CLI machinery in a subprocess.

The tasks are put in a namespace of their own here, so these tests do not depend on
whether `hippo_tasks.tasks.ns` registers them yet; the text after `--` reaches them
exactly as it would from `invoke e2e PATH -- ...`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASK_RUNNER = (
    "import sys\n"
    "from invoke import Collection, Program\n"
    "from hippo_tasks.tasks import data\n"
    "ns = Collection()\n"
    "for t in (data.seed, data.probes, data.e2e):\n"
    "    ns.add_task(t)\n"
    "Program(namespace=ns, name='hd', binary='hd').run(['hd', *sys.argv[1:]])\n"
)


def run_task(root: Path, *args: str, timeout: float = 120,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`invoke <args> --project-root ROOT`, args after `--` kept after it."""
    words = list(args)
    cut = words.index("--") if "--" in words else len(words)
    words[cut:cut] = ["--project-root", str(root)]
    full_env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-c", TASK_RUNNER, *words], cwd=root, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
