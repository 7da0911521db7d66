"""One log record type, from the pipe readers to the printer, the files and the page.

Throughput matters (a chatty service must never be slowed down by us), so records are
made per line but handled per chunk: the run's file gets the child's bytes exactly as
they came, in one write per chunk; the ring buffer takes a whole chunk of records at
once; the printer formats a chunk into one write. Undecodable bytes and very long
lines survive: bytes are kept as bytes, and decoded (with replacement) only for display.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
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


class LogSink(Protocol):
    def write_chunk(self, service: str, raw: bytes, records: list[LogRecord]) -> None: ...


def _pieces(line: bytes) -> list[bytes]:
    if len(line) <= MAX_LINE:
        return [line]
    return [line[i:i + MAX_LINE] for i in range(0, len(line), MAX_LINE)]


class LineSplitter:
    """Turns a byte stream into whole lines, holding a partial line between chunks."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        if len(data) > MAX_LINE and any(len(line) > MAX_LINE for line in lines):
            lines = [piece for line in lines for piece in _pieces(line)]
        return lines

    def flush(self) -> list[bytes]:
        rest, self._partial = self._partial, b""
        return [rest] if rest else []


class RunFiles:
    """`.logs/<stamp>/<service>.log`, the `latest` link, and pruning of old runs."""

    STAMP = "%Y%m%d-%H%M%S"
    _RUN = re.compile(r"^\d{8}-\d{6}(-\d+)?$")

    def __init__(self, logs_root: Path, keep: int, now: float | None = None) -> None:
        logs_root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime(self.STAMP, time.localtime(now))
        run = logs_root / stamp
        n = 1
        while True:
            try:
                run.mkdir()
                break
            except FileExistsError:
                n += 1
                run = logs_root / f"{stamp}-{n}"
        self.dir = run
        self._files: dict[str, int] = {}
        self._link_latest(logs_root, run)
        self.prune(logs_root, keep)

    @staticmethod
    def _link_latest(root: Path, run: Path) -> None:
        tmp = root / f".latest-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(run.name)
        os.replace(tmp, root / "latest")

    @classmethod
    def prune(cls, root: Path, keep: int) -> list[Path]:
        runs = sorted(p for p in root.iterdir() if p.is_dir() and cls._RUN.match(p.name)
                      and not p.is_symlink())
        removed = []
        for old in runs[: max(0, len(runs) - keep)]:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
            removed.append(old)
        return removed

    def path(self, service: str) -> Path:
        return self.dir / f"{service}.log"

    def _fd(self, service: str) -> int:
        fd = self._files.get(service)
        if fd is None:
            fd = os.open(self.path(service), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._files[service] = fd
        return fd

    def write_chunk(self, service: str, raw: bytes, records: list[LogRecord]) -> None:
        if not raw:
            raw = b"".join(b"--- hippodrome: " + r.line + b"\n" for r in records)
        fd = self._fd(service)
        view = memoryview(raw)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()


class LogHub:
    """Fans each chunk out to the sinks and keeps a bounded buffer per service.

    Called only from the supervisor's event loop; readers in other threads (the HTTP
    API) use `tail` and `since`, which copy under the GIL.
    """

    def __init__(self, buffer_lines: int, sinks: Iterable[LogSink] = ()) -> None:
        self._buffer_lines = buffer_lines
        self._sinks = list(sinks)
        self._buffers: dict[str, deque[LogRecord]] = {}
        self._seq: dict[str, int] = {}
        self._watchers: dict[str, Callable[[str], None]] = {}
        self._listeners: list[Callable[[str], None]] = []
        self._cond = threading.Condition()

    def add_sink(self, sink: LogSink) -> None:
        self._sinks.append(sink)

    def on_lines(self, listener: Callable[[str], None]) -> None:
        """`listener(service)` after each chunk (the page's live updates)."""
        self._listeners.append(listener)

    def watch(self, service: str, on_line: Callable[[str], None] | None) -> None:
        """Route decoded lines of one service to a callback (log readiness), or stop."""
        if on_line is None:
            self._watchers.pop(service, None)
        else:
            self._watchers[service] = on_line

    def _buffer(self, service: str) -> deque[LogRecord]:
        buf = self._buffers.get(service)
        if buf is None:
            buf = self._buffers[service] = deque(maxlen=self._buffer_lines)
            self._seq[service] = 0
        return buf

    def publish(self, service: str, raw: bytes, lines: list[bytes]) -> None:
        buf = self._buffer(service)
        seq = self._seq[service]
        now = time.time()
        new = tuple.__new__
        records = [new(LogRecord, (service, seq + i + 1, now, ln, False))
                   for i, ln in enumerate(lines)]
        self._seq[service] = seq + len(records)
        buf.extend(records)
        for sink in self._sinks:
            sink.write_chunk(service, raw, records)
        watcher = self._watchers.get(service)
        if watcher is not None:
            for rec in records:
                watcher(rec.text)
        self._notify(service)

    def system(self, service: str, text: str) -> None:
        buf = self._buffer(service)
        self._seq[service] += 1
        rec = LogRecord(service, self._seq[service], time.time(), text.encode(), True)
        buf.append(rec)
        for sink in self._sinks:
            sink.write_chunk(service, b"", [rec])
        self._notify(service)

    def _notify(self, service: str) -> None:
        for listener in self._listeners:
            listener(service)
        with self._cond:
            self._cond.notify_all()

    def tail(self, service: str, lines: int) -> list[LogRecord]:
        buf = self._buffers.get(service)
        if buf is None or lines <= 0:
            return []
        items = list(buf)
        return items[-lines:]

    def since(self, service: str, seq: int, limit: int = 1000) -> list[LogRecord]:
        items = list(self._buffers.get(service, ()))
        return [r for r in items if r.seq > seq][:limit]

    def last_seq(self, service: str) -> int:
        return self._seq.get(service, 0)

    def wait_for_lines(self, timeout: float) -> None:
        """Block a reader thread until any new record arrives, or the timeout passes."""
        with self._cond:
            self._cond.wait(timeout)
