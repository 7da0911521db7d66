"""The HTTP/1.1 request loop the daemon and every bundled service serve with:
http.server's, without its imports.

`http.server` imports http.client, the email package, mimetypes, html, shutil and
datetime (for its file-serving handler, its header parser and its error page). The
daemon and the services use none of them: heads are read by http_head.py, and each
side writes its own answers. Those imports were 2.9 MB of the daemon's private memory
and 1.3 MB of each service's (13 services on the ecom stack), and ~20 ms of each
start. What is kept here is the request loop of `BaseHTTPRequestHandler`, the same
behaviour: keep-alive until the client or an answer says close, 414 for a request line
over 64 KiB, 400/431/505 for a head http.server refuses, 501 for an unknown method,
`Expect: 100-continue` answered before the body, a timed-out socket ends the connection
quietly, and the status line, Server and Date headers written the same way. It lives
in hippo_contract because both sides run it and neither may import the other.
"""

from __future__ import annotations

import contextlib
import errno
import io
import socket
import socketserver
import sys
import time
from http import HTTPStatus

from hippo_contract.http_head import HeadCut, HeadError, Headers, read_headers, request_line

MAX_REQUEST_LINE = 65536
BLANK_LINES_SKIPPED = 4
"""Empty lines before a request line that are passed over (RFC 9112 2.2: a client may
send a CRLF after a POST body). One ended the connection without an answer, and with
it the request pipelined behind it (adv35 y/4)."""

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

    def get_request(self) -> tuple[socket.socket, object]:
        """accept(), pausing when out of descriptors: the waiting connection keeps the
        listener readable, and socketserver's loop retried at once, spinning a core
        (14 s of CPU in 15 s) for as long as the shortage lasted."""
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                time.sleep(0.05)
            raise

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that reset or hung up (a killed browser, a kept-alive connection
        closed with SO_LINGER 0) or went silent is routine: socketserver printed a
        19-line traceback for each, into a foreground `hd up`'s terminal and daemon.log
        (273 for 300 reset connections, adv26 h/2). Anything else is still printed."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


SO_TIMESTAMPNS = 35
"""Linux's option (asm-generic; Python's socket module does not name it): each read's
ancillary data then carries when the kernel received its bytes, as SCM_TIMESTAMPNS."""
_STAMP_SPACE = socket.CMSG_SPACE(16)
_STAMP_MOST_S = 2.0
"""A kernel stamp further back than this from the thread's own read is taken as a
clock step (the stamp is wall-clock time), not as a wait: the read's time is used."""


def stamp_arrivals(listener: socket.socket) -> None:
    """Have the kernel stamp what reaches this listener's connections (they inherit the
    option), so that a request's time is when it arrived, not when its thread got a core
    to read it. Where the system has no such option, requests are unstamped (None)."""
    with contextlib.suppress(OSError):
        listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def _arrival(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """time.monotonic() of the kernel's receipt, from a read's SCM_TIMESTAMPNS."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds = int.from_bytes(data[:8], sys.byteorder, signed=True)
            nanos = int.from_bytes(data[8:16], sys.byteorder, signed=True)
            ago = time.time() - (seconds + nanos / 1e9)
            return time.monotonic() - (ago if 0.0 <= ago <= _STAMP_MOST_S else 0.0)
    return None


class _HeadDeadlineIO(io.RawIOBase):
    """The connection's reads, held to one deadline while a request head is read.

    The socket's timeout is per read: a client sending its head a byte every few
    seconds kept a thread and a descriptor for as long as it liked (each read was in
    time). With `deadline` set, every read gets only what is left of it. The socket
    itself is the server's to close, as with socketserver's own file."""

    deadline: float | None = None
    stamped = False
    """Reads ask for the kernel's receipt stamp (stamp_arrivals set on the listener)."""
    first: float | None = None
    """When the first bytes read since the caller cleared it arrived (monotonic)."""
    last: float | None = None
    """When the latest read's bytes arrived."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request head not received in time")
            self._sock.settimeout(left)
        if not self.stamped:
            return self._sock.recv_into(b)
        got, ancillary, _flags, _peer = self._sock.recvmsg_into([b], _STAMP_SPACE)
        if got:
            self.last = _arrival(ancillary)
            if self.first is None:
                self.first = self.last
        return got


class RequestHandler(socketserver.StreamRequestHandler):
    """Reads requests off one connection and calls `do_<METHOD>` for each.

    A subclass writes every answer (`send_error` included); this class keeps the
    connection's loop, reads each head, and has the head-writing calls http.server has.
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
    headers: Headers
    stamped = False
    """Requests carry `received` (the server's listener went through stamp_arrivals)."""
    received: float | None = None
    """time.monotonic() when this request's first bytes reached the kernel, if stamped:
    threads read their connections in whatever order they get a core, so two requests
    a few ms apart can reach the server's code in the other order (adv34 w/4)."""

    def setup(self) -> None:
        """socketserver's, with reads that can be held to a deadline (see above)."""
        super().setup()
        self.rfile.close()
        self._reads = _HeadDeadlineIO(self.connection)
        self._reads.stamped = self.stamped
        self.rfile = io.BufferedReader(self._reads)

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        """One request; its whole head (the wait for it included) must come within the
        handler's `timeout`, however it is trickled."""
        try:
            self.waiting()
            if self.timeout:
                self._reads.deadline = time.monotonic() + self.timeout
            self._reads.first = None
            try:
                self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
                for _ in range(BLANK_LINES_SKIPPED):
                    if self.raw_requestline not in (b"\r\n", b"\n"):
                        break
                    self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
                # (a pipelined request's bytes came with the read before it)
                self.received = self._reads.first or self._reads.last
                if len(self.raw_requestline) > MAX_REQUEST_LINE:
                    self.requestline, self.request_version, self.command = "", "", ""
                    self.send_error(414)
                    return
                if not self.raw_requestline.endswith(b"\n"):  # ended, or cut off by the end
                    self.close_connection = True
                    return
                if not self.parse_request():
                    return
                if not self.head_read():
                    self.close_connection = True
                    return
            finally:
                if self._reads.deadline is not None:
                    self._reads.deadline = None
                    self.connection.settimeout(self.timeout)
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(501, f"Unsupported method ({self.command!r})")
                return
            method()
            self.wfile.flush()
        except TimeoutError:  # a client silent past the socket's timeout
            self.close_connection = True

    def parse_request(self) -> bool:
        """http.server's own, with the head read by http_head (see there why)."""
        self.command = None  # type: ignore[assignment]  # as http.server does
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        if not self.requestline.split():  # more empty lines than are passed over, or
            # one of spaces (which is not passed over)
            self.send_error(400, "no request line: only empty or blank lines where it "
                                 f"should be (up to {BLANK_LINES_SKIPPED} empty lines are "
                                 "passed over)")
            return False
        try:
            self.command, self.path, self.request_version, self.close_connection = \
                request_line(self.requestline, self.protocol_version)
            self.headers = read_headers(self.rfile)  # type: ignore[arg-type]
        except HeadCut:
            return False
        except HeadError as exc:
            self.send_error(exc.status, exc.message)
            return False
        connection = (self.headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if (self.headers.get("Expect") or "").lower() == "100-continue" and \
                self.request_version >= "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def waiting(self) -> None:
        """Before each wait for a request head (the connection is idle from here)."""

    def head_read(self) -> bool:
        """A whole head is in: go on with it (True), or close the connection without an
        answer. A server that closes idle connections from other threads (to make room)
        says here whether this one is still open, and from now on counts it busy."""
        return True

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
