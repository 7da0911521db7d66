"""One HTTP/1.1 exchange with the daemon over a plain socket: the CLI's whole transport.

urllib.request cost every `hd status` / `hd restart` ~30 ms of imports before the
first byte was sent (http.client pulls email.parser and ssl; measured with `python -X
importtime`, benchmarks/bench_cli.py). The daemon is always plain HTTP on a loopback
address and answers every API call with a Content-Length body, so the client needs
none of that: a request line, four headers, a status line and a body.
"""

from __future__ import annotations

import socket
from urllib.parse import quote  # already loaded: pathlib imports it

MAX_HEAD = 64 * 1024
"""A daemon's response head is a few hundred bytes; anything longer is not our daemon."""


class BadAnswer(ConnectionError):
    """The peer answered, but not in HTTP the daemon speaks (or closed mid-answer)."""


def split_url(url: str) -> tuple[str, int]:
    """`http://127.0.0.1:9000` -> ("127.0.0.1", 9000); `http://[::1]:9000` -> ("::1", 9000)."""
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"not an http://HOST:PORT address: {url!r}")
    return host.strip("[]"), int(port)


def exchange(url: str, method: str, path: str, body: bytes | None,
             headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """(status, body) of one request. Transport failures raise OSError (refused, reset,
    TimeoutError), a reply that is not HTTP raises BadAnswer (a ConnectionError)."""
    host, port = split_url(url)
    # A name typed by the user ends up in the path: percent-encoded, a space, a newline
    # or a non-ASCII letter is a 404 naming it, never a broken or injected request line.
    path = quote(path, safe="/?=&%:+,;@!$'()*~")
    head = [f"{method} {path} HTTP/1.1", f"Host: {_host_header(host, port)}",
            "Connection: close", f"Content-Length: {len(body or b'')}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        return _read_answer(sock)


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _read_answer(sock: socket.socket) -> tuple[int, bytes]:
    data = bytearray()
    while (end := data.find(b"\r\n\r\n")) < 0:
        if len(data) > MAX_HEAD:
            raise BadAnswer("the answer's head is too long to be the daemon's")
        chunk = sock.recv(65536)
        if not chunk:
            raise BadAnswer("the daemon closed the connection without answering"
                            if not data else "the daemon's answer was cut off")
        data += chunk
    head, rest = bytes(data[:end]), data[end + 4:]
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BadAnswer(f"not an HTTP answer: {lines[0][:80]!r}")
    status = int(parts[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    while length is None or len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            if length is None:  # no length: the body runs to the close (RFC 9112, 6.3)
                return status, bytes(rest)
            raise BadAnswer(f"the daemon's answer was cut off ({len(rest)} of {length} "
                            "bytes)")
        rest += chunk
    return status, bytes(rest[:length])
