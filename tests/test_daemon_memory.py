"""The daemon gives its start's freed heap back (daemon/memory.py); the saving itself
is measured by `nox -s bench` (daemon + guard PSS), not here."""

from __future__ import annotations

import subprocess
import sys

from hippo_tasks.daemon.memory import give_back_freed_memory


def test_the_heap_is_trimmed_on_glibc() -> None:
    assert give_back_freed_memory() is True


def test_without_ctypes_nothing_breaks() -> None:
    """Where ctypes cannot load (musl builds without it, a tight `ulimit -v`), the daemon
    goes on: only the saving is lost."""
    code = ("import sys; sys.modules['ctypes'] = None\n"
            "from hippo_tasks.daemon.memory import give_back_freed_memory as g\n"
            "print(g())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False", out
