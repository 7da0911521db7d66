"""The request loop every server here runs (hippo_contract/http_loop.py), on a real
loopback socket with a short timeout: a head must arrive whole within it, however it
is trickled, and what comes after the head is not held to that deadline."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from hippo_contract.http_loop import RequestHandler, ThreadingServer

TIMEOUT_S = 1.0


class Echo(RequestHandler):
    timeout = TIMEOUT_S

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None) -> None:
        self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed(s: socket.socket) -> bool:
    """The server has closed its end (nothing it sent is expected here)."""
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline(port: int) -> None:
    """Each byte came well within the socket's timeout, so a head sent a byte every
    0.2 s held its thread for as long as the client kept it up (the daemon's 15 s
    were per read, not per head)."""
    head = b"POST / HTTP/1.1\r\nX-Slow: " + b"a" * 25 + b"\r\nContent-Length: 0\r\n\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            while sent < len(head) and not closed(s):
                s.sendall(head[sent:sent + 1])
                sent += 1
                time.sleep(0.2)  # the whole head takes ~12 s, each byte is in time
            answer = s.recv(1024)
        except OSError:
            answer = b""
    assert sent < len(head), "the whole trickled head was read: nothing held it to a deadline"
    assert answer == b"", answer


def test_the_deadline_is_per_head_and_a_body_after_it_keeps_its_own_time(port: int) -> None:
    """Two requests on one connection, each head late in its own window and each body
    after the head's window ended: both answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for n in range(2):
            time.sleep(TIMEOUT_S * 0.6)
            s.sendall(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n")
            time.sleep(TIMEOUT_S * 0.6)  # past the head's deadline, within the timeout
            s.sendall(b"%02d" % n)
            out = b""
            while not out.endswith(b"%02d" % n):
                chunk = s.recv(1024)
                assert chunk, f"request {n}: closed, {out!r}"
                out += chunk
            assert out.startswith(b"HTTP/1.1 200 "), out
