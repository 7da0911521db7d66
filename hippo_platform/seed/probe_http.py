"""One HTTP call from the probes, with what went wrong named rather than raised.

The probes must tell "the service is not there" from "the service answered wrong":
the health report says which (`error_type`), and the fuzz mode must not call a
stopped or restarting service a bug. So every call gives an `Outcome` instead of an
exception, classified once here:

- `connection_refused`: nothing listens on the port (stopped, crashed, restarting);
- `timeout`: connected (or trying) but no answer within the timeout (a hung service);
- `transport_error`: the connection broke mid-request (reset, closed without an answer);
- `http_error`: an HTTP answer outside 2xx; `status_code` says which;
- `parse_error`: an answer that is not HTTP at all, or whose body is not JSON.

`is_infrastructure` then decides what the fuzz mode forgives: everything that means
"could not talk to it", the gateways' 502/503/504, and a missing AWS table (moto not
provisioned yet), but never a wrong answer or another 5xx.

A fresh connection per call (no keep-alive): a probe must see a restarted service as
it is now, never a stale socket's error.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

CONNECTION_REFUSED = "connection_refused"
TIMEOUT = "timeout"
TRANSPORT_ERROR = "transport_error"
HTTP_ERROR = "http_error"
PARSE_ERROR = "parse_error"
ERROR_TYPES = (CONNECTION_REFUSED, TIMEOUT, TRANSPORT_ERROR, HTTP_ERROR, PARSE_ERROR)
GATEWAY_STATUSES = frozenset({502, 503, 504})
_MISSING_TABLE = ("ResourceNotFoundException", "Requested resource not found",
                  "Cannot do operations on a non-existent table")


@dataclass(frozen=True)
class Outcome:
    method: str
    url: str
    status_code: int | None
    body: Any
    error_type: str | None
    detail: str
    elapsed_ms: float

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def text(self) -> str:
        """One line for a report: the call and what came back."""
        if self.ok:
            return f"{self.method} {self.url} -> {self.status_code}"
        code = f" {self.status_code}" if self.status_code is not None else ""
        return f"{self.method} {self.url} -> {self.error_type}{code}: {self.detail}"

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "status_code": self.status_code, "error_type": self.error_type,
                "detail": self.detail, "elapsed_ms": round(self.elapsed_ms, 1)}


def call(method: str, url: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
         timeout: float = 10.0, json_body: bool = True) -> Outcome:
    """Send one request; never raises for anything the peer (or its absence) does.
    `json_body=False`: any body will do (a health page in HTML, moto's)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    payload = None if body is None else json.dumps(body).encode("utf-8")
    sent = {"Accept": "application/json", "Connection": "close", **(headers or {})}
    if payload is not None:
        sent["Content-Type"] = "application/json"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    started = time.perf_counter()

    def done(status: int | None, decoded: Any, kind: str | None, detail: str) -> Outcome:
        return Outcome(method, url, status, decoded, kind, detail,
                       (time.perf_counter() - started) * 1000)

    try:
        conn.request(method, target, body=payload, headers=sent)
        raw = conn.getresponse()
        status, data = raw.status, raw.read()
    except ConnectionRefusedError:
        return done(None, None, CONNECTION_REFUSED, "nothing listens on the port")
    except TimeoutError:
        return done(None, None, TIMEOUT, f"no answer within {timeout:g} s")
    except (http.client.BadStatusLine, http.client.LineTooLong) as exc:
        # BadStatusLine's subclass RemoteDisconnected is a closed connection, not garbage.
        if isinstance(exc, http.client.RemoteDisconnected):
            return done(None, None, TRANSPORT_ERROR, f"closed without an answer: {exc}")
        return done(None, None, PARSE_ERROR, f"not an HTTP answer: {str(exc)[:80]!r}")
    except (OSError, http.client.HTTPException) as exc:
        return done(None, None, TRANSPORT_ERROR, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    if not json_body:
        kind = None if 200 <= status < 300 else HTTP_ERROR
        return done(status, None, kind, "" if kind is None else data[:80].decode(errors="replace"))
    try:
        decoded = json.loads(data) if data.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return done(status, None, PARSE_ERROR,
                    f"answered {status} with a body that is not JSON: {data[:60]!r}")
    if not 200 <= status < 300:
        return done(status, decoded, HTTP_ERROR, _error_text(decoded))
    return done(status, decoded, None, "")


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("error", "message", "__type"):
            if isinstance(body.get(key), str):
                return str(body[key])[:200]
    return json.dumps(body)[:200]


def is_infrastructure(outcome: Outcome) -> bool:
    """Could the caller not reach a working service (forgiven), rather than get a wrong
    answer from one (a bug)?"""
    if outcome.error_type in (CONNECTION_REFUSED, TIMEOUT, TRANSPORT_ERROR):
        return True
    if outcome.error_type != HTTP_ERROR:
        return False
    if outcome.status_code in GATEWAY_STATUSES:
        return True
    return (outcome.status_code or 0) >= 500 and any(
        marker in outcome.detail or marker in json.dumps(outcome.body)
        for marker in _MISSING_TABLE)


def code_of(outcome: Outcome) -> str:
    """The summary table's key: `200`, `404`, `connection_refused`..."""
    if outcome.status_code is not None:
        return str(outcome.status_code)
    return str(outcome.error_type)
