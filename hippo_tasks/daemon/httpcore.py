"""What every route of the daemon shares: request and response values, the error type,
and reading a request body.

Routes are plain functions from a `Request` to a response value (`Json`, `Raw`, or a
`Stream` for server-sent events); the server (daemon/http.py) writes every response
and renders every `HttpError`, so no route touches the socket.

Errors: a handler (or anything it calls) raises `HttpError(status, message)` where the
refusal is decided; the server renders it, in one place, as `{"error": message}` with
that status. `ClientGone` means there is nobody left to answer.

Bodies are read here for the control API and the webhook alike, so a bad length, a
slow client or a hostile JSON document gets the same answer everywhere:

- `Content-Length` that is not a plain decimal number, or given twice with different
  values: 400, and the connection closes (where the body ends cannot be known).
  A chunked body: 411 and close. None where one is required: 411.
- Over the route's limit: 413 at once, and the connection closes. Bodies up to
  `DRAIN_LIMIT` are then read and dropped before the close, while they keep coming
  (DRAIN_IDLE_S), so the client reads the 413 instead of a connection reset; past that,
  close at once. `Expect: 100-continue` is answered only when the body is read.
- A body that does not arrive within the read timeout: 408 and close; a stuck client
  costs only its own thread.
- JSON is strict: UTF-8 only, no NaN/Infinity, and a document nested too deeply for
  the parser's recursion (`[` * 100000) is a 400 like any other invalid JSON.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Callable, Mapping
from io import BufferedIOBase
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from hippo_contract.http_head import Headers
from hippo_contract.http_loop import http_date, phrase
from hippo_contract.json_text import (
    lone_surrogate,
    nested_past,
    surrogate_sentence,
    too_many_digits,
)

if TYPE_CHECKING:
    from hippo_tasks.daemon.app import App

DRAIN_LIMIT = 8 * 1024 * 1024
"""Largest refused body still read (and dropped) so that the client sees the answer."""
DRAIN_IDLE_S = 0.5
"""A refused body is read only while it keeps coming: a client that declared 2 MB and
sent nothing held its connection (one of the capped few, and a thread) for the whole
read timeout, 10 s, after its 413 said `Connection: close` (adv35 y/3)."""


class HttpError(Exception):
    """An error answer, raised where it is decided and rendered by the server.

    `close` ends the connection after the answer (the request's end is unknown);
    `headers` are extra response headers (`Allow` on a 405).
    """

    def __init__(self, status: int, message: str, *, close: bool = False,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close
        self.headers = headers or {}
        self.extra = extra or {}

    def payload(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


class ClientGone(Exception):
    """The client closed or broke its connection mid-request: there is no one to answer."""


class Body:
    """One request's body, read at most once, by whoever needs it (a route, the webhook).

    It remembers whether the declared body was read: the server closes a connection
    whose body nobody read, else its bytes would be parsed as the next request.
    """

    def __init__(self, headers: Headers, rfile: BufferedIOBase, sock: socket.socket,
                 go_ahead: Callable[[], None] | None = None) -> None:
        self.headers = headers
        self.rfile = rfile
        self.sock = sock
        self.go_ahead = go_ahead
        """Sends `100 Continue` (the client sent `Expect: 100-continue`): only once the
        body is wanted. Sent with the head, it invited a 5 MB upload answered 413."""
        self.declared = headers.get("Content-Length") is not None or \
            headers.get("Transfer-Encoding") is not None
        self.done = False
        self._unused: tuple[int, float] | None = None

    @property
    def unread(self) -> bool:
        return self.declared and not self.done

    def length(self, required: bool, noun: str) -> int:
        """The declared body length; 0 when none is declared and none is required."""
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None and encoding.strip().lower() != "identity":
            raise HttpError(411, f"Chunked request bodies are not supported: send {noun} "
                                 "with a Content-Length header", close=True)
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not values:
            if required:
                raise HttpError(411, f"Missing Content-Length header: send {noun} as a JSON "
                                     "body", close=True)
            self.done = True
            return 0
        value = values.pop()
        if values or not value.isascii() or not value.isdigit():
            shown = ", ".join(sorted({value, *values}))[:64]
            raise HttpError(400, f"Invalid Content-Length header ({shown!r}): it must be one "
                                 "non-negative whole number of bytes", close=True)
        digits = value.lstrip("0") or "0"
        if len(digits) > 64:  # int() of thousands of digits is slow, then refused
            raise HttpError(413, f"Request body too large: a Content-Length of {len(digits)} "
                                 "digits", close=True)
        return int(digits)

    def read_exact(self, length: int, timeout: float) -> bytes:
        """Exactly `length` bytes, or 408 when they do not all come within `timeout`.
        One deadline for the whole body: a socket timeout alone is per read, and a
        client sending a byte every few seconds held a thread for as long as it liked."""
        previous = self.sock.gettimeout()
        deadline = time.monotonic() + timeout
        parts: list[bytes] = []
        wanted = length
        try:
            while length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.sock.settimeout(left)
                part = self.rfile.read1(min(length, 65536))
                if not part:
                    # The client closed its side, and may still read: answered, where
                    # the connection was closed with no word (adv46 H/11). A client
                    # gone whole meets a closed socket, as before.
                    raise HttpError(400, f"the request's body ended after "
                                         f"{wanted - length} of its {wanted} bytes "
                                         "(Content-Length): send the whole body",
                                    close=True)
                parts.append(part)
                length -= len(part)
        except TimeoutError:
            raise HttpError(408, f"Request body not received within {timeout:g}s",
                            close=True) from None
        except OSError:
            raise ClientGone() from None
        finally:
            self.sock.settimeout(previous)
        return b"".join(parts)

    def discard(self, length: int, error: HttpError, timeout: float) -> HttpError:
        """A body that will not be used: the answer goes first, then `drain_unused` reads
        and drops the body before the close. Closing on unread bytes sends a reset that
        can destroy the answer in the client's buffer; reading first kept a client that
        declared a body and never sent it waiting the whole timeout for its 413."""
        error.close = True
        if length <= DRAIN_LIMIT:
            self._unused = (length, timeout)
        return error

    def drain_unused(self) -> None:
        """After the answer to `discard`: read what the client still sends, within the
        timeout (one deadline for the whole body), and drop it."""
        if self._unused is None:
            return
        (left, timeout), self._unused = self._unused, None
        deadline = time.monotonic() + timeout
        previous = self.sock.gettimeout()
        try:
            while left:
                wait = min(DRAIN_IDLE_S, deadline - time.monotonic())
                if wait <= 0:
                    return
                self.sock.settimeout(wait)
                part = self.rfile.read1(min(left, 65536))
                if not part:
                    return
                left -= len(part)
            self.done = True
        except OSError:  # quiet for DRAIN_IDLE_S (TimeoutError), or gone
            return
        finally:
            with contextlib.suppress(OSError):
                self.sock.settimeout(previous)

    def read(self, limit: int, timeout: float, *, noun: str, required: bool = False,
             too_large: str = "", length: int | None = None) -> bytes:
        """The whole body, after the framing and size checks above."""
        if length is None:
            length = self.length(required, noun)
        if length > limit:
            raise self.discard(length, HttpError(
                413, too_large or f"Request body too large: {length} bytes; the limit is "
                                  f"{limit} bytes"), timeout)
        if length and self.go_ahead is not None:
            self.go_ahead()
            self.go_ahead = None
        raw = self.read_exact(length, timeout) if length else b""
        self.done = True
        return raw


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


STRICT_JSON = json.JSONDecoder(parse_constant=_no_constant)
"""Built once: json.loads with any option builds a new decoder per call (2% of an event)."""


class GivenTwice(ValueError):
    """Keys given more than once in one object of a body."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(", ".join(repr(k[:40]) for k in keys[:5]))


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        twice: set[str] = set()
        for key, _ in pairs:
            (twice if key in seen else seen).add(key)
        raise GivenTwice(sorted(twice))
    return out


ONCE_EACH_JSON = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_once_each)
"""For an action's fields: `{"cascade": true, "cascade": false}` was taken as its last
value, in silence (and passed the check that refuses `cascade` for the whole stack), as
a query parameter given twice is refused (adv38 m/3)."""


