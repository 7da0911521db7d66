"""`POST /webhook/eventbridge`: EventBridge events routed to local services by detail-type.

The answers are the contract of DESIGN section 4 and the reference README, word for
word: forwarded `200 {"webhook_status": "forwarded", "target": "localhost:PORT",
"service_response": ...}`, unrouted `200 {"status": "ignored", "reason": "No route
configured for detail-type: T"}`, `400 {"error": "Missing 'detail-type' field in
event"}`, target down `503 {"error": "Service unavailable: ..."}`, and 401 without the
`x-hippodrome-webhook-token` header when the daemon has a token. Routes are the stack
file's `[[routes]]`, in order; the first prefix that matches wins.

Where the contract leaves a choice open, and why:

- Bodies over 256 KiB get 413: EventBridge's own limit per event, so every real event
  fits and nothing bigger is ever parsed. Over-limit bodies up to 8 MiB are read and
  dropped first, so the client reads the 413 instead of a connection reset; past that
  the connection is closed. A body missing Content-Length (or chunked) is 411; an
  invalid one 400, and the connection closes, since its end cannot be known.
- A body that does not arrive within HIPPODROME_WEBHOOK_READ_TIMEOUT seconds (10) is
  408 and the connection closes: a stuck client costs its own thread, never others.
- Strict JSON: UTF-8 only, no NaN/Infinity, an object, `detail-type` a string, so
  whatever is forwarded every consumer can parse. The bytes are forwarded as received.
- Who may post (see `guard`): with a token, whoever sends it, with any JSON-ish
  Content-Type (none, JSON types, text/plain, and the form type `curl -d` sends by
  default; multipart and the rest are 415). Without a token (the default), only
  requests to a loopback Host name, without another site's Origin, and with a JSON
  Content-Type: 403/415 otherwise, so no web page can make the browser post an event.
- The target's answer: JSON is passed on as `service_response`; anything else as
  `{"raw": <its first 4 KiB as text>}`. A 2xx answer is our 200 with exactly the
  contract's keys; a 4xx/5xx answer keeps the target's status and adds
  `"service_status"`, so EventBridge (which retries 5xx and 429) sees the failure.
  A 3xx, a malformed answer or one over 1 MiB is 502.
- A target silent for HIPPODROME_WEBHOOK_TIMEOUT seconds (5) is 504 naming it, and
  that connection is dropped so a late answer is never read as the next event's.
- Connections to targets are kept alive, a few idle ones per port: a new TCP
  connection per event would cost more than the whole forward. A pooled connection
  that fails before any byte of an answer (the service closed it while idle, e.g. it
  restarted) is retried once on a fresh one, else every restart would cost an event.
  A service that read the event and died silently on a reused connection may thus
  see it twice: at-least-once, which is what EventBridge itself promises consumers.
  A refused connection is 503. The HTTP/1.1 client is a small hand-written one (see
  `_Conn` for the profile that made it worth it).

Every request is recorded in `engine.extras["webhook_deliveries"]` (the dashboard
reads those keys) and, when it had a target, noted in that service's log. Log notes
are handed to the engine's loop, which alone writes logs, in batches 50 ms apart:
waking the loop per event cost a third of the daemon's CPU per event and put
millisecond stalls into the forwarding thread's latency. The token is compared in
constant time and never logged, nor passed on to the services.
"""

from __future__ import annotations

import email.utils
import hmac
import json
import os
import socket
import threading
import time
from collections import deque
from http import HTTPStatus
from typing import Any

from hippo_tasks.daemon.engine import Engine
from hippo_tasks.daemon.guard import media_type, webhook_refusal
from hippo_tasks.daemon.http import ApiHandler, route
from hippo_tasks.daemon.httpcore import STRICT_JSON, ClientGone, HttpError, decode_json, json_type
from hippo_tasks.model.plan import PlannedRoute

TOKEN_HEADER = "x-hippodrome-webhook-token"
MAX_EVENT = 256 * 1024
MAX_ANSWER = 1024 * 1024
RAW_SHOWN = 4096
DELIVERIES_KEPT = 200
IDLE_PER_TARGET = 8
NOTE_BATCH_S = 0.05
ACCEPTED_TYPES = ("application/json", "text/plain", "application/x-www-form-urlencoded")
MISSING_DETAIL_TYPE = "Missing 'detail-type' field in event"
MAX_LINE = 64 * 1024
MAX_HEADERS = 100


class BadAnswer(Exception):
    """The target answered something that is not HTTP we can pass on."""


