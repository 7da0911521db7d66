"""Whole lines to stdout, flushed, one writer at a time.

The orchestrator reads each service's stdout through a pipe, where Python buffers by
block; without the flush a request's line would show up minutes late, and without the
lock two handler threads could interleave halves of lines.
"""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()


def log_line(text: str) -> None:
    with _lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def log_error(text: str) -> None:
    with _lock:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
