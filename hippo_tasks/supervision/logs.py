"""One log record type, from the pipe readers to the printer, the files and the page.

Throughput matters (a chatty service must never be slowed down by us), so lines are
handled per chunk (one pipe read): the run's file gets the child's bytes exactly as
they came, in one write per chunk; the ring buffer keeps the chunk packed and makes
LogRecords only when someone reads them; the printer formats a chunk into one write.
Undecodable bytes and very long lines survive: bytes are kept as bytes, and decoded
(with replacement) only for display.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol

MAX_LINE = 64 * 1024
"""A line longer than this is passed on in pieces (the file still gets it whole)."""


class LogRecord(NamedTuple):
    service: str
    seq: int
    ts: float
    line: bytes
    system: bool = False
    """True for Hippodrome's own notes about the service (state changes, restarts)."""

    @property
    def text(self) -> str:
        return self.line.decode("utf-8", "replace")

    def as_json(self) -> dict[str, object]:
        return {"seq": self.seq, "ts": round(self.ts, 3), "line": self.text,
                "system": self.system}


class LogChunk(NamedTuple):
    """The lines of one read from a service, packed; `records()` unpacks them."""

    service: str
    first_seq: int
    ts: float
    lines: list[bytes]
    system: bool = False

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.lines) - 1

    def records(self, start: int = 0) -> list[LogRecord]:
        new = tuple.__new__
        svc, seq, ts, system = self.service, self.first_seq, self.ts, self.system
        return [new(LogRecord, (svc, seq + i, ts, ln, system))
                for i, ln in enumerate(self.lines[start:], start)]


class LogSink(Protocol):
    def write_chunk(self, raw: bytes, chunk: LogChunk) -> None: ...


def utf8_edge(data: bytes, end: int) -> int:
    """`end`, or the start of the UTF-8 character that `end` would cut (at most 3 bytes
    back): a 64 KiB piece boundary or a prompt passed on after 0.5 s fell inside `€`,
    and both halves were shown as U+FFFD. Bytes that are no UTF-8 are cut where asked."""
    for back in (1, 2, 3):
        if end - back < 0:
            return end
        byte = data[end - back]
        if byte & 0xC0 == 0x80:  # a continuation byte: its lead is further back
            continue
        if 0xC2 <= byte <= 0xF4:  # a lead byte: does its character run past `end`?
            length = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return end - back if length > back else end
        return end
    return end


def pieces(line: bytes) -> list[bytes]:
    """A line as the terminal and the API get it: in pieces of at most MAX_LINE bytes
    when longer, each ending on a whole character."""
    if len(line) <= MAX_LINE:
        return [line]
    out = []
    start = 0
    while len(line) - start > MAX_LINE:
        cut = utf8_edge(line, start + MAX_LINE)
        out.append(line[start:cut])
        start = cut
    out.append(line[start:])
    return out


BUFFER_BYTES = 16 * 1024 * 1024
"""Per service, beside `log_buffer_lines`: lines of 64 KiB held 5,000 deep kept a daemon
at 330 MB after a service printed big JSON for ten seconds. 16 MiB holds the default
5,000 lines of up to 3 KiB each, far more than logs usually are."""


NONE: frozenset[int] = frozenset()


