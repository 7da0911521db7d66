"""The API's connections, held below the daemon's descriptor limit.

Every connection is one of the daemon's descriptors, and so are each service's pipes,
pidfd and log file. A local program that held connections open (opening each again when
the idle timeout closed it) ran the daemon out of them: `hd status` timed out ("If it is
hung, run `hd down --force`", which would have ended the stack), and a service that
crashed meanwhile could not be started again (`Too many open files`) and ended
`failed`. Connections are now capped at what the limit leaves once the services' share
and a reserve are set aside. At the cap, the connection that has waited longest for a
request (an idle keep-alive, a head never sent) is closed to make room; else the oldest
stream (an event stream, a followed log: a page reconnects by itself), so that `hd
status` and `hd down` always get in (streams up to the cap locked them out); when none
is either, the new one is answered 503 with a sentence and closed.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

RESERVE = 64
"""Descriptors kept for the daemon's own work: a spawn's pipes, the registry and log
writes, the watcher, a command's files."""
PER_SERVICE = 6
"""A service's share: stdout and stderr pipes, pidfd, log file, and a spawn's spare."""
MOST = 256
"""Connections at most, however high the limit: each is also a thread."""
FEWEST = 4
"""Connections at least, however low the limit: `hd` must still get in."""
SAY_EVERY_S = 60.0
"""How often the daemon's output says that connections are being turned away."""

REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")


def allowed(services: int, limit: int | None = None) -> int:
    """How many connections the descriptor limit (the soft one, as now) leaves room for."""
    if limit is None:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY:
        return MOST
    return max(FEWEST, min(MOST, (limit - RESERVE - PER_SERVICE * services) // 2))


class Connections:
    """The open connections, each with its handler once its thread has one."""

    def __init__(self, services: int, say: Callable[[str], None]) -> None:
        self.services = services
        self._say = say
        self._open: dict[socket.socket, Any] = {}
        self._lock = threading.Lock()
        self._said_at = float("-inf")

    def admit(self, sock: socket.socket) -> bool:
        """Room for `sock`: made by closing the longest-waiting idle connection if need
        be. False when every connection is busy: the caller refuses `sock`."""
        with self._lock:
            cap = allowed(self.services)
            if len(self._open) >= cap:
                victim = self._idlest()
                if victim is None:
                    self._tell(cap, "refused")
                    return False
                self._open.pop(victim, None)
                with contextlib.suppress(OSError):  # its thread's read ends; it closes it
                    victim.shutdown(socket.SHUT_RDWR)
                self._tell(cap, "closed the longest idle one (or the oldest stream)")
            self._open[sock] = None
            return True

    def attach(self, sock: socket.socket, handler: Any) -> None:
        with self._lock:
            if sock in self._open:
                self._open[sock] = handler

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)

    def _idlest(self) -> socket.socket | None:
        """The connection waiting for a request head the longest (earliest deadline);
        else the oldest stream."""
        waiting = [(h._reads.deadline, s) for s, h in self._open.items()
                   if h is not None and h._reads.deadline is not None]
        if waiting:
            return min(waiting, key=lambda w: w[0])[1]
        streams = [(h.streaming_since, s) for s, h in self._open.items()
                   if h is not None and getattr(h, "streaming_since", None) is not None]
        return min(streams, key=lambda w: w[0])[1] if streams else None

    def _tell(self, cap: int, what: str) -> None:
        now = time.monotonic()
        if now - self._said_at >= SAY_EVERY_S:
            self._said_at = now
            self._say(f"hippodrome | the API is at its {cap} connections (the rest of the "
                      f"descriptor limit, ulimit -n, is kept for the services): {what}; a "
                      "program holding many connections open is the usual cause")


def refuse(sock: socket.socket, cap: int) -> None:
    """A 503 with a sentence, best effort (the client may not read), then closed."""
    body = (b'{"error": "the daemon is at its %d API connections, every one busy with a '
            b'request, the rest of its descriptors kept for the services; try again in a '
            b'moment, or raise ulimit -n before hd up", "type": "TooManyConnections"}' % cap)
    with contextlib.suppress(OSError):
        sock.settimeout(1.0)
        sock.sendall(REFUSAL % (len(body), body))
