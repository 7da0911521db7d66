"""The webhook's keep-alive pool against real HTTP servers that close idle connections:
a delivery never fails because the target closed a pooled socket while it sat idle.

Found by the MCP flow test under CI load: event_pipe's burst of seed events left several
connections in the pool; the exporter closed them idle; the one retry took another dead
one from the pool, and an event was recorded as 503 "closed the connection unanswered".
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from scripted_http import Scripted, running, serving

from hippo_contract.http_client import Stale
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


class _Counting(ThreadingHTTPServer):
    daemon_threads = True
    requests = 0
    """Requests whose body the handler read: what the service could have acted on."""
    heads = 0
    """Requests the handler was called for (it may act on the head alone)."""


class _SecondOnAConnection(BaseHTTPRequestHandler):
    """Answers a connection's first request. The second: `reset` closes the socket
    before reading the body (unread bytes: the kernel resets it, as one closed idle
    would), else it reads the body and closes unanswered (a handler that failed)."""

    protocol_version = "HTTP/1.1"
    server: _Counting
    reset = False

    def do_POST(self) -> None:
        self.server.heads += 1
        served = getattr(self, "served", 0)
        self.served = served + 1
        self.close_connection = bool(served)
        if served and self.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            return
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.requests += 1
        if served:
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ResetsSecond(_SecondOnAConnection):
    reset = True


@pytest.mark.parametrize("size", [2, 300_000], ids=["small", "larger than the buffers"])
def test_a_request_reset_after_it_went_is_not_sent_again(size: int) -> None:
    """The handler was called with the event and reset the connection (SO_LINGER 0, or
    a close with bytes unread, which the kernel turns into a reset): it may have acted
    on it, and the resend on a new connection handed it the event twice (adv59 F1).
    Larger than the socket buffers, the reset comes while the body is still going."""
    server = _Counting(("127.0.0.1", 0), _ResetsSecond)
    body = b'{"p": "' + b"x" * (size - 10) + b'"}' if size > 2 else b"{}"
    with running(server):
        port = server.server_address[1]
        pool = TargetPool(timeout=10)
        assert pool.post(port, "/e", body)[0] == 200  # pooled
        with pytest.raises(Stale) as failed:
            pool.post(port, "/e", body)  # reset after the head was read
        assert failed.value.written and failed.value.__cause__ is not None
        time.sleep(0.2)  # a resend would have reached the handler by now
        assert server.heads == 2, "the event was sent again"
        assert pool.post(port, "/e", body)[0] == 200  # a new connection, not the dead one
        assert server.heads == 3


def test_a_request_read_and_closed_unanswered_is_not_sent_again() -> None:
    """The handler read the event and failed: a resend would deliver it twice (found
    with a plain http.server handler that raised after recording the event)."""
    server = _Counting(("127.0.0.1", 0), _SecondOnAConnection)
    with running(server):
        port = server.server_address[1]
        pool = TargetPool(timeout=10)
        assert pool.post(port, "/e", b"{}")[0] == 200  # pooled
        with pytest.raises(Stale) as failed:
            pool.post(port, "/e", b"{}")
        assert failed.value.__cause__ is None, "a clean close, not a reset"
        time.sleep(0.2)  # a resend would have been read by now
        assert server.requests == 2, "the event was sent again"
