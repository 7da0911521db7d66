"""One keep-alive HTTP/1.1 connection, written and read by hand: the client under the
webhook's forwarding, the CLI's calls to the daemon, and every bundled service's calls
to its peers and to moto.

Why not http.client: it parses every answer's headers through the email package
(a fifth of the webhook's CPU per event, profiled) and imports it, with ssl, in every
process that uses it (~1.5 MB of each service's memory, ~30 ms of the CLI's start).
It also writes a request's head and body in two sends, so the peer wakes twice. Here a
request is one send and its answer is read by http_answer.py. TLS is there for a
service given an https:// URL (a staging cell, real AWS): the caller passes an
`ssl.SSLContext`, so only a process that needs TLS imports ssl.
"""

from __future__ import annotations

import io
import select
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hippo_contract.http_answer import Answer, BadAnswer, read_answer, read_line

if TYPE_CHECKING:
    import ssl

__all__ = ["Answer", "BadAnswer", "Connection", "Stale", "host_header", "request_bytes"]


class Stale(ConnectionResetError):
    """The connection ended before any byte of an answer: the peer closed or reset it,
    idle in a pool or on the request. `written`: some of the request had gone to the
    peer by then, which may have read it and acted on it (a reset says nothing about
    that: a service that reads an event, acts, and closes with bytes unread resets the
    connection, as one closed idle does, adv59 F1). Safe to send again only when not
    `written`."""

    def __init__(self, message: str, written: bool = True) -> None:
        super().__init__(message)
        self.written = written


def host_header(host: str, port: int, default_port: int = 80) -> str:
    """The Host header's value, as http.client writes it."""
    name = f"[{host}]" if ":" in host else host
    return name if port == default_port else f"{name}:{port}"


def request_bytes(method: str, target: str, headers: Mapping[str, str],
                  body: bytes | None) -> bytes:
    """A whole request: its head and body in one buffer, for one send. The caller gives
    Host (and any other header); Content-Length, unless given, is added for a body,
    and for a POST, PUT or PATCH without one (as http.client does). Like http.client,
    it refuses a target or header that would break the request apart (ValueError): a
    space or a control character in the target, a line break in a header."""
    if not target or any(c <= " " or c == "\x7f" for c in target):
        raise ValueError(f"invalid request target {target[:80]!r}: a space or a control "
                         "character (percent-encode it)")
    head = [f"{method} {target} HTTP/1.1"]
    framed = False
    for name, value in headers.items():
        if any(c in "\r\n\x00" for c in name + value) or not name or ":" in name:
            raise ValueError(f"invalid header {name[:40]!r}: {value[:40]!r}")
        head.append(f"{name}: {value}")
        framed = framed or name.lower() == "content-length"
    if not framed and (body is not None or method in ("POST", "PUT", "PATCH")):
        head.append(f"Content-Length: {len(body or b'')}")
    # UTF-8, as curl sends a header: Latin-1 sent a non-ASCII webhook token as other
    # bytes than the daemon compares (401), and failed on any character past U+00FF.
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + (body or b"")


class AnswerTooSlow(TimeoutError):
    """The whole answer did not come within the time given to it (Connection.exchange's
    `within`), though no single read waited past the timeout."""


class _Reader(io.RawIOBase):
    """The socket's bytes for a buffered reader, which counts them (`tell`: how many
    bytes past what was consumed the buffer holds is a subtraction, no system call)
    and, when the answer has a deadline, refuses to read past it. A read may wait one
    timeout beyond the deadline at most: the socket's timeout is not changed per read,
    which cost four system calls each (socket.makefile's reader knows only the
    per-read timeout)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline: float | None = None
        self.delivered = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.delivered

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise AnswerTooSlow("the answer did not finish in time")
        got = self.sock.recv_into(buffer)
        self.delivered += got
        return got


QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
"""Linux: acknowledge the answer's first segment at once. A server that writes its head
and its body in two sends (Python's http.server, so many services in a dev stack) holds
the body back (Nagle) until the head is acknowledged, and on a kept-alive connection
the kernel delays that acknowledgement by 40 ms: every forward to such a service took
44 ms instead of 1. The setting lasts a few segments, so it is set again per exchange."""


class Connection:
    """One connection to (host, port), opened at once; one exchange at a time."""

    def __init__(self, host: str, port: int, timeout: float,
                 tls: ssl.SSLContext | None = None) -> None:
        # An ASCII name as bytes: a str is encoded with the idna codec, whose import
        # (unicodedata, stringprep) cost every command 1 ms, and under a low `ulimit -v`
        # failed as "LookupError: unknown encoding: idna", a traceback (adv48 A/1).
        address: Any = (host.encode() if host.isascii() else host, port)  # bytes: typeshed
        sock = socket.create_connection(address, timeout=timeout)       # says str only
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._reader = _Reader(sock)
        self.rfile = io.BufferedReader(self._reader)

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def exchange(self, request: bytes, *, limit: int | None = None,
                 head: bool = False, waiting: Callable[[], None] | None = None,
                 within: float | None = None) -> Answer:
        """The answer to `request`. Stale when the peer closed before answering; OSError
        (TimeoutError included) from the socket; BadAnswer for what is not HTTP.
        `waiting` is called about every second until the answer begins, and may raise
        to give up: a long wait can look after its peer meanwhile. `within`: seconds
        for the whole answer (and one timeout more at most), else AnswerTooSlow: the
        timeout alone bounds each read, and a peer sending a byte a second was never
        timed out."""
        self._reader.deadline = None if within is None else time.monotonic() + within
        try:
            return self._exchange(request, limit, head, waiting)
        finally:
            self._reader.deadline = None

    def _exchange(self, request: bytes, limit: int | None, head: bool,
                  waiting: Callable[[], None] | None) -> Answer:
        sent = 0
        try:
            with memoryview(request) as view:  # sendall, counting what the kernel took
                while sent < len(view):
                    sent += self.sock.send(view[sent:])
            if QUICKACK is not None:  # see QUICKACK
                self.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            if waiting is not None:
                self._until_readable(waiting)
            line = read_line(self.rfile)
        except (ConnectionResetError, BrokenPipeError) as exc:
            line = self._answered_anyway()
            if not line:
                raise Stale(str(exc), written=sent > 0) from exc
        if not line:
            raise Stale("closed the connection unanswered")
        return read_answer(self.rfile, line, limit, head)

    def _until_readable(self, waiting: Callable[[], None]) -> None:
        """Until the answer begins (or the socket's timeout passes), `waiting` each
        second."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        timeout = self.sock.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not poller.poll(1000):
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("timed out")
            waiting()

    def _answered_anyway(self) -> bytes:
        """The first line of an answer the peer sent before it closed on a request it
        would not read whole (a 413 for a 20 MB body): the kernel keeps what arrived
        even after the reset that failed our send. Without it, `hd events.send` of a
        large file said the daemon was hung and advised `hd down --force`."""
        try:
            return read_line(self.rfile)
        except (OSError, ValueError, BadAnswer):
            return b""

    def idle_dead(self) -> bool:
        """True when an idle keep-alive connection has something to read: the peer's
        EOF or reset (or bytes it should not have sent), so it cannot carry a request.
        A pool asks before reuse, so a request is never sent on a socket known dead.
        Bytes past the last answer that the reader already holds count too: a peer that
        sent more than its Content-Length had them read as the next request's answer
        (another event's 200, or a 502 for an event it had handled: z/11)."""
        if self._reader.delivered > self.rfile.tell():  # read past the last answer
            return True
        poller = select.poll()  # not select(): no limit on the descriptor's number
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))
