"""The socket side: a threaded HTTP/1.1 server that feeds `App.handle`.

Why these settings: a thread per connection (daemon threads, so a stuck client never
blocks exit) keeps a slow request from stalling the rest, the failure mode of the
reference fake_cell's shared event loop; keep-alive with an idle timeout lets a peer
reuse one connection without idle sockets pinning threads forever; a deep listen
backlog absorbs bursts of 50+ clients connecting at once; bodies are size-checked
before they are read, so an oversized upload costs nothing but a 413.
Even the loop's own protocol errors (bad request line, unknown method) come back as
JSON through `send_error`, so no client ever has to parse an HTML error page. The loop
is hippo_contract's, the daemon's own, not http.server's: http.server's imports (its
file handler, error page and email-based header parser) were 1.3 MB of every service.
"""

from __future__ import annotations

import time
from http import HTTPStatus

from hippo_contract.http_loop import RequestHandler, ThreadingServer, phrase
from hippo_platform.services.common.app import App
from hippo_platform.services.common.errors import BadRequest, HttpError, PayloadTooLarge
from hippo_platform.services.common.messages import Response

IDLE_TIMEOUT_S = 30.0


class _Handler(RequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line
    server_version = "hippodrome"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    disable_nagle_algorithm = True  # else headers and body wait on a 40 ms delayed ACK
    server: ServiceServer

    def _serve(self) -> None:
        started = time.perf_counter()
        app = self.server.app
        try:
            body = self._read_body()
        except HttpError as exc:
            self.close_connection = True  # the unread body would poison the next request
            response = app.error_response(exc)
        else:
            headers = {k: v for k, v in self.headers.items()}
            response = app.handle(self.command, self.path, headers, body)
        self._write(response)
        app.log_request(self.command, self.path, response.status, _ms_since(started))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def _content_length(self) -> int:
        if (self.headers.get("Transfer-Encoding") or "").lower() not in ("", "identity"):
            raise HttpError("chunked request bodies are not supported", status=411)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        try:
            length = int(raw)
        except ValueError:
            raise BadRequest(f"bad Content-Length {raw!r}") from None
        if length < 0:
            raise BadRequest(f"bad Content-Length {raw!r}")
        limit = self.server.app.max_body
        if length > limit:
            raise PayloadTooLarge(f"request body of {length} bytes exceeds the {limit} limit")
        return length

    def _read_body(self) -> bytes:
        length = self._content_length()
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise BadRequest("request body shorter than its Content-Length")
        return body

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before the client sends it."""
        try:
            self._content_length()
        except HttpError as exc:
            self.close_connection = True
            self._write(self.server.app.error_response(exc))
            return False
        return super().handle_expect_100()

    def _write(self, response: Response) -> None:
        data = response.encode()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The loop's own errors (400 bad request line, 414, 431, 501, 505), as JSON."""
        self.close_connection = True
        text = message or phrase(code) or "error"
        if code == HTTPStatus.NOT_IMPLEMENTED:
            text = f"method {self.command} not supported"
        self._write(Response(code, {"error": text}))
        self.server.app.log_request(self.command, getattr(self, "path", ""), code, 0.0)



class ServiceServer(ThreadingServer):
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        super().__init__(address, _Handler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{port}"


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
