"""A JSON client for calling a peer service, on the stdlib.

Why not `requests`: importing it costs about 8 MB of RSS per process, and the ecom
stack runs a dozen Python services under a 350 MB budget. Why here: every service that
calls another must turn "peer unreachable" into the same 502 naming the peer and its
URL (the reference controller answered 500s instead), and must pass a peer's 404/401
through as what it is.

One keep-alive connection per thread is reused; a connection idle longer than the
server's keep-alive timeout is replaced before use, and a failure on a reused
connection is retried once on a fresh one (the server closing an idle socket looks
exactly like that). The connection is hippo_contract's, not http.client's (see
http_client.py there for why).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from hippo_contract.http_client import BadAnswer, Connection, host_header, request_bytes
from hippo_platform.services import tls_context
from hippo_platform.services.common.errors import BadGateway, HttpError, NotJsonAnswer
from hippo_platform.services.common.log import log_error

PASS_THROUGH = frozenset({400, 401, 403, 404, 409, 413})
_MAX_IDLE_S = 5.0


class PeerResponse(NamedTuple):
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_text(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return str(self.body["error"])
        return json.dumps(self.body)[:200]


def segment(value: str) -> str:
    """One path segment, escaped (a name with '/' must not become two segments)."""
    return quote(value, safe="")


class JsonClient:
    def __init__(self, base_url: str, *, peer: str, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{peer}: bad base URL {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.peer = peer
        self.timeout = timeout
        # Made now, so a service without TLS fails at its start, saying why.
        self._tls = tls_context() if parts.scheme == "https" else None
        default_port = 443 if parts.scheme == "https" else 80
        self._host = parts.hostname
        self._port = parts.port or default_port
        self._host_header = host_header(self._host, self._port, default_port)
        self._prefix = parts.path.rstrip("/")
        self._local = threading.local()

    def _connection(self, fresh: bool) -> tuple[Connection, bool]:
        """The thread's connection and whether it was used before."""
        conn: Connection | None = getattr(self._local, "conn", None)
        idle = time.monotonic() - getattr(self._local, "last_used", 0.0)
        if conn is not None and (fresh or idle > _MAX_IDLE_S):
            conn.close()
            conn = None
        if conn is not None:
            return conn, True
        self._local.conn = None
        conn = Connection(self._host, self._port, self.timeout, self._tls)
        self._local.conn = conn
        return conn, False

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> PeerResponse:
        """Any answer the peer gives; only "could not talk to it at all" raises (502)."""
        payload = None if body is None else json.dumps(body).encode("utf-8")
        sent = {"Host": self._host_header, "Accept": "application/json", **(headers or {})}
        if payload is not None:
            sent["Content-Type"] = "application/json"
        request = request_bytes(method, self._prefix + path, sent, payload)
        for attempt in (0, 1):
            reused = False
            try:
                conn, reused = self._connection(fresh=attempt > 0)
                answer = conn.exchange(request, head=method == "HEAD")
                status, data = answer.status, answer.body
                if not answer.keep_alive:
                    conn.close()
                    self._local.conn = None
                self._local.last_used = time.monotonic()
                break
            except (OSError, BadAnswer) as exc:
                self.close()
                if reused and attempt == 0 and not isinstance(exc, TimeoutError):
                    continue  # a stale keep-alive socket; a timeout may have been served
                raise BadGateway(
                    f"{self.peer} unreachable at {self.base_url}: {type(exc).__name__}: {exc}",
                    extra={"peer": self.peer, "url": self.base_url},
                ) from None
        try:
            decoded = json.loads(data) if data.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise NotJsonAnswer(
                f"{self.peer} at {self.base_url} answered {status} with a non-JSON body",
                extra={"peer": self.peer, "url": self.base_url},
            ) from None
        return PeerResponse(status, decoded)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        passthrough: Collection[int] = PASS_THROUGH,
    ) -> Any:
        """The decoded body of a 2xx, else the error `check` raises."""
        response = self.request(method, path, body=body, headers=headers)
        return self.check(response, passthrough)

    def check(self, response: PeerResponse, passthrough: Collection[int] = PASS_THROUGH) -> Any:
        """A 2xx's body; a peer's client error is re-raised as the same status and
        message, anything else becomes a 502 naming the peer."""
        if response.ok:
            return response.body
        if response.status in passthrough:
            raise HttpError(response.error_text(), status=response.status)
        raise BadGateway(
            f"{self.peer} at {self.base_url} answered {response.status}: {response.error_text()}",
            extra={"peer": self.peer, "url": self.base_url},
        )

    def close(self) -> None:
        """This thread's connection (each thread has its own)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()


CONFIG_EXIT = 78
"""sysexits EX_CONFIG: what a service exits with when a setting names an unusable peer."""


def peer_from_env(service: str, var: str, default: str, peer: str,
                  timeout: float = 30.0) -> JsonClient:
    """The client for the peer whose URL is in `var` (else `default`); a URL that is no
    URL ends the service at start-up with the variable named, not at its first call."""
    url = os.environ.get(var) or default
    try:
        return JsonClient(url, peer=peer, timeout=timeout)
    except ValueError as exc:
        log_error(f"{service}: {var}: {exc}")
        raise SystemExit(CONFIG_EXIT) from None
