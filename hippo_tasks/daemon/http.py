"""The daemon's HTTP API (DESIGN section 4). Errors become statuses here and only here.

A threading server from the standard library: every request gets a thread, so a slow
or stuck client cannot block the others, and nothing heavy is imported.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hippo_tasks import errors as E
from hippo_tasks.daemon.commands import StackCommands
from hippo_tasks.daemon.guard import refusal
from hippo_tasks.daemon.httpcore import Body, ClientGone, HttpError, decode_json, json_type

MAX_BODY = 1024 * 1024
READ_TIMEOUT_S = 10.0
"""A control request's body arrives within this, or the client gets 408."""


STATUS_FOR: list[tuple[type[E.HippoError], int]] = [
    (E.UnknownServiceError, 404),
    (E.UsageError, 400),
    (E.ShutdownInProgressError, 503),
    (E.RequestTimeoutError, 504),
    (E.ServiceStartError, 500),
]


def status_for(exc: BaseException) -> int:
    for cls, status in STATUS_FOR:
        if isinstance(exc, cls):
            return status
    return 500


def error_payload(exc: E.HippoError) -> dict[str, Any]:
    """An error's answer: its message, its type, and its data a client needs to act on."""
    payload: dict[str, Any] = {"error": exc.message(), "type": exc.__class__.__name__}
    if isinstance(exc, E.UnknownServiceError):
        payload["service"] = exc.name
        payload["services"] = list(exc.known)
    return payload


Handler = Callable[["ApiHandler", dict[str, str]], tuple[int, Any]]
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []
NAME = r"(?P<name>[A-Za-z][A-Za-z0-9_-]{0,62})"


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    regex = re.compile("^" + pattern.replace("{name}", NAME) + "$")

    def register(fn: Handler) -> Handler:
        _ROUTES.append((method, regex, fn))
        return fn

    return register


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, commands: StackCommands) -> None:
        super().__init__((host, port), ApiHandler)
        self.commands = commands
        self.loopback_only = host in ("127.0.0.1", "localhost", "::1")


class ApiHandler(BaseHTTPRequestHandler):
    server: ApiServer
    body: Body
    protocol_version = "HTTP/1.1"
    server_version = "hippodrome"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return  # requests are not service output; keep the terminal for the services

    @property
    def commands(self) -> StackCommands:
        return self.server.commands

    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def body_json(self) -> dict[str, Any] | None:
        """An action's optional body: nothing, or a JSON object (no field is read yet)."""
        raw = self.body.read(MAX_BODY, READ_TIMEOUT_S, noun="the request")
        if not raw.strip():
            return None
        value = decode_json(raw, "the request")
        if not isinstance(value, dict):
            raise HttpError(400, f"Request body must be a JSON object or empty, got "
                                 f"{json_type(value)}")
        return value

    def send_json(self, status: int, payload: Any, close: bool = False,
                  headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":  # an answer to HEAD has headers only
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, headers too long...) as JSON too.

        A line it could not parse leaves the version at HTTP/0.9, which would answer a
        bare body with no status line: such a client gets a proper HTTP/1.0 answer.
        """
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        try:
            text = message or self.responses.get(code, ("error",))[0]
            self.send_json(code, {"error": text}, close=True)
        except OSError:
            return

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        allowed = []
        self.body = Body(self.headers, self.rfile, self.connection)
        refused = refusal(path, method, self.headers, self.server.loopback_only)
        try:
            if refused is not None:
                raise HttpError(refused.status, refused.message)
            for m, regex, fn in _ROUTES:
                match = regex.match(path)
                if not match:
                    continue
                if m != method:
                    allowed.append(m)
                    continue
                status, payload = fn(self, match.groupdict())
                if status != 0:
                    self.send_json(status, payload, self.body.unread)
                return
            if allowed:
                methods = ", ".join(sorted(set(allowed)))
                raise HttpError(405, f"method {method} not allowed on {path}",
                                headers={"Allow": methods},
                                extra={"allowed": sorted(set(allowed))})
            raise HttpError(404, f"no such route: {method} {path}")
        except HttpError as exc:
            self.send_json(exc.status, exc.payload(), exc.close or self.body.unread,
                           exc.headers)
        except E.HippoError as exc:
            self.send_json(status_for(exc), error_payload(exc), self.body.unread)
        except (BrokenPipeError, ConnectionResetError, ClientGone):
            self.close_connection = True
            return
        except Exception as exc:  # the server keeps serving whatever a handler does
            self.send_json(500, {"error": f"internal error: {exc.__class__.__name__}: {exc}"})

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:  # noqa: N802
        """A CORS preflight gets 405 without CORS headers: no other site is let in."""
        self._dispatch("OPTIONS")


def _int_arg(q: dict[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"'{key}' must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise HttpError(400, f"'{key}' must be between {lo} and {hi}")
    return value


@route("GET", "/healthz")
def _healthz(h: ApiHandler, _: dict[str, str]) -> tuple[int, Any]:
    return 200, {"status": "ok"}


@route("GET", "/api/status")
def _status(h: ApiHandler, _: dict[str, str]) -> tuple[int, Any]:
    return 200, h.commands.status()


@route("GET", "/api/services/{name}/logs")
def _logs(h: ApiHandler, p: dict[str, str]) -> tuple[int, Any]:
    q = h.query()
    lines = _int_arg(q, "lines", 100, 0, 100_000)
    after = _int_arg(q, "after", -1, -1, 2**62)
    return 200, h.commands.logs(p["name"], lines, None if after < 0 else after)


def _action(kind: str) -> Handler:
    def handler(h: ApiHandler, p: dict[str, str]) -> tuple[int, Any]:
        h.body_json()
        fn = getattr(h.commands, kind)
        return 200, fn(p.get("name"))

    return handler


for _kind in ("start", "stop", "restart"):
    route("POST", f"/api/services/{{name}}/{_kind}")(_action(_kind))
    route("POST", f"/api/stack/{_kind}")(_action(_kind))


@route("POST", "/api/shutdown")
def _shutdown(h: ApiHandler, _: dict[str, str]) -> tuple[int, Any]:
    return 202, h.commands.shutdown()


EXTENSIONS = ("hippo_tasks.daemon.page", "hippo_tasks.daemon.webhook")
"""Modules that register more routes with @route when imported (the page, the webhook)."""


def load_extensions() -> None:
    import importlib

    for name in EXTENSIONS:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def serve(host: str, port: int, commands: StackCommands) -> tuple[ApiServer, Callable[[], None]]:
    """Bind now (so a busy port fails loudly before any service starts), serve in a thread."""
    load_extensions()
    server = ApiServer(host, port, commands)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                              name="http", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return server, stop
