"""Helpers for the tests of the data tooling: a free port range for a whole stack, and
the seed/probes/e2e tasks run through invoke's own CLI machinery in a subprocess.

The tasks are put in a namespace of their own here, so these tests do not depend on
whether `hippo_tasks.tasks.ns` registers them yet; the text after `--` reaches them
exactly as it would from `invoke e2e PATH -- ...`.
"""

from __future__ import annotations

import os
import random
import socket
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
STACK_PORTS = 20  # 9000-9019


def free_offset() -> int:
    """A --port-offset whose every stack port is free right now, all below Linux's
    ephemeral range (32768+), so no outgoing connection of another process can take
    one between this check and the service binding it."""
    for _ in range(100):
        offset = random.randrange(1000, 32768 - 9000 - STACK_PORTS, STACK_PORTS)
        socks: list[socket.socket] = []
        try:
            for port in range(9000 + offset, 9000 + offset + STACK_PORTS):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return offset
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no free range of stack ports found")


def run_task(root: Path, *args: str, timeout: float = 120,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`invoke <args> --project-root ROOT`, args after `--` kept after it."""
    words = list(args)
    cut = words.index("--") if "--" in words else len(words)
    words[cut:cut] = ["--project-root", str(root)]
    full_env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-c", TASK_RUNNER, *words], cwd=root, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