class LineSplitter:
    """Turns a byte stream into whole lines, holding a partial line between chunks."""

    def __init__(self) -> None:
        self._partial = b""
        self._cut = False
        """A line over MAX_LINE was passed on unfinished: a line break that comes first
        in the next read ends that line, and is not an empty line of its own."""
        self._passed = b""
        """What pass_on_partial passed on of the line under way, for `completed`."""
        self.completed: bytes | None = None
        """After a feed: the whole line (as the log file keeps it) that this feed ended,
        when pieces of it were passed on before. Log readiness matches it: a line
        written in two parts 0.5 s apart was seen only as its pieces (adv24 a/3)."""
        self.continued: frozenset[int] = NONE
        """After a feed: which of the lines it returned are cut pieces of a line over
        MAX_LINE, the rest of the line after them. Log readiness matches across such a
        cut only; told by its length alone, a whole line of 65,533 bytes was joined to
        the next line, and READ at its end and DY on the next made a service ready
        (adv48 A/2)."""

    def feed(self, data: bytes) -> list[bytes]:
        if self._passed or self.completed is not None:  # rare: keep the hot path bare
            return self._feed_after_pieces(data)
        return self._split(data)

    def _feed_after_pieces(self, data: bytes) -> list[bytes]:
        """feed, with `completed` kept: the line whose pieces were passed on ends here."""
        self.completed = None
        passed, self._passed = self._passed, b""
        if not passed:
            return self._split(data)
        ends_at_once = not self._partial and self._cut and data.startswith((b"\n", b"\r\n"))
        lines = self._split(data)
        if ends_at_once:  # its line break came alone: the line is what was passed on
            self.completed = passed
        elif lines:
            self.completed = passed + lines[0]
        else:
            self._passed = passed  # still under way
        return lines

    def _split(self, data: bytes) -> list[bytes]:
        self.continued = NONE
        if self._partial:
            data = self._partial + data
        elif self._cut and data.startswith(b"\n"):
            data = data[1:]
        elif self._cut and data.startswith(b"\r\n"):  # a prompt answered on a terminal
            data = data[2:]
        self._cut = False
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:
            edge = utf8_edge(self._partial, len(self._partial))  # a character's start
            lines.append(self._partial[:edge])                    # waits for its end
            self._partial = self._partial[edge:]
            self._cut = True
            self.continued = frozenset((len(lines) - 1,))
        if len(data) > MAX_LINE and any(len(line) > MAX_LINE for line in lines):
            out: list[bytes] = []
            continued: set[int] = set()
            for at, line in enumerate(lines):
                parts = pieces(line)
                continued.update(range(len(out), len(out) + len(parts) - 1))
                out += parts
                if at in self.continued:  # the line held goes on in the next read
                    continued.add(len(out) - 1)
            lines, self.continued = out, frozenset(continued)
        return lines

    def flush(self) -> list[bytes]:
        rest, self._partial = self._partial, b""
        return [rest] if rest else []

    @property
    def waiting(self) -> bool:
        """Part of a line is held, waiting for its line break."""
        return bool(self._partial)

    @property
    def redrawn(self) -> bool:
        """The part held redraws itself (a `\r` in it: a progress bar)."""
        return b"\r" in self._partial

    def pass_on_partial(self) -> list[bytes]:
        """The part of a line held so far, passed on as a line of its own: a prompt
        (`password: `), a progress bar or a `printf` with no line break sat in the
        splitter, so the dashboard, `hd logs --timestamps` and MCP never showed it. The
        rest, when it comes, is a line of its own; a line break that comes first only
        ends this one (as after a cut long line) and is not an empty line."""
        held = self._partial
        edge = utf8_edge(held, len(held))  # the start of a character waits for its end
        self._partial = held[edge:]
        if edge:
            self._cut = True
            if len(self._passed) + edge <= MAX_LINE:
                self._passed += held[:edge]
            return [held[:edge]]
        return []


