"""The HTTP/1.1 request loop under the daemon's handler: http.server's, without its imports.

`http.server` imports http.client, the email package, mimetypes, html, shutil and
datetime (for its file-serving handler, its header parser and its error page); the
daemon uses none of them, as its heads are read by request_head.py and every answer
is written by daemon/http.py. Those imports were 2.9 MB of the daemon's private memory
for the life of the stack and ~24 ms of its start. What is kept here is the request
loop of `BaseHTTPRequestHandler`, the same behaviour: keep-alive until the client or
an answer says close, 414 for a request line over 64 KiB, 501 for an unknown method,
a timed-out socket ends the connection quietly, and the status line, Server and Date
headers written the same way.
"""

from __future__ import annotations

import socketserver
import sys
import time
from http import HTTPStatus

MAX_REQUEST_LINE = 65536

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_http_date(seconds: float) -> str:
    """RFC 9110's IMF-fixdate, in English whatever the locale (as email.utils does)."""
    t = time.gmtime(seconds)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header, formatted once a second: formatting it cost 5% of an event."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, format_http_date(now))
    return _date[1]


def phrase(status: int) -> str:
    """The reason phrase of a status, or '' for one HTTP does not name."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class ThreadingServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A thread per connection: a slow or stuck client blocks only its own."""

    daemon_threads = True
    allow_reuse_address = True


class RequestHandler(socketserver.StreamRequestHandler):
    """Reads requests off one connection and calls `do_<METHOD>` for each.

    A subclass parses the head (`parse_request`) and writes every answer; this class
    keeps the connection's loop and the head-writing calls http.server has.
    """

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/0.9"
    server_version = "hippodrome"
    sys_version = "Python/" + sys.version.split()[0]
    close_connection: bool
    command: str
    path: str
    request_version: str
    requestline: str
    raw_requestline: bytes

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(501, f"Unsupported method ({self.command!r})")
                return
            method()
            self.wfile.flush()
        except TimeoutError:  # a client silent past the socket's timeout
            self.close_connection = True

    def parse_request(self) -> bool:
        raise NotImplementedError

    def send_error(self, code: int, message: str | None = None) -> None:
        raise NotImplementedError

    def version_string(self) -> str:
        return f"{self.server_version} {self.sys_version}"

    def send_response(self, code: int) -> None:
        """The status line, Server and Date; the head is written by end_headers()."""
        self._head = [f"{self.protocol_version} {code} {phrase(code)}\r\n"]
        self.send_header("Server", self.version_string())
        self.send_header("Date", http_date())

    def send_header(self, keyword: str, value: str) -> None:
        self._head.append(f"{keyword}: {value}\r\n")
        if keyword.lower() == "connection":
            if value.lower() == "close":
                self.close_connection = True
            elif value.lower() == "keep-alive":
                self.close_connection = False

    def end_headers(self) -> None:
        """An HTTP/0.9 request gets the bare body, as from http.server."""
        self._head.append("\r\n")
        if self.request_version != "HTTP/0.9":
            self.wfile.write("".join(self._head).encode("latin-1", "strict"))
        self._head = []

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue`: tell the client to send its body."""
        self.wfile.write(f"{self.protocol_version} 100 Continue\r\n\r\n".encode("latin-1"))
        return True
