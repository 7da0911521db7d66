"""The peers' own virtual environments for bench_peers.py, made once under .bench/peers/.

Each peer (honcho, supervisord, circus) gets a venv of its own, installed from PyPI at a
pinned version, so its dependencies never touch Hippodrome's and the comparison is
reproducible. A venv is reused while its stamp names the same pin; a half-made one
(interrupted install) has no stamp and is made again.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / ".bench" / "peers"
PINS = {"honcho": "honcho==2.0.0", "supervisord": "supervisor==4.3.0",
        "circus": "circus==0.19.0"}
"""Peer name -> the requirement its venv is made from (the newest releases when written)."""


def ensure(name: str, python: str = sys.executable) -> Path:
    """The bin/ folder of `name`'s venv, made (or remade for a new pin) when needed."""
    pin = PINS[name]
    env = ENVS / name
    stamp = env / "bench-pin.txt"
    if stamp.exists() and stamp.read_text().strip() == pin:
        return env / "bin"
    if env.exists():
        shutil.rmtree(env)
    print(f"making {env} ({pin})", flush=True)
    subprocess.run([python, "-m", "venv", str(env)], check=True, timeout=300)
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", pin],
                   check=True, timeout=600)
    stamp.write_text(pin + "\n")
    return env / "bin"


def ensure_all() -> dict[str, Path]:
    return {name: ensure(name) for name in PINS}


if __name__ == "__main__":
    for peer, bindir in ensure_all().items():
        print(peer, bindir)