MAX_DEPTH = 512
"""Deepest nesting a JSON body may have. Without a limit of our own the parser's
recursion limit decided, which depends on the stack depth of the thread parsing:
an event 979 levels deep was accepted and recorded by the webhook, and its line then
refused as `not valid JSON` by the replay that read it one level deeper."""


def decode_json(raw: bytes, noun: str, once_each: bool = False) -> Any:
    """Strict JSON from bytes, or a 400 naming what is wrong with it. `once_each`: a key
    given twice in an object is one too (not on the webhook's path: an event is
    forwarded as it came)."""
    if nested_past(raw, MAX_DEPTH):
        raise HttpError(400, f"Invalid JSON: nested too deeply (more than {MAX_DEPTH} levels)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(400, f"Body is not valid UTF-8 (byte {exc.start}): send {noun} "
                             "as UTF-8 JSON") from None
    try:
        value = (ONCE_EACH_JSON if once_each else STRICT_JSON).decode(text)
    except GivenTwice as exc:
        raise HttpError(400, f"field(s) {exc} given more than once in {noun}: give each "
                             "once") from None
    except ValueError as exc:
        digits = too_many_digits(exc)  # valid JSON, past Python's limit
        if digits is not None:
            raise HttpError(400, f"{noun[0].upper()}{noun[1:]} holds {digits}") from None
        raise HttpError(400, f"Invalid JSON: {exc}") from None
    except RecursionError:
        raise HttpError(400, "Invalid JSON: nested too deeply") from None
    if "\\u" in text and (half := lone_surrogate(value)) is not None:
        raise HttpError(400, f"Invalid JSON: {surrogate_sentence(half, noun)}")
    return value