class LogHub:
    """Fans each chunk out to the sinks and keeps a bounded buffer per service.

    Called only from the supervisor's event loop; readers in other threads (the HTTP
    API) use `tail` and `since`, which copy the deque under the GIL before reading.
    """

    def __init__(self, buffer_lines: int, sinks: Iterable[LogSink] = (),
                 buffer_bytes: int = BUFFER_BYTES) -> None:
        self._buffer_lines = buffer_lines
        self._buffer_bytes = buffer_bytes
        self._sizes: dict[str, int] = {}
        self._chunk_sizes: dict[str, deque[int]] = {}
        """Bytes of each buffered chunk, beside it: a whole chunk leaves without a recount."""
        self._sinks = list(sinks)
        self._buffers: dict[str, deque[LogChunk]] = {}
        self._counts: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self._watchers: dict[str, Callable[[str, bool], None]] = {}
        self._cond = threading.Condition()

    def add_sink(self, sink: LogSink) -> None:
        self._sinks.append(sink)

    def watch(self, service: str, on_line: Callable[[str, bool], None] | None) -> None:
        """Route decoded lines of one service to a callback (log readiness), or stop;
        with each, whether it is a cut piece of a longer line (LineSplitter.continued)."""
        if on_line is None:
            self._watchers.pop(service, None)
        else:
            self._watchers[service] = on_line

    def _append(self, chunk: LogChunk) -> None:
        service = chunk.service
        buf = self._buffers.get(service)
        if buf is None:
            buf = self._buffers[service] = deque()
            self._counts[service] = 0
            self._sizes[service] = 0
            self._chunk_sizes[service] = deque()
        sizes = self._chunk_sizes[service]
        buf.append(chunk)
        sizes.append(sum(map(len, chunk.lines)))
        count = self._counts[service] + len(chunk.lines)
        size = self._sizes[service] + sizes[-1]
        while count > self._buffer_lines or size > self._buffer_bytes:
            oldest = buf[0]
            if len(buf) > 1 and (count - len(oldest.lines) >= self._buffer_lines
                                 or size - sizes[0] >= self._buffer_bytes):
                buf.popleft()  # the whole chunk goes: its size is known
                count -= len(oldest.lines)
                size -= sizes.popleft()
                continue
            drop = min(max(0, count - self._buffer_lines), len(oldest.lines))
            freed = sum(map(len, oldest.lines[:drop]))
            keep_one = 1 if len(buf) == 1 else 0  # the newest line stays, however long
            while size - freed > self._buffer_bytes and drop < len(oldest.lines) - keep_one:
                freed += len(oldest.lines[drop])
                drop += 1
            if drop == 0:
                break
            if drop == len(oldest.lines):
                buf.popleft()
                sizes.popleft()
            else:
                buf[0] = oldest._replace(first_seq=oldest.first_seq + drop,
                                         lines=oldest.lines[drop:])
                sizes[0] -= freed
            count -= drop
            size -= freed
        self._counts[service] = count
        self._sizes[service] = size

    def publish(self, service: str, raw: bytes, lines: list[bytes],
                completed: bytes | None = None, continued: frozenset[int] = NONE) -> None:
        """`completed`: a line passed on in pieces, now whole (LineSplitter.completed),
        for the readiness watcher only; the terminal and the API keep the pieces.
        `continued`: which of `lines` the next piece continues (LineSplitter.continued)."""
        if not lines and not raw:
            return
        first = self._seq.get(service, 0) + 1
        chunk = LogChunk(service, first, time.time(), lines)
        self._seq[service] = first + len(lines) - 1
        if lines:
            self._append(chunk)
        for sink in self._sinks:
            sink.write_chunk(raw, chunk)
        watcher = self._watchers.get(service)
        if watcher is not None:
            if completed is not None:
                watcher(completed.decode("utf-8", "replace"), False)
            for at, line in enumerate(lines):
                watcher(line.decode("utf-8", "replace"), at in continued)
        self._notify()

    def system(self, service: str, text: str) -> None:
        first = self._seq.get(service, 0) + 1
        chunk = LogChunk(service, first, time.time(), [text.encode()], True)
        self._seq[service] = first
        self._append(chunk)
        for sink in self._sinks:
            sink.write_chunk(b"", chunk)
        self._notify()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def tail(self, service: str, lines: int) -> list[LogRecord]:
        if lines <= 0:
            return []
        chunks = list(self._buffers.get(service, ()))
        out: list[LogRecord] = []
        for chunk in reversed(chunks):
            need = lines - len(out)
            start = max(0, len(chunk.lines) - need)
            out[:0] = chunk.records(start)
            if len(out) >= lines:
                break
        return out

    def own_lines(self, service: str, count: int) -> list[str]:
        """The service's own last lines, without the supervisor's notes: what a failure
        report or `hd why` quotes."""
        return [r.text for r in self.tail(service, count * 2) if not r.system][-count:]

    def since(self, service: str, seq: int, limit: int = 1000) -> list[LogRecord]:
        out: list[LogRecord] = []
        for chunk in list(self._buffers.get(service, ())):
            if chunk.last_seq <= seq:
                continue
            out.extend(chunk.records(max(0, seq - chunk.first_seq + 1)))
            if len(out) >= limit:
                break
        return out[:limit]

    def chunks(self, service: str) -> list[LogChunk]:
        """The buffer as it is now, oldest first (a copy: safe from another thread). A
        filtered scan reads lines from here and builds a record for a match only."""
        return list(self._buffers.get(service, ()))

    def last_seq(self, service: str) -> int:
        return self._seq.get(service, 0)

    def wait_for_lines(self, timeout: float) -> None:
        """Block a reader thread until any new record arrives, or the timeout passes."""
        with self._cond:
            self._cond.wait(timeout)
