"""The CLI's socket client (daemon/client_http.py) against raw sockets and a real daemon:
every way a peer can answer badly is an error that names the daemon and says what to
do (never a traceback), and a name typed by the user cannot break the request line."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scripted_http import raw_server
from stackutil import free_ports

from hippo_tasks.daemon.client import DaemonClient, HippoErrorFromDaemon
from hippo_tasks.errors import RequestTimeoutError, UnknownServiceError
from hippo_tasks.errors.daemon import DaemonUnreachableError


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            want = int(line.split(b":")[1])
            while len(body) < want:
                body += conn.recv(4096)
    return data


@pytest.fixture
def scripted() -> Iterator[tuple[DaemonClient, list[Callable[[socket.socket], None]],
                                 list[bytes]]]:
    """A client whose 'daemon' runs the next scripted reply per connection; what each
    connection sent is kept."""
    replies: list[Callable[[socket.socket], None]] = []
    seen: list[bytes] = []

    def on_connection(conn: socket.socket) -> None:
        seen.append(read_request(conn))
        replies.pop(0)(conn)
        conn.close()

    with raw_server(on_connection) as port:
        yield DaemonClient(f"http://127.0.0.1:{port}", 4242), replies, seen


def send(data: bytes, by_byte: bool = False) -> Callable[[socket.socket], None]:
    def reply(conn: socket.socket) -> None:
        if by_byte:
            for i in range(len(data)):
                conn.sendall(data[i:i + 1])
        else:
            conn.sendall(data)
    return reply


def answer(status: str, body: object, length: bool = True) -> bytes:
    raw = json.dumps(body).encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
    if length:
        head += f"Content-Length: {len(raw)}\r\n"
    return head.encode() + b"\r\n" + raw


def test_answers_whole_split_or_without_a_length(scripted: tuple) -> None:
    client, replies, seen = scripted
    chunked = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n4\r\n{\"d\"\r\n3;x=1\r\n: 4\r\n"
               b"1\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n")
    replies += [send(answer("200 OK", {"a": 1}), by_byte=True),
                send(answer("200 OK", {"b": [1, 2]}, length=False)),
                send(answer("200 OK", {"c": "x" * 2_000_000})),
                send(chunked, by_byte=True)]
    assert client.call("GET", "/api/status") == {"a": 1}
    assert client.call("POST", "/api/x", {"k": "v"}) == {"b": [1, 2]}
    # No cap on the CLI's side (the webhook's is 1 MiB): a large `hd logs` page is whole.
    assert client.call("GET", "/big") == {"c": "x" * 2_000_000}
    assert client.call("GET", "/chunked") == {"d": 4}
    head, _, body = seen[1].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /api/x HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{client.url.rsplit(':', 1)[1]}".encode() in head
    assert json.loads(body) == {"k": "v"}


@pytest.mark.parametrize("reply, says", [
    (b"", "closed the connection without answering"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10", "cut short in its headers"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\"",
     "cut short in its body (4 of 10 bytes)"),
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP status line: b'SSH-2.0"),
    (b"HTTP/1.1 2xx OK\r\n\r\n", "not an HTTP status line"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000, "a header line over 64 KiB"),
], ids=["silent", "head cut", "body cut", "not http", "bad status", "endless head"])
def test_a_bad_answer_is_an_unreachable_daemon(scripted: tuple, reply: bytes,
                                               says: str) -> None:
    client, replies, _ = scripted
    replies.append(send(reply))
    with pytest.raises(DaemonUnreachableError) as err:
        client.status()
    assert says in err.value.message()
    assert "pid 4242" in err.value.message() and "hd down --force" in err.value.message()


def test_error_statuses_keep_their_meaning(scripted: tuple) -> None:
    client, replies, _ = scripted
    replies += [send(answer("404 Not Found", {"type": "UnknownServiceError",
                                              "service": "wbe", "services": ["web", "db"]})),
                send(answer("504 Gateway Timeout", {"error": "slow"})),
                send(answer("409 Conflict", {"error": "shutting down"})),
                send(b"HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\nplain")]
    with pytest.raises(UnknownServiceError) as unknown:
        client.action("restart", "wbe")
    assert "did you mean 'web'" in unknown.value.message()
    with pytest.raises(RequestTimeoutError):
        client.action("restart", "web")
    with pytest.raises(HippoErrorFromDaemon, match="409: shutting down"):
        client.action("stop", "web")
    with pytest.raises(HippoErrorFromDaemon, match="500: plain"):
        client.status()


def test_a_typed_name_cannot_break_the_request_line(scripted: tuple) -> None:
    client, replies, seen = scripted
    # Each action asks /healthz first (an answer within 10 s), then posts.
    replies += [send(answer("200 OK", {"status": "ok"})),
                send(answer("200 OK", {"services": [], "ok": True, "problems": []}))] * 2
    client.action("restart", "web\r\nX-Injected: 1")
    client.action("restart", "wéb ünïcode")
    assert seen[0].split(b"\r\n")[0] == b"GET /healthz HTTP/1.1"
    first = seen[1].split(b"\r\n")
    assert first[0] == b"POST /api/services/web%0D%0AX-Injected%3A%201/restart HTTP/1.1"
    assert not any(line.startswith(b"X-Injected") for line in first)
    assert seen[3].split(b"\r\n")[0] == \
        b"POST /api/services/w%C3%A9b%20%C3%BCn%C3%AFcode/restart HTTP/1.1"


def test_refused_and_silent_peers(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    with pytest.raises(DaemonUnreachableError, match="refused"):
        DaemonClient(f"http://127.0.0.1:{port}", 1).status()
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        client = DaemonClient(f"http://127.0.0.1:{listener.getsockname()[1]}", 1)
        with pytest.raises(DaemonUnreachableError, match="timed out"):
            client.call("GET", "/api/status", timeout=0.3)
    finally:
        listener.close()


@pytest.mark.parametrize(("target", "headers"), [
    ("/a b", {}),
    ("/a\r\nX-Injected: 1", {}),
    ("/a\x00", {}),
    ("", {}),
    ("/a", {"X-Name": "v\r\nX-Injected: 1"}),
    ("/a", {"X-Bad:Name": "v"}),
    ("/a", {"": "v"}),
])
def test_a_request_that_would_break_apart_is_refused_before_sending(
        target: str, headers: dict[str, str]) -> None:
    """The shared client (hippo_contract/http_client.py) refuses what http.client
    refused: a target or header that would split the request or inject a header."""
    from hippo_contract.http_client import request_bytes

    with pytest.raises(ValueError):
        request_bytes("GET", target, {"Host": "127.0.0.1", **headers}, None)


def test_request_bytes_frames_bodies_as_http_client_does() -> None:
    from hippo_contract.http_client import request_bytes

    assert request_bytes("GET", "/x", {"Host": "h"}, None) == b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    assert request_bytes("POST", "/x", {"Host": "h"}, None).endswith(b"Content-Length: 0\r\n\r\n")
    assert request_bytes("PUT", "/x", {"Host": "h"}, b"abc").endswith(
        b"Content-Length: 3\r\n\r\nabc")
    given = request_bytes("PUT", "/x", {"Host": "h", "content-length": "3"}, b"abc")
    assert given.lower().count(b"content-length") == 1


@pytest.mark.parametrize(("last_words", "said"), [
    ("hippodrome | shutting down (shutdown requested)\n", "the stack was shut down"),
    ("hippodrome | shutting down (SIGTERM)\nTraceback (most recent call last):\n  x\n"
     "RuntimeError: boom\n", "it was killed or crashed"),
    ("hippodrome | dashboard: http://127.0.0.1:1\n", "it was killed or crashed"),
])
def test_a_daemon_gone_mid_request_is_told_a_shutdown_from_a_crash(
        tmp_path: Path, last_words: str, said: str) -> None:
    """`hd start` meeting a graceful `hd down` as the daemon closed its port (a reset)
    said "it was killed or crashed" (adv32 t/4): its daemon.log's last line says which."""
    import subprocess
    import sys

    from hippo_tasks.errors import HippoError
    from hippo_tasks.tasks.output import exit_code_for

    log = tmp_path / "daemon.log"
    log.write_text("hippodrome | an earlier run\n" + last_words)
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        client = DaemonClient(f"http://127.0.0.1:{free_ports(1)[0]}", daemon.pid, log=log)
    finally:
        daemon.kill()
        daemon.wait()
    with pytest.raises(HippoError) as raised:
        client.call("POST", "/api/services/leaf/start", timeout=5)
    assert said in raised.value.message(), raised.value.message()
    assert exit_code_for(raised.value) == 5
