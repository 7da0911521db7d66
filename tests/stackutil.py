"""Helpers for tests that run real stacks: free ports, project folders, the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
TOYS = REPO / "tests" / "toys"
PY = sys.executable
TOY = str(TOYS / "toy.py")
FLOOD = str(TOYS / "flood.py")
ESCAPER = str(TOYS / "escaper.py")


def free_ports(n: int) -> list[int]:
    """n distinct ports that were free a moment ago (bound to 0 together, then closed)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def hd(root: Path, *args: str, timeout: float = 120, check: bool = False,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `invoke ARGS --project-root ROOT` the way a user would, in a subprocess."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    cmd = [PY, "-m", "invoke", "-r", str(REPO), *args]
    if args and args[0] not in ("--list", "-l") and "--project-root" not in args:
        cmd += ["--project-root", str(root)]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                             f"stderr:\n{proc.stderr}")
    return proc


def registry(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / ".hippodrome" / "registry.json").read_text())
    return data


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, every: float = 0.02,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def alive(pid: int) -> bool:
    """Running and not a zombie (a zombie has already ended; only its exit status is left)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    out = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return out


def write_stack(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "hippodrome.toml"
    path.write_text(text)
    return path


def toy_service(name: str, port: int | None, *flags: str, **fields: Any) -> str:
    """A [services.NAME] table running tests/toys/toy.py with the given flags."""
    return script_service(name, TOY, port, *flags, **fields)


def escaper_service(name: str, port: int | None, *flags: str, **fields: Any) -> str:
    """A [services.NAME] table running tests/toys/escaper.py (setsid, double fork,
    draining on SIGTERM, late ready lines)."""
    return script_service(name, ESCAPER, port, *flags, **fields)


def script_service(name: str, script: str, port: int | None, *flags: str,
                   **fields: Any) -> str:
    argv = [PY, script, *(["--port", str(port)] if port else []), *flags]
    lines = [f"[services.{name}]", f"command = {json.dumps(argv)}"]
    if port:
        lines.append(f"port = {port}")
    for key, value in fields.items():
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(value)


def stack_header(dashboard_port: int, **settings: Any) -> str:
    lines = ["[stack]", "defaults = false", f"dashboard_port = {dashboard_port}"]
    lines += [f"{k} = {_toml(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n\n"
