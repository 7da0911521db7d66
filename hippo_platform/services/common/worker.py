"""A service's background loop on its own thread: started with the server, stopped on
SIGTERM, and reported by `/healthz` while it lives (the queue consumer, the drainer)."""

from __future__ import annotations

import threading


class BackgroundLoop:
    """Subclasses write `run`, which returns once `stop_event` is set."""

    def __init__(self, name: str) -> None:
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)

    def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def alive(self) -> bool:
        """Running, or not started yet (a service answering before its loop began)."""
        return self.thread.is_alive() or not self.thread.ident
