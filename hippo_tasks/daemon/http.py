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

MAX_BODY = 1024 * 1024
PROXY_HEADERS = ("Cf-Connecting-Ip", "Cf-Ray", "X-Forwarded-For", "Ngrok-Trace-Id")
"""Headers the tunnel tools add: such a request came from the internet, not this machine."""
TUNNEL_PATHS = frozenset({"/webhook/eventbridge"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def _host_name(host_header: str) -> str:
    return host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header


def refusal(path: str, method: str, headers: Any, loopback_only: bool) -> str | None:
    """Why a request may not reach the API, or None.

    A web page the user has open elsewhere can make the browser send requests to
    127.0.0.1 (a form POST to /api/stack/stop), or rebind its own hostname to 127.0.0.1
    and read /api/status. So: when the daemon listens on loopback, the Host must be a
    loopback name; and a request that changes something must not come from another
    origin. The webhook is exempt: it is meant to be reached through the tunnel and is
    guarded by its token.
    """
    if path in TUNNEL_PATHS:
        return None
    if any(h in headers for h in PROXY_HEADERS):
        return "only POST /webhook/eventbridge is reachable through the events tunnel"
    host = headers.get("Host", "")
    if loopback_only and _host_name(host) not in LOOPBACK_NAMES:
        return f"Host {host!r} is not this machine's loopback; open the dashboard at 127.0.0.1"
    origin = headers.get("Origin")
    if method != "GET" and origin is not None and origin != f"http://{host}":
        return f"cross-origin request from {origin!r} refused"
    return None

STATUS_FOR: list[tuple[type[E.HippoError], int]] = [
    (E.UnknownServiceError, 404),
    (E.UsageError, 400),
    (E.ShutdownInProgressError, 503),
    (E.RequestTimeoutError, 504),
    (E.ServiceStartError, 500),
]


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_for(exc: BaseException) -> int:
    for cls, status in STATUS_FOR:
        if isinstance(exc, cls):
            return status
    return 500


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

    def body_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise HttpError(413, f"request body too large ({length} bytes; limit {MAX_BODY})")
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"invalid JSON: {exc}") from exc

    def send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        allowed = []
        refused = refusal(path, method, self.headers, self.server.loopback_only)
        if refused is not None:
            self.send_json(403, {"error": refused})
            return
        try:
            for m, regex, fn in _ROUTES:
                match = regex.match(path)
                if not match:
                    continue
                if m != method:
                    allowed.append(m)
                    continue
                status, payload = fn(self, match.groupdict())
                if status != 0:
                    self.send_json(status, payload)
                return
            if allowed:
                self.send_response(405)
                body = json.dumps({"error": f"method {method} not allowed on {path}",
                                   "allowed": sorted(set(allowed))}).encode()
                self.send_header("Allow", ", ".join(sorted(set(allowed))))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_json(404, {"error": f"no such route: {method} {path}"})
        except HttpError as exc:
            self.send_json(exc.status, {"error": exc.message})
        except E.HippoError as exc:
            self.send_json(status_for(exc), {"error": exc.message(),
                                             "type": exc.__class__.__name__})
        except (BrokenPipeError, ConnectionResetError):
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
