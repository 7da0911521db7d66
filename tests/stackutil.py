"""Helpers for tests that run real stacks: free ports, project folders, the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import random
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


PORT_LOW, PORT_HIGH = 10000, 32000
"""Where tests take their ports: below Linux's ephemeral range (32768+), so no outgoing
connection (or another process's bind to port 0) can take one between the check and
the service binding it, split between the pytest-xdist workers, so two workers never
choose the same port either."""
STACK_PORTS = 20
"""The bundled stack's ports: 9000-9019, moved by --port-offset."""


def worker_ports() -> range:
    """This test process's share of PORT_LOW..PORT_HIGH."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = (PORT_HIGH - PORT_LOW) // count
    return range(PORT_LOW + index * size, PORT_LOW + (index + 1) * size)


def port_free(port: int) -> bool:
    """Nothing holds the loopback port right now (a bind test: the truth for a server)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_HANDED: set[int] = set()
"""Ports this process has handed out: a port chosen for one service but not yet bound
is still free, so without this memory a second call could hand it out again (two
services of one fixture on one port; CI saw it)."""


def free_ports(n: int) -> list[int]:
    """n distinct ports of this worker's share that were free a moment ago and that this
    process has not handed out before (until half the share has been)."""
    share = worker_ports()
    if len(_HANDED) + n > len(share) // 2:
        _HANDED.clear()
    out: list[int] = []
    for _ in range(100 * n + 100):
        port = random.randrange(share.start, share.stop)
        if port not in out and port not in _HANDED and port_free(port):
            out.append(port)
            if len(out) == n:
                _HANDED.update(out)
                return out
    raise AssertionError(f"no {n} free ports in {share}")


def free_offset() -> int:
    """A --port-offset whose every bundled-stack port (9000-9019 moved) is free right
    now and in this worker's share."""
    share = worker_ports()
    if len(_HANDED) + STACK_PORTS > len(share) // 2:
        _HANDED.clear()
    for _ in range(200):
        first = random.randrange(share.start, share.stop - STACK_PORTS, STACK_PORTS)
        ports = range(first, first + STACK_PORTS)
        if _HANDED.isdisjoint(ports) and all(port_free(p) for p in ports):
            _HANDED.update(ports)
            return first - 9000
    raise AssertionError(f"no free range of stack ports in {share}")


VIA_INVOKE = os.environ.get("HIPPODROME_TEST_CLI", "hd") == "invoke"
"""`HIPPODROME_TEST_CLI=invoke`: every `hd(...)` below goes through `invoke` instead."""


def hd(root: Path, *args: str, timeout: float = 120, check: bool = False,
       env: dict[str, str] | None = None,
       via_invoke: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `hd ARGS --project-root ROOT` the way a user would, in a subprocess, or, with
    `via_invoke`, `invoke ARGS ...`. Both call the same task functions (hd reads the
    flags of the commands people repeat itself, and hands the rest to invoke's parser:
    tests/test_cli_imports.py holds the two to each other); invoke's own start costs
    ~0.12 s of CPU more a command, which over the suite's few thousand commands was
    about 40 % of its CPU. tests/test_invoke_path.py runs the commands through invoke."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    if via_invoke or VIA_INVOKE:
        cmd = [PY, "-m", "invoke", "-r", str(REPO), *args]
    else:
        cmd = [*HD_CLI, *args]
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


HD_CLI = [PY, "-c", "import sys; sys.argv[0] = 'hd'; from hippo_tasks.entry import cli; cli()"]
"""`hd` as installed (its console script's body), with this interpreter."""


def open_files(pid: int) -> dict[int, str]:
    """A process's descriptors and what each points at (/proc/PID/fd)."""
    out = {}
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            out[int(entry.name)] = os.readlink(entry)
    return out


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


def holds(pid: int, path: Path) -> bool:
    """Process `pid` has `path` open (a daemon its project's lifecycle lock: a seed of
    `hd up --detach` has it only once handed over, daemon/seed.py)."""
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    return True
    return False
