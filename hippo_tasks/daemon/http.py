"""The daemon's HTTP server (DESIGN section 4): routing, and every response written here.

A threading server on socketserver (hippo_contract/http_loop.py): every connection gets a
thread, so a slow or stuck client cannot block the others, and nothing heavy is
imported. Routes are the table in daemon/routes.py; handlers return response values
(daemon/httpcore.py), and this module alone writes them, and alone turns errors into
statuses.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

from hippo_contract.http_loop import RequestHandler, ThreadingServer, phrase
from hippo_tasks import errors as E
from hippo_tasks.daemon import routes
from hippo_tasks.daemon.app import App
from hippo_tasks.daemon.commands import StackCommands
from hippo_tasks.daemon.connections import (
    CONTROL,
    Connections,
    allowed,
    busy_sentence,
    made_room,
    refuse,
)
from hippo_tasks.daemon.guard import is_loopback_name, refusal
from hippo_tasks.daemon.httpcore import (
    Body,
    ClientGone,
    HttpError,
    Json,
    Raw,
    Request,
    Response,
    Stream,
    json_head,
    peer_gone,
)
from hippo_tasks.out_of_memory import OUT_OF_MEMORY, is_out_of_memory

STATUS_FOR: list[tuple[type[E.HippoError], int]] = [
    (E.UnknownServiceError, 404),
    (E.UsageError, 400),
    (E.ShutdownInProgressError, 503),
    (E.StackShutDownError, 503),
    (E.LogReadersBusyError, 503),
    (E.LogAnswersUnreadError, 503),
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
        if exc.left_out:
            payload["left_out"] = exc.left_out
    return payload


class ApiServer(ThreadingServer):
    def __init__(self, sock: socket.socket, commands: StackCommands) -> None:
        """On a socket already bound and listening (daemon/listener.py)."""
        super().__init__(sock.getsockname()[:2], ApiHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        host, _ = self.server_address = sock.getsockname()[:2]
        self.app = App.for_commands(commands)
        self.routes = routes.build()
        self.loopback_only = is_loopback_name(host) or host == "::1"
        engine = commands.engine
        self.connections = Connections(len(engine.plan.services), lambda text: _on_loop(
            engine, text))

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection, if the descriptor limit has room (connections)."""
        if self.connections.admit(request) == "no":
            refuse(request, busy_sentence(allowed(self.connections.services)))
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError as exc:
            # The user's process limit, reached by other processes while the stack runs:
            # each connection was dropped with a traceback in daemon.log, and every
            # command called the daemon hung and advised `hd down --force` (adv45 R/1).
            limit = E.ProcessLimitError.of(exc, "a thread for this request")
            if limit is None:
                raise
            limit.then = "ask again (the stack runs on; this request did nothing)"
            refuse(request, limit.message(), "ProcessLimitError")
            self.shutdown_request(request)

    def shutdown_request(self, request: Any) -> None:
        self.connections.release(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request the daemon had no memory for (a low `ulimit -v`: the handler's
        socket file, a lock) is a 503 that says so. It was dropped with two tracebacks
        in daemon.log, and every command called the daemon hung (adv48 A/9)."""
        exc = sys.exc_info()[1]
        if exc is not None and is_out_of_memory(exc):
            with contextlib.suppress(Exception):
                refuse(request, f"{OUT_OF_MEMORY} (the daemon, for this request: ask again; "
                                "the stack runs on, and this request did nothing)",
                       "OutOfMemory")
            return
        super().handle_error(request, client_address)


def _on_loop(engine: Any, text: str) -> None:
    """Say `text` in the daemon's output, from the loop (the printer is the loop's)."""
    loop = engine.loop
    if loop is not None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody to tell
            loop.call_soon_threadsafe(engine.note, text)


class _SocketSink:
    """A stream's writer: the handler's file, and the socket to notice a closed tab."""

    def __init__(self, h: ApiHandler) -> None:
        self.h = h

    def write(self, data: bytes) -> None:
        self.h.wfile.write(data)

    def peer_gone(self) -> bool:
        return peer_gone(self.h.connection)


DRAIN_S = 2.0
"""How long a stopping API waits for the answers under way (serve's stop)."""
IDLE_TIMEOUT_S = 15.0
"""A connection that sends nothing for this long (an idle keep-alive, a head sent half
way, a bare HTTP/0.9 line waiting for headers that never come) is closed: each holds a
thread and a descriptor, and a page or script opening them faster than they end would
run the daemon out of both. A browser reconnects on its own."""


class ApiHandler(RequestHandler):
    server: ApiServer
    body: Body
    disable_nagle_algorithm = True  # no 40 ms stall between a head and a body
    stamped = True  # the listener stamps arrivals (listener.bind)
    timeout = IDLE_TIMEOUT_S

    streaming_since: float | None = None
    _continue_owed = False

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue`: answered when the route reads the body (Body.go_ahead),
        not before its checks: a body over the limit was invited, then refused."""
        self._continue_owed = True
        return True

    def _go_ahead(self) -> None:
        self.wfile.write(f"{self.protocol_version} 100 Continue\r\n\r\n".encode("latin-1"))
        self.wfile.flush()

    def setup(self) -> None:
        super().setup()
        self.server.connections.attach(self.connection, self)

    def waiting(self) -> None:
        self.server.connections.idle(self.connection)

    def head_read(self) -> bool:
        if self.server.connections.busy(self.connection):
            return True
        refuse(self.connection, made_room(allowed(self.server.connections.services)))
        return False

    # ---- writing: the only place responses reach the socket --------------------------
    def send_json(self, status: int, payload: Any, close: bool = False,
                  headers: dict[str, str] | None = None, encoded: bytes | None = None) -> None:
        """Head and body in one write: two small writes would wait on Nagle's algorithm."""
        body = json.dumps(payload).encode() if encoded is None else encoded
        close = close or self.close_connection
        self.close_connection = close
        head = json_head(self.protocol_version, status, self.version_string(), len(body),
                         close, headers)
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def _send_raw(self, r: Raw, close: bool) -> None:
        self.send_response(r.status)
        self.send_header("Content-Type", r.content_type)
        self.send_header("Content-Length", str(len(r.body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in r.headers.items():
            self.send_header(key, value)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(r.body)

    def _send_stream(self, s: Stream) -> None:
        self.streaming_since = time.monotonic()  # may give way to a command (connections)
        try:
            self.close_connection = True
            self.connection.settimeout(s.write_timeout)
            self.send_response(200)
            self.send_header("Content-Type", s.content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            for key, value in s.headers.items():
                self.send_header(key, value)
            self.end_headers()
            s.run(_SocketSink(self))
        except OSError:  # the peer left or stalled; nothing more to say to it
            pass
        finally:
            s.done()

    def send(self, response: Response) -> None:
        if isinstance(response, Json):
            try:
                self.send_json(response.status, response.payload,
                               response.close or self.body.unread, encoded=response.encoded)
            finally:
                if response.done is not None:
                    response.done()
        elif isinstance(response, Raw):
            self._send_raw(response, self.body.unread)
        else:
            self._send_stream(response)

    def send_error(self, code: int, message: str | None = None) -> None:
        """The request loop's refusals (bad request line, headers too long...) as JSON.

        A line it could not parse leaves the version at HTTP/0.9, which would answer a
        bare body with no status line: such a client gets a proper HTTP/1.0 answer.
        """
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        try:
            text = message or phrase(code) or "error"
            self.send_json(code, {"error": text}, close=True)
        except OSError:
            return

    # ---- routing ------------------------------------------------------------------
    def _route(self, method: str, path: str) -> Response:
        allowed: set[str] = set()
        for route in self.server.routes:
            match = route.pattern.match(path)
            if not match:
                continue
            if route.method != method and not (method == "HEAD" and route.head):
                if route.allowed:
                    allowed.update((route.method, "HEAD") if route.head else (route.method,))
                continue
            split = urlsplit(self.path)
            given = parse_qs(split.query, keep_blank_values=True)
            twice = sorted(k for k, v in given.items() if len(v) > 1)
            if twice:  # `?cascade=1&cascade=0`: the last one was taken, silently (z/7)
                said = ", ".join(repr(k[:40]) for k in twice[:5])
                raise HttpError(400, f"query parameter(s) {said} given more than once: "
                                     "give each once")
            query = {k: v[0] for k, v in given.items()}
            # A name is as sent: `rec%20(1).jsonl` is `rec (1).jsonl` (each handler
            # checks what it gets: a known service, a plain file in the recordings).
            params = {k: _as_sent(v) for k, v in match.groupdict().items()}
            return route.handler(Request(route.method, path, query, params, self.headers,
                                         self.body, self.server.app, self.received))
        if allowed:
            raise HttpError(405, f"method {method} not allowed on {path}",
                            headers={"Allow": ", ".join(sorted(allowed))},
                            extra={"allowed": sorted(allowed)})
        raise HttpError(404, f"no such route: {method} {_shown(path)}")

    def _dispatch(self, method: str) -> None:
        path = unreserved_decoded(urlsplit(self.path).path)
        owed, self._continue_owed = self._continue_owed, False
        self.body = Body(self.headers, self.rfile, self.connection,
                         go_ahead=self._go_ahead if owed else None)
        try:
            refused = refusal(path, method, self.headers, self.server.loopback_only)
            if refused is not None:
                raise HttpError(refused.status, refused.message)
            # HEAD as the GET it mirrors: `curl -fI /api/status` was 503 at the limit,
            # when a health check matters most (adv27 j/6)
            if ("GET" if method == "HEAD" else method, path) not in CONTROL and \
                    self.server.connections.control_only(self.connection):
                raise HttpError(503, busy_sentence(allowed(self.server.connections.services)),
                                close=True, extra={"type": "TooManyConnections"})
            self.send(self._route(method, path))
        except HttpError as exc:
            self.send_json(exc.status, exc.payload(), exc.close or self.body.unread,
                           exc.headers)
            self.body.drain_unused()
        except E.HippoError as exc:
            self.send_json(status_for(exc), error_payload(exc), self.body.unread)
        except (BrokenPipeError, ConnectionResetError, ClientGone):
            self.close_connection = True
        except Exception as exc:  # the server keeps serving whatever a handler does
            self.send_json(500, {"error": f"internal error: {exc.__class__.__name__}: {exc}"},
                           close=True)

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


IDLE_POLL_S = 60.0
"""serve_forever's select timeout: only how often an idle daemon wakes for nothing
(twice a second at socketserver's 0.5 s, ~98 % of an idle daemon's wake-ups once
liveness probes are batched); stopping does not wait for it (see `serve`)."""


def serve(sock: socket.socket, commands: StackCommands) -> tuple[ApiServer, Callable[[], None]]:
    """Serve on the bound socket in a thread (daemon/listener.py binds it, early).

    `stop` asks the loop to end, then connects to the server until it has: each
    connection wakes its select at once, so `hd down` does not wait out a poll
    interval (it waited up to 0.5 s here, most of the time `down` took)."""
    server = ApiServer(sock, commands)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": IDLE_POLL_S},
                              name="http", daemon=True)
    thread.start()
    host_bound, bound_port = str(server.server_address[0]), int(server.server_address[1])
    wake_host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host_bound,
                                                                            host_bound)

    def stop() -> None:
        done = threading.Event()

        def shut() -> None:
            server.shutdown()
            done.set()

        threading.Thread(target=shut, name="http-stop", daemon=True).start()
        while not done.wait(0.01):
            _wake(wake_host, bound_port)
        # Requests under way finish their answers (an action the shutdown settled, an MCP
        # call's JSON-RPC answer): the process ended under them, and an MCP client got an
        # empty reply where the API and the CLI were answered.
        drained = time.monotonic() + DRAIN_S
        while server.connections.answering() and time.monotonic() < drained:
            time.sleep(0.01)
        server.server_close()

    return server, stop


def _wake(host: str, port: int) -> None:
    """One connection to our own listening socket. Not create_connection: its
    getaddrinfo encodes the address with the idna codec, imported on first use, and
    under a tight `ulimit -v` that import failed at shutdown (LookupError: idna)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        sock.connect((host, port))


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def unreserved_decoded(path: str) -> str:
    """`%61` is `a` (RFC 3986 6.2.2.2): `/api/st%61tus` was a 404 that said "no such
    route: GET /api/status", and a service name sent %-escaped reached no service
    (adv46 H/3). Only letters, digits and `-._~` are decoded, before the guard and the
    routes see the path; `%2F` and the rest stay as sent (a name's handler decodes)."""
    if "%" not in path:
        return path
    return _ESCAPE.sub(lambda m: c if (c := chr(int(m[1], 16))) in UNRESERVED else m[0],
                       path)


def _shown(path: str) -> str:
    """A path for a sentence: UTF-8 as the client meant it (`café`, sent raw or
    %-escaped), an escaped `/`, `?` or space left escaped, or the 404 for `/api%2Fstatus`
    named `/api/status`, a route that exists."""
    raw = path.encode("latin-1", "replace")
    raw = re.sub(rb"%([89A-Fa-f][0-9A-Fa-f])", lambda m: bytes([int(m[1], 16)]), raw)
    return raw.decode("utf-8", "replace")


def _as_sent(path: str) -> str:
    """The path as the client meant it: http.server reads the request line as Latin-1,
    so a UTF-8 name (`/api/services/café/logs`, sent raw or %-escaped) read as `cafÃ©`."""
    return unquote_to_bytes(path.encode("latin-1", "replace")).decode("utf-8", "replace")
