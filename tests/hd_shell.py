"""Running `hd` as a user types it: a shell line, `hd` found on PATH, ports moved free.

The console script beside this interpreter is used when it exists (an installed
package); otherwise a two-line `hd` script that runs the same entry point.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from stackutil import REPO, free_ports, port_free


def hd_bin_dir(scratch: Path) -> Path:
    """A folder holding an `hd` for this interpreter, to put first on PATH."""
    installed = Path(sys.executable).parent / "hd"
    if installed.is_file() and os.access(installed, os.X_OK):
        return installed.parent
    scratch.mkdir(parents=True, exist_ok=True)
    script = scratch / "hd"
    script.write_text("#!/bin/sh\nexec " + shlex.quote(sys.executable)
                      + " -c 'from hippo_tasks.entry import cli; cli()' \"$@\"\n")
    script.chmod(0o755)
    return scratch


def free_offset(ports: list[int]) -> int:
    """A HIPPODROME_PORT_OFFSET under which every one of `ports` is free just now."""
    for _ in range(100):
        offset = free_ports(1)[0] - min(ports)
        moved = [p + offset for p in ports]
        if all(0 < p < 65536 and port_free(p) for p in moved):
            return offset
    raise AssertionError(f"no offset frees all of {ports}")


@dataclass
class Shell:
    """Runs shell lines one at a time, keeping the working directory between them as
    an interactive shell would (`cd` on one line holds for the next)."""

    cwd: Path
    env: dict[str, str]
    scratch: Path
    """Where the shell leaves its last working directory (outside the user's folders)."""

    def run(self, line: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        self.scratch.mkdir(parents=True, exist_ok=True)
        where = self.scratch / "cwd"
        script = f'trap \'pwd > "$HD_SHELL_CWD_FILE"\' EXIT\n{line}\n'
        proc = subprocess.run(["bash", "-c", script], cwd=self.cwd,
                              env={**self.env, "HD_SHELL_CWD_FILE": str(where)},
                              capture_output=True, text=True, timeout=timeout)
        if where.is_file():
            self.cwd = Path(where.read_text().strip())
            where.unlink()
        return proc


def user_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """This environment with `hd` first on PATH, no colour, and hippo_tasks importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env