class _Stale(ConnectionResetError):
    """The connection failed before any byte of an answer: closed while idle in the pool."""


class _Conn:
    """One keep-alive connection to a target; HTTP/1.1 written and read by hand.

    Profiled: http.client spent a fifth of the daemon's CPU per event parsing a few
    response headers through the email package, and wrote head and body in two
    sends (the service then wakes twice). Here a request is one send and the answer
    is read with plain readline: Content-Length, chunked, or up to the close.
    """

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def _line(self) -> bytes:
        line = self.rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise BadAnswer("a header line over 64 KiB")
        return line

    def _headers(self) -> dict[bytes, bytes]:
        headers: dict[bytes, bytes] = {}
        for _ in range(MAX_HEADERS):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return headers
            name, sep, value = line.partition(b":")
            if not sep:
                raise BadAnswer("answer cut short in its headers" if not line
                                else f"malformed header line {line[:60]!r}")
            key, value = name.strip().lower(), value.strip()
            headers[key] = headers[key] + b"," + value if key in headers else value
        raise BadAnswer(f"more than {MAX_HEADERS} header lines")

    def _exact(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) < size:
            raise BadAnswer("answer cut short in its body")
        return data

    def _chunked(self) -> bytes:
        parts, total = [], 0
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadAnswer(f"invalid chunk size {size_text[:20]!r}") from None
            if size <= 0:
                break
            total += size
            if total > MAX_ANSWER:
                raise BadAnswer(f"answer over {MAX_ANSWER // 1024} KiB")
            parts.append(self._exact(size + 2)[:size])
        while self._line() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(parts)

    def exchange(self, request: bytes) -> tuple[int, bytes, str, bool]:
        """(status, body, content type, reusable) for one request."""
        try:
            self.sock.sendall(request)
            line = self._line()
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise _Stale(str(exc)) from exc
        if not line:
            raise _Stale("the service closed the connection unanswered")
        while True:
            version, _, rest = line.partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                raise BadAnswer(f"not an HTTP status line: {line[:60]!r}")
            status, headers = int(code), self._headers()
            if status >= 200:
                break
            if status == 101:
                raise BadAnswer("answered 101 Switching Protocols")
            line = self._line()  # an interim 1xx answer: the real one follows
        ctype = headers.get(b"content-type", b"").decode("latin-1")
        keep = version == b"HTTP/1.1" and b"close" not in headers.get(b"connection", b"").lower()
        if status in (204, 304):
            return status, b"", ctype, keep
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            return status, self._chunked(), ctype, keep
        length = headers.get(b"content-length")
        if length is None:  # the body runs to the close
            body = self.rfile.read(MAX_ANSWER + 1)
            if len(body) > MAX_ANSWER:
                raise BadAnswer(f"answer over {MAX_ANSWER // 1024} KiB")
            return status, body, ctype, False
        if not length.isdigit():
            raise BadAnswer(f"invalid Content-Length {length[:20]!r}")
        if int(length) > MAX_ANSWER:
            raise BadAnswer(f"answer over {MAX_ANSWER // 1024} KiB")
        return status, self._exact(int(length)), ctype, keep


