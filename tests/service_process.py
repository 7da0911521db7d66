"""Run a bundled service as a real process for a test.

`ServiceStarter` starts `python -m hippo_platform.services.NAME --port P` on a free
loopback port with the given env and arguments, waits until /healthz answers 200, and
stops every process it started, by PID, when its `with` block ends, even if the test
failed. Each child's stdout and stderr go to a file the test can read (`output()`),
never to a pipe that could fill up and block the child. The children run with their
working directory in the test's temporary folder, so default state paths land there.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from stackutil import free_ports

ROOT = Path(__file__).resolve().parents[1]
EXIT_CANNOT_LISTEN = 2


def free_port() -> int:
    """One free port of this worker's share (stackutil.free_ports says why)."""
    return free_ports(1)[0]


def get_status(port: int, path: str = "/healthz", timeout: float = 1.0) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class ServiceProcess:
    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.port = port
        self.proc = proc
        self.log_path = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout=timeout)

    def signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.pid, sig)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and the exit code."""
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> int:
        """SIGKILL, as a crash: nothing is flushed on the way out."""
        self.signal(signal.SIGKILL)
        return self.wait_exit(10.0)

    def stop(self) -> None:
        """Finalizer: SIGTERM, then SIGKILL if it does not go within 5 s."""
        if not self.running():
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=5.0)


class ServiceStarter:
    """Starts services into `folder`; `with` it so they are all stopped afterwards."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[ServiceProcess] = []

    def __enter__(self) -> ServiceStarter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        for svc in reversed(self.started):
            svc.stop()

    def start(
        self,
        name: str,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        ready_timeout: float = 15.0,
    ) -> ServiceProcess:
        """A healthy service; retries on a fresh port if the chosen one was taken."""
        for _attempt in range(3):
            svc = self.spawn(name, args=args, env=env, port=port or free_port())
            deadline = time.monotonic() + ready_timeout
            while svc.running() and time.monotonic() < deadline:
                if get_status(svc.port) == 200:
                    return svc
                time.sleep(0.02)
            if svc.running():
                svc.stop()
                raise AssertionError(f"{name} not healthy in {ready_timeout}s:\n{svc.output()}")
            if svc.proc.returncode != EXIT_CANNOT_LISTEN or port is not None:
                raise AssertionError(f"{name} exited {svc.proc.returncode}:\n{svc.output()}")
        raise AssertionError(f"{name}: no free port after 3 attempts")

    def spawn(
        self,
        name: str,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        port: int,
    ) -> ServiceProcess:
        """Start without waiting for health (for tests of start-up failures)."""
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        child_env.pop("HIPPODROME_STATE_DIR", None)
        child_env.update(env or {})
        log = self.folder / f"{name}-{port}-{len(self.started)}.log"
        cmd = [sys.executable, "-m", f"hippo_platform.services.{name}", "--port", str(port)]
        with open(log, "wb") as sink:
            proc = subprocess.Popen(
                [*cmd, *args],
                cwd=self.folder,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        svc = ServiceProcess(name, port, proc, log)
        self.started.append(svc)
        return svc
