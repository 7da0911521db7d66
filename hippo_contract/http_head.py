"""A request's header lines, read by hand.

http.server hands them to `email.parser`, which was half of the daemon's CPU for each
`GET /api/status` (profiled: 361 of 725 busy samples). Here they are split on the first
colon into a small case-insensitive multi-map with the calls the daemon and the bundled
services make (`get`, `get_all`, `items`), and anything an HTTP/1.1 server must refuse
is refused: obsolete line folding and whitespace before the colon (RFC 9112 section
5), a line over 64 KiB or more than 100 header lines (the standard library's own
limits, answered 431 as it does).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

MAX_LINE = 65536
MAX_HEADERS = 100
ONCE = {"host": "Host", "origin": "Origin", "sec-fetch-site": "Sec-Fetch-Site"}
"""Fields a request may carry once: only the first was checked (against the loopback
rule, the page's own origin), and a second could say anything (RFC 9112 3.2 asks a 400
for two Hosts, adv26 h's notes; a proxy that appends an Origin, adv51 H/3)."""


class HeadError(Exception):
    """A head the server answers with `status` (400 or 431) and closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HeadCut(Exception):
    """The connection ended (closed, half-closed, or shut by the server to make room)
    before the head's empty line: an unfinished request, closed without an answer and
    never acted on. Its end was taken for the head's, and a `POST /api/shutdown` whose
    sender was killed mid-write shut the stack down (adv51 H/1)."""


class Headers:
    """Header fields in arrival order; names compare without case."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._first: dict[str, str] = {}
        for name, value in fields:
            self._first.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name` (as email.message.Message.get), else `default`."""
        return self._first.get(name.lower(), default)

    def get_all(self, name: str) -> list[str] | None:
        key = name.lower()
        found = [v for n, v in self._fields if n.lower() == key]
        return found or None

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return (n for n, _ in self._fields)

    def __len__(self) -> int:
        return len(self._fields)


def read_headers(rfile: BinaryIO) -> Headers:
    """The header lines up to the empty line; HeadError for what must be refused,
    HeadCut when the connection ends first."""
    fields: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise HeadError(431, "Line too long")
        if not line.endswith(b"\n"):  # nothing more, or a line cut off by the end
            raise HeadCut
        if line in (b"\r\n", b"\n"):
            for once in ONCE:
                if sum(1 for name, _ in fields if name.lower() == once) > 1:
                    raise HeadError(400, f"More than one {ONCE[once]} header")
            return Headers(fields)
        if len(fields) >= MAX_HEADERS:
            raise HeadError(431, "Too many headers")
        if line[:1] in (b" ", b"\t"):
            raise HeadError(400, "Obsolete line folding in the request's headers")
        name, sep, value = line.decode("iso-8859-1").partition(":")
        if not sep or not name or name != name.strip() or " " in name or "\t" in name:
            raise HeadError(400, f"Malformed header line {line[:60]!r}")
        fields.append((name, value.strip(" \t\r\n")))


def request_line(line: str, protocol: str) -> tuple[str, str, str, bool]:
    """(method, target, version, close the connection after) from a request line, as
    http.server's parse_request reads it; HeadError(400 or 505) where it refuses."""
    words = line.split()
    version, close = "HTTP/0.9", True
    if len(words) >= 3:
        version = words[-1]
        numbers = version[5:].split(".") if version.startswith("HTTP/") else []
        if len(numbers) != 2 or not all(n.isdigit() and len(n) <= 10 for n in numbers):
            raise HeadError(400, f"Bad request version ({version!r})")
        major, minor = int(numbers[0]), int(numbers[1])
        if (major, minor) >= (2, 0):
            raise HeadError(505, f"Invalid HTTP version ({version[5:]})")
        close = not ((major, minor) >= (1, 1) and protocol >= "HTTP/1.1")
    if not 2 <= len(words) <= 3:
        raise HeadError(400, f"Bad request syntax ({line!r})")
    method, target = words[:2]
    if len(words) == 2 and method != "GET":
        raise HeadError(400, f"Bad HTTP/0.9 request type ({method!r})")
    if target.startswith("//"):  # gh-87389: never an absolute URI without a scheme
        target = "/" + target.lstrip("/")
    if not target.startswith("/") and "://" in target:
        # `GET http://evil.example/api/status` with `Host: 127.0.0.1` was served: its
        # authority, which HTTP says wins over Host, was never checked. No server here
        # is a proxy (adv26 h's notes).
        raise HeadError(400, "An absolute-form request target is for proxies: send the "
                             "path alone, with the name in Host")
    return method, target, version, close
