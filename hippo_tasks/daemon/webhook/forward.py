"""Forwarding an event to its target service: a small keep-alive HTTP/1.1 client.

See the package docstring for the choices (pooling, one retry on a stale connection,
what a target's answer becomes).
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

from hippo_contract.http_client import AnswerTooSlow, BadAnswer, Connection, Stale
from hippo_tasks.daemon.httpcore import STRICT_JSON, HttpError
from hippo_tasks.model.plan import PlannedRoute

MAX_ANSWER = 1024 * 1024
RAW_SHOWN = 4096
IDLE_PER_TARGET = 8
WHOLE_ANSWER_TIMES = 6
"""A target's whole answer must come within this many timeouts (30 s by default): the
timeout bounds each read, and a target sending a byte every half second held the
webhook, its thread and both sockets for ever, and its sender past its own patience
(z/3)."""


class TargetPool:
    """Idle keep-alive connections per target port, shared by the HTTP threads."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.whole = timeout * WHOLE_ANSWER_TIMES
        self._idle: dict[int, list[Connection]] = {}
        self._lock = threading.Lock()

    def _take(self, port: int, fresh: bool) -> tuple[Connection, bool]:
        """A pooled connection the target has not closed, else a new one. A closed one
        shows as readable (its EOF) before anything is sent, so it is dropped unused: a
        POST is never sent on a socket known dead."""
        while not fresh:
            with self._lock:
                idle = self._idle.get(port)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            if not conn.idle_dead():
                return conn, True
            conn.close()
        return Connection("127.0.0.1", port, self.timeout), False

    def _drop(self, port: int) -> None:
        """Every idle connection to `port`: one failed unanswered, so the target closed
        or restarted and the rest are as dead (they were idle together)."""
        with self._lock:
            idle = self._idle.pop(port, [])
        for conn in idle:
            conn.close()

    def _give(self, port: int, conn: Connection) -> None:
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
            conn, reused = self._take(port, fresh=attempt == 2)
            try:
                answer = conn.exchange(request, limit=MAX_ANSWER, within=self.whole)
            except Stale as exc:
                conn.close()
                if reused and attempt == 1 and not exc.written:
                    # Reset before any byte of the event went: it died idle in the pool
                    # (the service closed it or restarted), so nothing of it was read:
                    # once more, on a new connection. Once a byte went, never: a reset
                    # then is also what a service sends that read the event, acted, and
                    # closed with bytes unread, and it got the event twice (adv59 F1).
                    self._drop(port)
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if answer.keep_alive:
                self._give(port, conn)
            else:
                conn.close()
            return answer.status, answer.body, answer.content_type
        raise AssertionError("unreachable")


class NotSent(HttpError):
    """The target refused the connection: nothing of the event reached it."""


def forward(pool: TargetPool, planned: PlannedRoute, raw: bytes) -> tuple[int, dict[str, Any]]:
    """The target's answer as the webhook's (status, payload); failures as HttpError."""
    r = planned.route
    where = f"{r.service} at {planned.target}{r.path}"
    assert planned.port is not None, "the loader refuses a route to a portless service"
    if not (r.path.startswith("/") and r.path.isascii() and r.path.isprintable()
            and " " not in r.path):
        raise HttpError(500, f"The route for '{r.detail_type_prefix}' has an invalid path "
                             f"{r.path!r}: fix it in the stack file")
    try:
        status, data, ctype = pool.post(planned.port, r.path, raw)
    except AnswerTooSlow:
        raise HttpError(504, f"Service timed out: {where} did not finish its answer within "
                             f"{pool.whole:g}s (it sends, but too slowly; see `hd logs -s "
                             f"{r.service}`)") from None
    except TimeoutError:
        raise HttpError(504, f"Service timed out: {where} did not answer within "
                             f"{pool.timeout:g}s") from None
    except Stale as exc:
        if not exc.written:  # reset before any of it went: nothing reached the service
            raise NotSent(503, f"Service unavailable: {where}: {exc} (is it running? see "
                               "`hd status`)") from None
        how = "closed" if exc.__cause__ is None else f"reset ({exc})"
        raise HttpError(502, f"Bad answer from service: {where}: {how} the connection "
                             "without answering, perhaps failing while it handled the "
                             f"event (see `hd logs -s {r.service}`); not sent again, as it "
                             "may have acted on it") from None
    except ConnectionRefusedError:
        raise NotSent(503, f"Service unavailable: {where}: connection refused (is it "
                           "running? see `hd status`)") from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or exc.__class__.__name__
        raise HttpError(503, f"Service unavailable: {where}: {reason} (is it running? "
                             "see `hd status`)") from None
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


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large for a double")
    return value


ANSWER_JSON = json.JSONDecoder(parse_constant=STRICT_JSON.parse_constant,
                               parse_float=_finite)
"""A service's answer: `{"big": 1e999}` read as inf was passed on as `Infinity`, which
is not JSON, to the caller and into the recording (adv46 H/7); it goes on as `raw`."""


def _answer_body(data: bytes, ctype: str) -> Any:
    try:
        return ANSWER_JSON.decode(data.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return {"raw": data[:RAW_SHOWN].decode("utf-8", "replace"),
                **({"content_type": ctype} if ctype else {})}


_date: tuple[int, str] = (0, "")
