"""Reading one HTTP/1.x answer from a peer we do not control.

The CLI reads the daemon's answer (which may be another program's, if one took the
port), the webhook reads a target service's, and the bundled services read each
other's and moto's (http_client.py). All read by hand over a buffered socket file:
http.client parses headers through the email package, which cost the webhook a fifth
of its CPU per event, the CLI ~30 ms of imports, and each service ~1.5 MB of memory.
Stdlib only, so the CLI can import it without the model or the daemon's server.

Each caller decides what a failure means for it (the CLI: the daemon is unreachable;
the webhook: a 502 naming the service; a service: a 502 naming its peer), so there is
one error type and the message says what was wrong with the answer.
"""

from __future__ import annotations

from typing import BinaryIO, NamedTuple

from hippo_contract.http_head import MAX_HEADERS, MAX_LINE


class BadAnswer(Exception):
    """The peer answered, but not in HTTP we can read (or it closed mid-answer)."""


class Answer(NamedTuple):
    status: int
    body: bytes
    content_type: str
    keep_alive: bool
    """HTTP/1.1 without `Connection: close`, and the body's end known from its framing."""
    headers: dict[str, str]
    """Lower-case names; a repeated header's values joined with commas."""


def read_line(rfile: BinaryIO) -> bytes:
    """One line, b"" at the peer's close; a line past MAX_LINE is not a sane peer."""
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BadAnswer(f"a header line over {MAX_LINE // 1024} KiB")
    return line


def read_answer(rfile: BinaryIO, status_line: bytes, limit: int | None,
                head: bool = False) -> Answer:
    """The answer whose status line the caller has read (it alone knows what an empty
    one means: a stale pooled connection, or a daemon that closed without a word).
    `limit`: the largest body accepted, or None for any size. `head`: the answer to a
    HEAD request, whose Content-Length describes a body that is not sent."""
    line = status_line
    while True:
        version, _, rest = line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            raise BadAnswer(f"not an HTTP status line: {line[:60]!r}")
        status, headers = int(code), _headers(rfile)
        if status >= 200:
            break
        if status == 101:
            raise BadAnswer("answered 101 Switching Protocols")
        line = read_line(rfile)  # an interim 1xx answer: the real one follows
    ctype = headers.get("content-type", "")
    keep = version == b"HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    if status in (204, 304) or head:
        return Answer(status, b"", ctype, keep, headers)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Answer(status, _chunked(rfile, limit), ctype, keep, headers)
    length = headers.get("content-length")
    if length is None:  # the body runs to the close (RFC 9112, 6.3)
        body = rfile.read() if limit is None else rfile.read(limit + 1)
        _check_size(len(body), limit)
        return Answer(status, body, ctype, False, headers)
    if not (length.isascii() and length.isdigit()):
        raise BadAnswer(f"invalid Content-Length {length[:20]!r}")
    _check_size(int(length), limit)
    return Answer(status, _exact(rfile, int(length)), ctype, keep, headers)


def _headers(rfile: BinaryIO) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = read_line(rfile)
        if line in (b"\r\n", b"\n"):
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise BadAnswer("answer cut short in its headers" if not line
                            else f"malformed header line {line[:60]!r}")
        key, value = name.strip().lower(), value.strip()
        headers[key] = headers[key] + "," + value if key in headers else value
    raise BadAnswer(f"more than {MAX_HEADERS} header lines")


def _exact(rfile: BinaryIO, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) < size:
        raise BadAnswer(f"answer cut short in its body ({len(data)} of {size} bytes)")
    return data


def _chunked(rfile: BinaryIO, limit: int | None) -> bytes:
    parts, total = [], 0
    while True:
        size_text = read_line(rfile).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadAnswer(f"invalid chunk size {size_text[:20]!r}") from None
        if size <= 0:
            break
        total += size
        _check_size(total, limit)
        parts.append(_exact(rfile, size + 2)[:size])
    while read_line(rfile) not in (b"\r\n", b"\n", b""):
        pass  # trailers
    return b"".join(parts)


def _check_size(size: int, limit: int | None) -> None:
    if limit is not None and size > limit:
        raise BadAnswer(f"answer over {limit // 1024} KiB")