class TargetPool:
    """Idle keep-alive connections per target port, shared by the HTTP threads."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._idle: dict[int, list[_Conn]] = {}
        self._lock = threading.Lock()

    def _take(self, port: int) -> tuple[_Conn, bool]:
        with self._lock:
            idle = self._idle.get(port)
            if idle:
                return idle.pop(), True
        return _Conn(port, self.timeout), False

    def _give(self, port: int, conn: _Conn) -> None:
        with self._lock:
            idle = self._idle.setdefault(port, [])
            if len(idle) < IDLE_PER_TARGET:
                idle.append(conn)
                return
        conn.close()

    def post(self, port: int, path: str, body: bytes) -> tuple[int, bytes, str]:
        """(status, body, content type); raises OSError or BadAnswer on failure."""
        request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                   "User-Agent: hippodrome-webhook\r\n\r\n").encode("ascii") + body
        for attempt in (1, 2):
            conn, reused = self._take(port)
            try:
                status, data, ctype, keep = conn.exchange(request)
            except _Stale:
                conn.close()
                if reused and attempt == 1:
                    continue  # most likely it died idle in the pool (the service restarted)
                raise
            except BaseException:
                conn.close()
                raise
            if keep:
                self._give(port, conn)
            else:
                conn.close()
            return status, data, ctype
        raise AssertionError("unreachable")


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if value > 0 else default


def _shown(detail_type: str, limit: int = 256) -> str:
    """A detail-type safe for a log line or the dashboard: one line, bounded, encodable."""
    text = detail_type if detail_type.isprintable() else json.dumps(detail_type)[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."


class Webhook:
    """The webhook's per-daemon state: pool, timeouts, delivery log, pending log notes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.timeout = _env_seconds("HIPPODROME_WEBHOOK_TIMEOUT", 5.0)
        self.read_timeout = _env_seconds("HIPPODROME_WEBHOOK_READ_TIMEOUT", 10.0)
        self.pool = TargetPool(self.timeout)
        self.deliveries: deque[dict[str, Any]] = engine.extras.setdefault(
            "webhook_deliveries", deque(maxlen=DELIVERIES_KEPT))
        self._notes: list[tuple[str, str]] = []
        self._notes_lock = threading.Lock()

    # ---- reading the event ---------------------------------------------------------
    def _authorised(self, h: ApiHandler) -> bool:
        token = self.engine.webhook_token
        given = h.headers.get(TOKEN_HEADER)
        if token is None or given is None:
            return False
        try:
            return hmac.compare_digest(given.encode("latin-1"), token.encode("utf-8"))
        except UnicodeEncodeError:
            return False

    def read_event(self, h: ApiHandler) -> tuple[dict[str, Any], bytes]:
        """The event, once the caller may send one: its token, or (none) the browser guard."""
        body = h.body
        length = body.length(required=True, noun="the event")
        if self.engine.webhook_token is not None:
            if not self._authorised(h):
                raise body.discard(length, HttpError(
                    401, f"Missing or invalid {TOKEN_HEADER} header"), self.read_timeout)
        else:
            refused = webhook_refusal(h.headers)
            if refused is not None:
                raise body.discard(length, HttpError(refused.status, refused.message),
                                   self.read_timeout)
        ctype = media_type(h.headers)
        if ctype and ctype not in ACCEPTED_TYPES and not ctype.endswith("+json"):
            raise body.discard(length, HttpError(
                415, f"Unsupported Content-Type '{ctype}': send the event as "
                     "application/json"), self.read_timeout)
        raw = body.read(MAX_EVENT, self.read_timeout, noun="the event", length=length,
                        too_large=f"Event too large: {length} bytes; the limit is {MAX_EVENT} "
                                  "bytes (EventBridge's own maximum event size)")
        if not raw:
            raise HttpError(400, "Empty body: send the event as a JSON object")
        return _parse(raw), raw

    # ---- routing and forwarding ----------------------------------------------------
    def match(self, detail_type: str) -> PlannedRoute | None:
        for planned in self.engine.plan.routes:
            if detail_type.startswith(planned.route.detail_type_prefix):
                return planned
        return None

    def forward(self, planned: PlannedRoute, raw: bytes) -> tuple[int, dict[str, Any]]:
        r = planned.route
        where = f"{r.service} at {planned.target}{r.path}"
        if planned.port is None:
            raise HttpError(503, f"Service unavailable: the route for '{r.detail_type_prefix}' "
                               f"names '{r.service}', which has no port in this stack")
        if not (r.path.startswith("/") and r.path.isascii() and r.path.isprintable()
                and " " not in r.path):
            raise HttpError(500, f"The route for '{r.detail_type_prefix}' has an invalid path "
                               f"{r.path!r}: fix it in the stack file")
        try:
            status, data, ctype = self.pool.post(planned.port, r.path, raw)
        except TimeoutError:
            raise HttpError(504, f"Service timed out: {where} did not answer within "
                               f"{self.timeout:g}s") from None
        except OSError as exc:
            reason = "connection refused" if isinstance(exc, ConnectionRefusedError) \
                else exc.strerror or str(exc) or exc.__class__.__name__
            raise HttpError(503, f"Service unavailable: {where}: {reason} (is it running? "
                               "see `invoke status`)") from None
        except BadAnswer as exc:
            raise HttpError(502, f"Bad answer from service: {where}: {exc}") from None
        if not (200 <= status < 300 or 400 <= status < 600):
            raise HttpError(502, f"Bad answer from service: {where} answered {status}")
        payload: dict[str, Any] = {"webhook_status": "forwarded", "target": planned.target,
                                   "service_response": _answer_body(data, ctype)}
        if status >= 300:
            payload["service_status"] = status
            return status, payload
        return 200, payload

    # ---- what is left behind ---------------------------------------------------------
    def record(self, at: float, began: float, detail_type: str, planned: PlannedRoute | None,
               status: int, outcome: str, payload: dict[str, Any]) -> None:
        latency_ms = round((time.perf_counter() - began) * 1000, 3)
        shown = _shown(detail_type)
        self.deliveries.append({
            "at": at, "detail_type": shown,
            "target": planned.target if planned is not None else None,
            "status": status, "latency_ms": latency_ms, "outcome": outcome,
        })
        if planned is None or planned.route.service not in self.engine.stack.services:
            return
        if outcome == "forwarded":
            note = (f"webhook: {shown} forwarded to {planned.target}{planned.route.path}: "
                    f"{status} in {latency_ms:.1f} ms")
        else:
            note = (f"webhook: Failed to forward event to {planned.target} ({shown}): "
                    f"{payload.get('error')}")
        self._note(planned.route.service, note)

    def _note(self, service: str, text: str) -> None:
        with self._notes_lock:
            first = not self._notes
            self._notes.append((service, text))
        loop = self.engine.loop
        if not first:
            return
        try:
            if loop is None:
                raise RuntimeError("no loop")
            loop.call_soon_threadsafe(loop.call_later, NOTE_BATCH_S, self._flush)
        except RuntimeError:  # the loop is gone: the daemon is exiting, notes go with it
            with self._notes_lock:
                self._notes.clear()

    def _flush(self) -> None:
        with self._notes_lock:
            notes, self._notes = self._notes, []
        for service, text in notes:
            self.engine.hub.system(service, text)


