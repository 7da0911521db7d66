"""The webhook's keep-alive pool against real HTTP servers that close idle connections:
a delivery never fails because the target closed a pooled socket while it sat idle.

Found by the MCP flow test under CI load: event_pipe's burst of seed events left several
connections in the pool; the exporter closed them idle; the one retry took another dead
one from the pool, and an event was recorded as 503 "closed the connection unanswered".
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from scripted_http import Scripted, running, serving

from hippo_tasks.daemon.webhook.forward import TargetPool


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    with serving() as server:
        yield server


def wait_closed(server: Scripted, count: int) -> None:
    deadline = time.monotonic() + 10
    while server.closed < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.closed == count, f"the server closed {server.closed} of {count}"


def test_a_pool_of_connections_closed_idle_costs_no_delivery(scripted: Scripted) -> None:
    port = scripted.server_address[1]
    pool = TargetPool(timeout=10)
    scripted.script = [(200, {"n": i}, 0.2) for i in range(3)]  # overlap: three sockets
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(pool.post(port, "/e", b"{}")[0]))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert answers == [200, 200, 200] and len(scripted.connections) == 3
    wait_closed(scripted, 3)  # each idle 0.3 s, then closed by the server
    for _ in range(3):
        assert pool.post(port, "/e", b"{}")[0] == 200
    assert len(scripted.seen) == 6, "each event was sent once: none on a dead socket"
    assert len(scripted.connections) == 4, "one new connection, reused after"


class _DropsSecond(BaseHTTPRequestHandler):
    """Answers a connection's first request; reads the second and closes unanswered: a
    target that dies between the pool's check and the send."""

    protocol_version = "HTTP/1.1"
    server: _Counting

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.requests += 1
        served = getattr(self, "served", 0)
        self.served = served + 1
        if served:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Counting(ThreadingHTTPServer):
    daemon_threads = True
    requests = 0


def test_a_request_dropped_on_a_reused_socket_is_sent_once_more_on_a_new_one() -> None:
    server = _Counting(("127.0.0.1", 0), _DropsSecond)
    with running(server):
        port = server.server_address[1]
        pool = TargetPool(timeout=10)
        assert pool.post(port, "/e", b"{}")[0] == 200  # pooled
        assert pool.post(port, "/e", b"{}")[0] == 200  # dropped on reuse, then a new one
        assert server.requests == 3
        # Once more only: with the target gone, the new connection's failure is the answer.
        server.shutdown()
        server.server_close()
        with pytest.raises(ConnectionRefusedError):
            pool.post(port, "/e", b"{}")
        assert server.requests == 4
