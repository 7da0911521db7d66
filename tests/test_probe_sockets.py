"""The readiness and liveness probes (supervision/probes.py) against real sockets: the
connect that skips the event loop when loopback has already completed it must still
tell a refused port, a listener that never answers and a wrong answer apart from a
healthy one, and never wait past its timeout."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from scripted_http import raw_server
from stackutil import free_ports

from hippo_tasks.supervision.probes import http_ok, tcp_ok


@pytest.fixture
def answering() -> Iterator[tuple[int, list[bytes]]]:
    """A raw server: answers each connection with the next canned bytes, then closes."""
    answers: list[bytes] = []

    def answer(conn: socket.socket) -> None:
        conn.recv(4096)
        if answers:
            conn.sendall(answers.pop(0))
        conn.close()

    with raw_server(answer) as port:
        yield port, answers


def run(coro: object) -> bool:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_answers_refusals_and_silence(answering: tuple[int, list[bytes]]) -> None:
    port, answers = answering
    answers += [b"HTTP/1.0 200 OK\r\n\r\n", b"HTTP/1.1 302 Found\r\n\r\n",
                b"HTTP/1.0 503 Unavailable\r\n\r\n", b"", b"garbage\r\n"]
    assert run(http_ok(port, "/healthz", 2.0)) is True
    assert run(http_ok(port, "/healthz", 2.0)) is True  # 3xx counts
    assert run(http_ok(port, "/healthz", 2.0)) is False  # 503
    assert run(http_ok(port, "/healthz", 2.0)) is False  # closed unanswered
    assert run(http_ok(port, "/healthz", 2.0)) is False  # not HTTP
    assert run(tcp_ok(port, 2.0)) is True
    (closed,) = free_ports(1)
    assert run(http_ok(closed, "/", 2.0)) is False
    assert run(tcp_ok(closed, 2.0)) is False


def test_a_listener_that_never_answers_is_unhealthy_at_the_probes_timeout() -> None:
    """Accepted by the kernel (the backlog), never read: connect succeeds at once, the
    answer never comes. The probe's own 0.3 s timeout must end it; the outer 10 s one
    only turns a probe that would hang into a failure instead of a stuck test."""
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(16)
    try:
        assert run(asyncio.wait_for(http_ok(mute.getsockname()[1], "/", 0.3), 10)) is False
        assert run(asyncio.wait_for(tcp_ok(mute.getsockname()[1], 0.3), 10)) is True
    finally:
        mute.close()