def _parse(raw: bytes) -> dict[str, Any]:
    event = decode_json(raw, "the event")
    if not isinstance(event, dict):
        raise HttpError(400, f"Event must be a JSON object, got {json_type(event)}")
    return event


def _answer_body(data: bytes, ctype: str) -> Any:
    try:
        return STRICT_JSON.decode(data.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return {"raw": data[:RAW_SHOWN].decode("utf-8", "replace"),
                **({"content_type": ctype} if ctype else {})}


_date: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header, formatted once a second: formatting it cost 5% of an event."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    return _date[1]


def _respond(h: ApiHandler, status: int, payload: Any, close: bool = False) -> None:
    """One write for head and body: two small writes would wait on Nagle's algorithm."""
    body = json.dumps(payload).encode()
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    head = [f"{h.protocol_version} {status} {phrase}", f"Server: {h.version_string()}",
            f"Date: {_http_date()}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Cache-Control: no-store"]
    if close or h.close_connection:
        head.append("Connection: close")
        h.close_connection = True
    h.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


_SETUP = threading.Lock()


def webhook_for(engine: Engine) -> Webhook:
    hook = engine.extras.get("webhook")
    if hook is None:
        with _SETUP:
            hook = engine.extras.get("webhook")
            if hook is None:
                hook = engine.extras["webhook"] = Webhook(engine)
    assert isinstance(hook, Webhook)
    return hook


@route("POST", "/webhook/eventbridge")
def _eventbridge(h: ApiHandler, _: dict[str, str]) -> tuple[int, Any]:
    began, at = time.perf_counter(), time.time()
    hook = webhook_for(h.commands.engine)
    h.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    detail_type, planned, close = "", None, False
    try:
        event, raw = hook.read_event(h)
        value = event.get("detail-type")
        if value is None or value == "":
            raise HttpError(400, MISSING_DETAIL_TYPE)
        if not isinstance(value, str):
            raise HttpError(400, f"'detail-type' must be a string, got {json_type(value)}")
        detail_type = value
        planned = hook.match(detail_type)
        if planned is None:
            status, payload, outcome = 200, {
                "status": "ignored",
                "reason": f"No route configured for detail-type: {detail_type}"}, "ignored"
        else:
            status, payload = hook.forward(planned, raw)
            outcome = "forwarded"
    except ClientGone:
        h.close_connection = True
        return 0, None
    except HttpError as exc:
        status, payload, outcome, close = exc.status, {"error": exc.message}, "error", exc.close
    # Recorded before answering: a client that has its answer finds it in the log.
    hook.record(at, began, detail_type, planned, status, outcome, payload)
    _respond(h, status, payload, close)
    return 0, None


@route("GET", "/api/webhook/deliveries")
def _deliveries(h: ApiHandler, _: dict[str, str]) -> tuple[int, Any]:
    hook = webhook_for(h.commands.engine)
    return 200, {"deliveries": list(reversed(list(hook.deliveries)))}
