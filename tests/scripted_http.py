"""Real peers for tests of clients: an HTTP/1.1 server that answers from a script and
closes idle keep-alive sockets after 0.3 s (retries, pooling, stale connections), and a
raw listener whose connections a test handles byte by byte (probes)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Script = list[tuple[int, dict[str, Any] | bytes, float]]
"""(status, body, delay) per request: a dict is sent as AWS's JSON, bytes as HTML."""


class Scripted(ThreadingHTTPServer):
    """Answers each request with the next (status, body, delay) of its script."""

    daemon_threads = True

    def __init__(self, script: Script) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.script = script
        self.seen: list[dict[str, str]] = []
        self.connections: set[tuple[str, int]] = set()
        self.closed = 0  # connections the server has finished with

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 0.3  # an idle keep-alive socket is closed after this: a stale connection
    server: Scripted

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.seen.append({k.lower(): v for k, v in self.headers.items()})
        # By the client's address: id() of a socket object can be reused once freed.
        self.server.connections.add(self.client_address)
        status, body, delay = self.server.script.pop(0) if self.server.script else (200, {}, 0)
        time.sleep(delay)
        # bytes as they are (a web page's HTML), else AWS's JSON
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "text/html" if isinstance(body, bytes)
                             else "application/x-amz-json-1.0")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (the timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def finish(self) -> None:
        super().finish()
        self.server.closed += 1


@contextlib.contextmanager
def running(server: ThreadingHTTPServer) -> Iterator[None]:
    """Serve in a thread until the block ends; then stop and close, whatever happened."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def serving(script: Script | None = None) -> Iterator[Scripted]:
    server = Scripted(script or [])
    with running(server):
        yield server


@contextlib.contextmanager
def raw_server(on_connection: Callable[[socket.socket], None]) -> Iterator[int]:
    """A listener handing each accepted connection to `on_connection`."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            on_connection(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in held:
            conn.close()
