"""The terminal view of the logs: `name | line`, a stable colour per service.

A terminal can be slow or paused (Ctrl+S, a scrolled tmux pane); the printer writes
from its own thread through a bounded queue, and when the terminal falls behind it
drops lines from the *terminal only* and says how many. The log files and the page
get every line regardless.

What the terminal shows can be narrowed (`hd up --quiet`, `--show a,b`); the log
files and the page still get everything. The dashboard line is not lost to scrolling:
once the output has moved it off screen and then paused, it is printed again, and
SIGUSR1 (or Ctrl+T, SIGINFO, where the terminal has it) prints it at once.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from typing import BinaryIO

from hippo_tasks.supervision.logs import LogChunk
from hippo_tasks.terminal_text import (
    colour_wanted,
    line_for_terminal,
    line_without_colour,
    to_devnull,
)

_PALETTE = ("\x1b[36m", "\x1b[32m", "\x1b[33m", "\x1b[35m", "\x1b[34m", "\x1b[96m",
            "\x1b[92m", "\x1b[93m", "\x1b[95m", "\x1b[94m", "\x1b[38;5;208m", "\x1b[38;5;141m",
            "\x1b[38;5;37m", "\x1b[38;5;203m", "\x1b[38;5;149m", "\x1b[38;5;175m")
"""16 colours that tell apart on dark and light terminals: 10 of the basic 16 (no red,
no white, no grey: red is for errors) and 6 from the 256-colour cube."""
_RESET = b"\x1b[0m"
_DIM = b"\x1b[2m"


def _screen_rows() -> int:
    """How many lines scroll the dashboard line out of sight (the terminal's height)."""
    return max(shutil.get_terminal_size((80, 40)).lines - 2, 5)


def use_colour(stream: BinaryIO | None = None) -> bool:
    """terminal_text.colour_wanted, for the stream the printer writes."""
    target = stream if stream is not None else sys.stdout.buffer
    try:
        return colour_wanted(target.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def colour_for(service: str) -> str:
    """The same colour for a service on every run (crc32, not the salted hash())."""
    # a log file's name not in UTF-8 (`caf\xe9.log` in .logs/latest): a traceback that
    # stopped `hd logs` for every service (adv31 r/8)
    return _PALETTE[zlib.crc32(service.encode("utf-8", "surrogateescape")) % len(_PALETTE)]


def colour_map(names: Iterable[str]) -> dict[str, str]:
    """A distinct colour per service for stacks of up to 16, the same on every run of
    the same stack: each name takes its crc32 colour unless an earlier name (in sorted
    order) has it, then the next free one."""
    taken: dict[str, str] = {}
    free = list(_PALETTE)
    for name in sorted(set(names)):
        if not free:
            free = list(_PALETTE)  # past 16, colours repeat
        want = _PALETTE.index(colour_for(name))
        for step in range(len(_PALETTE)):
            colour = _PALETTE[(want + step) % len(_PALETTE)]
            if colour in free:
                break
        free.remove(colour)
        taken[name] = colour
    return taken


ALERT = re.compile(rb"(?i)\b(warn|warning|error|err|errors|critical|crit|fatal|exception|"
                   rb"traceback|panic|failed|failure)\b")
"""A line `--quiet` still shows: it looks like a warning or an error."""


QUEUED_BYTES = 32 * 1024 * 1024
"""What a paused terminal may hold back, beside the count of chunks: 2,000 chunks of up
to 256 KiB each took a foreground `hd up` to 837 MB while its terminal was stopped."""


class TerminalPrinter:
    def __init__(self, out: BinaryIO, colour: bool, width: int = 0, max_chunks: int = 2000,
                 *, names: Iterable[str] = (), quiet: bool = False,
                 show: Iterable[str] | None = None, idle_repeat: float = 2.0) -> None:
        """`quiet`: service lines only when they look like warnings or errors; `show`:
        only these services' lines. Hippodrome's own lines are always printed."""
        self._out = out
        self._colour = colour
        self._width = width
        self._colours = colour_map(names)
        self._quiet = quiet
        self._show = frozenset(show) if show is not None else None
        self._queue: queue.Queue[tuple[bytes, bool] | None] = queue.Queue()
        self._max_chunks = max_chunks
        self._queued_chunks = 0
        """Services' chunks queued (Hippodrome's own lines are never held to the caps)."""
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._dropped = 0
        self._prefixes: dict[str, bytes] = {}
        self._dashboard: bytes | None = None
        self._since_dashboard = 0
        """Lines printed since the dashboard line was last shown."""
        self._idle_repeat = idle_repeat
        self._want_dashboard = False
        self.on_reader_gone: Callable[[], None] = lambda: None
        """Called (from the printer's thread) when the reader of a pipe went away."""
        self._thread = threading.Thread(target=self._run, name="printer", daemon=True)
        self._thread.start()

    def set_width(self, width: int) -> None:
        self._width = width
        self._prefixes.clear()

    def _prefix(self, service: str) -> bytes:
        pre = self._prefixes.get(service)
        if pre is None:
            label = service.ljust(self._width).encode() + b" | "
            colour = self._colours.get(service) or colour_for(service)
            pre = (colour.encode() + label + _RESET) if self._colour else label
            self._prefixes[service] = pre
        return pre

    def write_chunk(self, raw: bytes, chunk: LogChunk) -> None:
        if self._show is not None and chunk.service not in self._show:
            return
        pre = self._prefix(chunk.service)
        shown = line_for_terminal if self._colour else line_without_colour
        if chunk.system:
            dim, reset = (_DIM, _RESET) if self._colour else (b"", b"")
            body = b"".join([pre + dim + b"--- " + shown(ln) + reset + b"\n"
                             for ln in chunk.lines])
        elif self._quiet:
            body = b"".join([pre + shown(ln) + b"\n" for ln in chunk.lines
                             if ALERT.search(ln)])
        else:
            body = b"".join([pre + shown(ln) + b"\n" for ln in chunk.lines])
        if body:
            self.put(body, own=chunk.system)

    def show_dashboard(self) -> None:
        """Print the dashboard line again soon (safe from a signal handler: it only
        sets a flag, which the printer's thread reads)."""
        self._want_dashboard = True

    def answer_signals(self) -> None:
        """SIGUSR1 (`kill -USR1 <pid>`), and Ctrl+T where the terminal sends SIGINFO
        (macOS, BSD), print the dashboard line again. Main thread only."""
        import signal

        for name in ("SIGUSR1", "SIGINFO"):
            sig = getattr(signal, name, None)
            if sig is not None:
                signal.signal(sig, lambda _sig, _frame: self.show_dashboard())

    def note(self, text: str) -> None:
        """A line of Hippodrome's own (progress, the dashboard URL)."""
        if "| dashboard: " in text:
            self._dashboard = text.encode() + b"\n"
        self.put(text.encode() + b"\n", own=True)

    def put(self, body: bytes, own: bool = False) -> None:
        """Queued, or, a service's, dropped (and counted) past the caps (max_chunks
        chunks, QUEUED_BYTES). Hippodrome's own lines and a service's state lines are
        always queued: held to the caps, the shutdown's lines were dropped behind a
        service's 10 MB of output (adv36 c/1)."""
        if not own:
            with self._bytes_lock:
                if self._queued_bytes + len(body) > QUEUED_BYTES or \
                        self._queued_chunks >= self._max_chunks:
                    self._dropped += body.count(b"\n")
                    return
                self._queued_bytes += len(body)
                self._queued_chunks += 1
        self._queue.put_nowait((body, own))

    def hurry(self) -> None:
        """The shutdown began: what services printed and the terminal has not shown yet
        is dropped from the terminal (counted, and said), so the shutdown's own lines
        come next. Behind a slow terminal (a pty showing 10 MB), Ctrl+C exited with the
        backlog still being written, and "shutting down", the stop lines and the note
        of dropped lines never showed (adv36 c/1)."""
        kept: list[tuple[bytes, bool] | None] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None or item[1]:
                kept.append(item)
                continue
            with self._bytes_lock:
                self._queued_bytes -= len(item[0])
                self._queued_chunks -= 1
            self._dropped += item[0].count(b"\n")
        for item in kept:
            self._queue.put_nowait(item)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.25)
            except queue.Empty:
                pending = self._pending_dashboard(idle=True)
                if pending is None:
                    continue
                body = pending
            else:
                if item is None:
                    return
                body, own = item
                if not own:
                    with self._bytes_lock:
                        self._queued_bytes -= len(body)
                        self._queued_chunks -= 1
                self._idle_since = time.monotonic()
                if self._dashboard is not None and body == self._dashboard:
                    self._since_dashboard = -body.count(b"\n")
                body = (self._pending_dashboard(idle=False) or b"") + body
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                body = (f"hippodrome | terminal fell behind: {dropped} lines not shown here "
                        "(they are in .logs/latest/)\n").encode() + body
            self._since_dashboard += body.count(b"\n")
            try:
                self._out.write(body)
                self._out.flush()
            except BrokenPipeError:
                to_devnull(self._out)  # what is still buffered, and later prints, go nowhere
                self.on_reader_gone()
                return
            except OSError as exc:  # `hd up > file` on a disk that filled: cut mid-line,
                to_devnull(self._out)  # and nothing was said anywhere (q/12)
                with contextlib.suppress(OSError):
                    os.write(2, (f"hippodrome: the output could not be written "
                                 f"({exc.strerror or exc}): the stack goes on, and its lines "
                                 "are in .logs/latest/ only (`hd logs`)\n").encode())
                continue
            except ValueError:
                return

    _idle_since = 0.0

    def _pending_dashboard(self, idle: bool) -> bytes | None:
        """The dashboard line, when asked for (signal), or when the output has pushed it
        off screen and has been quiet for `idle_repeat` seconds."""
        if self._dashboard is None:
            return None
        if self._want_dashboard:
            self._want_dashboard = False
        elif not (idle and self._since_dashboard >= _screen_rows()
                  and time.monotonic() - self._idle_since >= self._idle_repeat):
            return None
        self._since_dashboard = -1
        dim, reset = (_DIM, _RESET) if self._colour else (b"", b"")
        return dim + self._dashboard.rstrip(b"\n") + reset + b"\n"

    def close(self, timeout: float = 2.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
