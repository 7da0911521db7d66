"""The terminal view of the logs: `name | line`, a stable colour per service.

A terminal can be slow or paused (Ctrl+S, a scrolled tmux pane); the printer writes
from its own thread through a bounded queue, and when the terminal falls behind it
drops lines from the *terminal only* and says how many. The log files and the page
get every line regardless.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import zlib
from typing import BinaryIO

from hippo_tasks.supervision.logs import LogChunk

_PALETTE = ("\x1b[36m", "\x1b[32m", "\x1b[33m", "\x1b[35m", "\x1b[34m", "\x1b[96m",
            "\x1b[92m", "\x1b[93m", "\x1b[95m", "\x1b[94m")
_RESET = b"\x1b[0m"
_DIM = b"\x1b[2m"


def use_colour(stream: BinaryIO | None = None) -> bool:
    """Colour unless NO_COLOR is set (any value) or the output is not a terminal."""
    if "NO_COLOR" in os.environ:
        return False
    target = stream if stream is not None else sys.stdout.buffer
    try:
        return os.isatty(target.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def colour_for(service: str) -> str:
    """The same colour for a service on every run (crc32, not the salted hash())."""
    return _PALETTE[zlib.crc32(service.encode()) % len(_PALETTE)]


class TerminalPrinter:
    def __init__(self, out: BinaryIO, colour: bool, width: int = 0, max_chunks: int = 2000) -> None:
        self._out = out
        self._colour = colour
        self._width = width
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_chunks)
        self._dropped = 0
        self._prefixes: dict[str, bytes] = {}
        self._thread = threading.Thread(target=self._run, name="printer", daemon=True)
        self._thread.start()

    def set_width(self, width: int) -> None:
        self._width = width
        self._prefixes.clear()

    def _prefix(self, service: str) -> bytes:
        pre = self._prefixes.get(service)
        if pre is None:
            label = service.ljust(self._width).encode() + b" | "
            pre = (colour_for(service).encode() + label + _RESET) if self._colour else label
            self._prefixes[service] = pre
        return pre

    def write_chunk(self, raw: bytes, chunk: LogChunk) -> None:
        pre = self._prefix(chunk.service)
        if chunk.system:
            dim, reset = (_DIM, _RESET) if self._colour else (b"", b"")
            body = b"".join([pre + dim + b"--- " + ln + reset + b"\n" for ln in chunk.lines])
        else:
            body = b"".join([pre + ln + b"\n" for ln in chunk.lines])
        self.put(body)

    def note(self, text: str) -> None:
        """A line of Hippodrome's own (progress, the dashboard URL)."""
        self.put(text.encode() + b"\n")

    def put(self, body: bytes) -> None:
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self._dropped += body.count(b"\n")

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            if body is None:
                return
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                body = (f"hippodrome | terminal fell behind: {dropped} lines not shown here "
                        "(they are in .logs/latest/)\n").encode() + body
            try:
                self._out.write(body)
                self._out.flush()
            except (OSError, ValueError):
                return

    def close(self, timeout: float = 2.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