def json_type(value: object) -> str:
    """A JSON value's type in JSON's own words, for error messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
             float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# ---- requests and responses: what a route takes and gives back ---------------------------

def peer_gone(sock: socket.socket) -> bool:
    """Whether the client hung up: a closed tab, or a `curl` given up with Ctrl+C, shows
    up as a readable socket with nothing to read (a pipelined next request is data)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    try:
        events = poller.poll(0)
        if not events:
            return False
        if events[0][1] & (select.POLLERR | select.POLLHUP):
            return True
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Request:
    """What a route handler sees: the parsed request, its unread body, and the daemon."""

    __slots__ = ("method", "path", "query", "params", "headers", "body", "app", "received")

    def __init__(self, method: str, path: str, query: dict[str, str], params: dict[str, str],
                 headers: Headers, body: Body, app: App, received: float | None = None) -> None:
        self.received = received
        """time.monotonic() when the request reached the kernel (None: not known): which
        of two overlapping actions is the later one (http_loop.stamp_arrivals)."""
        self.method = method
        self.path = path
        self.query = query
        self.params = params
        self.headers = headers
        self.body = body
        self.app = app


class Json(NamedTuple):
    """A JSON answer; `close` ends the connection after it."""

    payload: Any
    status: int = 200
    close: bool = False
    encoded: bytes | None = None
    """The payload already as JSON bytes, when the handler needed them too (the webhook
    records its answer): encoded once, not twice."""
    done: Callable[[], None] | None = None
    """Called once the answer is written or cannot be (a log answer's bytes are counted
    until then: commands.LOG_UNREAD_BYTES)."""


NO_HEADERS: Mapping[str, str] = MappingProxyType({})
"""The default of `Raw` and `Stream`: one empty mapping shared by all, so read-only."""


class Raw(NamedTuple):
    """Bytes of a given type (the dashboard page), with extra headers."""

    body: bytes
    content_type: str
    headers: Mapping[str, str] = NO_HEADERS
    status: int = 200


class Sink(Protocol):
    """Where a stream writes, and how it learns its reader left."""

    def write(self, data: bytes) -> None: ...

    def peer_gone(self) -> bool: ...


class Stream(NamedTuple):
    """A response written over time (server-sent events) until `run` returns.

    The server sends the head, calls `run(sink)`, then `done()` whatever happened,
    and closes the connection: the stream's end is the connection's.
    """

    run: Callable[[Sink], None]
    content_type: str
    headers: Mapping[str, str] = NO_HEADERS
    done: Callable[[], None] = lambda: None
    write_timeout: float = 10.0


Response = Json | Raw | Stream
Handler = Callable[[Request], Response]


def json_head(version: str, status: int, server: str, length: int, close: bool,
              extra: dict[str, str] | None = None) -> bytes:
    """A JSON answer's head, built as one string: head and body then go out in one write."""
    head = [f"{version} {status} {phrase(status)}", f"Server: {server}", f"Date: {http_date()}",
            "Content-Type: application/json", f"Content-Length: {length}",
            "Cache-Control: no-store"]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")

