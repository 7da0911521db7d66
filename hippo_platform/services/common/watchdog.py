"""An in-process liveness check that ends its own process when the server stops answering.

The reference fake_cell once hung under load with its port still open: connects
succeeded, nothing answered, and every dependant failed slowly. A process cannot
notice that from inside its request path, but a separate thread probing /healthz over
a real socket can; on `failures` misses in a row it exits non-zero so the
orchestrator's auto-restart brings a fresh process back (state is already on disk).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from hippo_contract.http_client import BadAnswer, Connection, host_header, request_bytes
from hippo_platform.services.common.log import log_error

EXIT_WATCHDOG = 70


def _exit_now() -> None:
    os._exit(EXIT_WATCHDOG)  # a hung server cannot be shut down politely


class Watchdog:
    def __init__(
        self,
        health_url: str,
        *,
        interval: float = 5.0,
        timeout: float = 3.0,
        failures: int = 2,
        on_fail: Callable[[], None] = _exit_now,
    ) -> None:
        parts = urlsplit(health_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = parts.path or "/healthz"
        self.url = health_url
        self.interval = interval
        self.timeout = timeout
        self.failures = failures
        self.on_fail = on_fail
        self.misses = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def probe(self) -> str | None:
        """None when healthy, else why not."""
        request = request_bytes("GET", self._path, {
            "Host": host_header(self._host, self._port), "User-Agent": "hippodrome-watchdog",
            "Connection": "close"}, None)
        try:
            conn = Connection(self._host, self._port, self.timeout)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        try:
            status = conn.exchange(request).status
            return None if status == 200 else f"status {status}"
        except (OSError, BadAnswer) as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            problem = self.probe()
            if problem is None:
                self.misses = 0
                continue
            self.misses += 1
            log_error(f"watchdog: {self.url} failed ({problem}), {self.misses}/{self.failures}")
            if self.misses >= self.failures and not self._stop.is_set():
                log_error("watchdog: the server stopped answering; exiting for a restart")
                self.on_fail()
                return
