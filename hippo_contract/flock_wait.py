"""Waiting for an exclusive flock for a bounded time, and saying once that we wait.

flock itself either fails at once (LOCK_NB) or waits for ever; every lock of a project
(the registry's, the lifecycle's, the seed's) needs neither: a holder stopped with
Ctrl+Z or SIGSTOP would hang every later command without a word. Standard library
only, so the platform's seed program uses it as `hd` does.
"""

from __future__ import annotations

import fcntl
import math
import time
from collections.abc import Callable


def flock_within(fd: int, wait: float, on_wait: Callable[[], None] = lambda: None,
                 poll: float = 0.005) -> bool:
    """An exclusive flock on `fd` within `wait` seconds (`math.inf`: however long it
    takes); False if it was still held then. `on_wait` runs once, when the first try
    finds the lock held, so the caller can say who it waits for."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        on_wait()
    if math.isinf(wait):
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
