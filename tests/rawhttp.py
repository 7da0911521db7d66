"""Raw HTTP over a socket, for requests no well-behaved client library would send."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes as they are; read one answer (by its Content-Length) or up to the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        # The server may answer and close before taking everything: read the answer anyway.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                head, sep, body = out.partition(b"\r\n\r\n")
                if sep:
                    lengths = [int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                               if ln.lower().startswith(b"content-length:")]
                    if lengths and len(body) >= lengths[0]:
                        break
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def parse(out: bytes) -> Answer:
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (ln.split(": ", 1) for ln in lines[1:] if ": " in ln)}
    return Answer(int(lines[0].split()[1]), headers, body)


def post(port: int, path: str, head: bytes, body: bytes = b"") -> Answer:
    """POST with the given header lines (each ending in CRLF) and body, Host 127.0.0.1."""
    return parse(exchange(port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
                          + head + b"\r\n" + body))


def json_request(port: int, body: bytes | None, headers: dict[str, str] | None = None,
                 method: str = "POST", path: str = "/webhook/eventbridge",
                 conn: http.client.HTTPConnection | None = None,
                 content_type: str | None = "application/json") -> tuple[int, Any]:
    """A well-formed request whose answer must be JSON: (status, decoded body).
    `content_type=None` sends none (what curl and a browser may do)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sent = {"Content-Type": content_type} if content_type else {}
    try:
        c.request(method, path, body=body, headers={**sent, **(headers or {})})
        resp = c.getresponse()
        raw = resp.read()
        assert resp.getheader("Content-Type") == "application/json", raw
        return resp.status, json.loads(raw)
    finally:
        if conn is None:
            c.close()
