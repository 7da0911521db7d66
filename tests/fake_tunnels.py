"""Fake tunnel tools (cloudflared, ngrok) on a PATH folder, for tests of the events tunnel.

The real tools cannot run here (no internet); these print what the real ones print for a
quick tunnel and then stay up, recording their PIDs so tests can end them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import psutil

TOYS = Path(__file__).resolve().parent / "toys"


class FakeTools:
    """A bin folder of fake tunnel tools, and the processes they started."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "fake-bin"
        self.state = root / "fake-state"
        self.empty = root / "empty-bin"
        for folder in (self.bin, self.state, self.empty):
            folder.mkdir(parents=True, exist_ok=True)

    def install(self, *tools: str) -> FakeTools:
        for tool in tools:
            script = self.bin / tool
            script.write_text(
                f'#!/bin/sh\nexec "{sys.executable}" "{TOYS / f"fake_{tool}.py"}" "$@"\n'
            )
            script.chmod(0o755)
        return self

    def started(self) -> dict[int, dict[str, object]]:
        """pid -> {"tool", "argv"} of every fake started so far."""
        out = {}
        for path in self.state.glob("*.json"):
            with contextlib.suppress(ValueError, OSError):
                out[int(path.stem)] = json.loads(path.read_text())
        return out

    def kill_all(self) -> None:
        """SIGKILL, by PID, every fake still running (checked by its command line)."""
        for pid in self.started():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if any("fake_" in part for part in psutil.Process(pid).cmdline()):
                    os.kill(pid, signal.SIGKILL)
