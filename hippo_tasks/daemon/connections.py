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
status` and `hd down` always get in (streams up to the cap locked them out). When every
connection is busy with a request (an agent's long `wait_ready` calls, waiting
restarts), a few more are let in for the requests that must never be locked out
(CONTROL: status, health, shutdown) and answered 503 for anything else: `hd down` got a
503 and the stack kept running.
"""

from __future__ import annotations

import contextlib
import json
import resource
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

Admission = Literal["yes", "control", "no"]

RESERVE = 64
"""Descriptors kept for the daemon's own work: a spawn's pipes, the registry and log
writes, the watcher, a command's files."""
PER_SERVICE = 6
"""A service's share: stdout and stderr pipes, pidfd, log file, and a spawn's spare."""
MOST = 256
"""Connections at most, however high the limit: each is also a thread."""
FEWEST = 4
"""Connections at least, however low the limit: `hd` must still get in."""
CONTROL_EXTRA = 4
"""Connections past the cap for CONTROL requests only, when every other one is busy."""
CONTROL = frozenset({("GET", "/api/status"), ("GET", "/healthz"), ("HEAD", "/healthz"),
                     ("POST", "/api/shutdown")})
"""What `hd status` and `hd down` ask: served on a CONTROL_EXTRA connection."""
SAY_EVERY_S = 60.0
"""How often the daemon's output says that connections are being turned away."""

REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")


def short_of_descriptors(services: int) -> str | None:
    """Why the open-files limit `up` runs under (the daemon's and its services') is too
    low for `services`, or None: under `ulimit -n 16` a stack came up and every restart
    then failed with `Too many open files`, the registry unwritable (adv52 J/4)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    needed = RESERVE + PER_SERVICE * services + 2 * (FEWEST + CONTROL_EXTRA)
    if limit == resource.RLIM_INFINITY or limit >= needed:
        return None
    return (f"the open-files limit (ulimit -n {limit}) is below the {needed} descriptors "
            f"this stack of {services} service(s) needs (each one's pipes, log file and "
            "pidfd, the daemon's own, a few API connections): restarts and the registry's "
            "writes may fail with `Too many open files`; raise it (`ulimit -n 4096`) "
            "before `hd up`")


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
        self._control: set[socket.socket] = set()
        self._busy: set[socket.socket] = set()
        """Connections whose request head was read whole: never closed to make room (its
        request was acted on, and its answer lost: adv51 H/4)."""
        self._lock = threading.Lock()
        self._said_at = float("-inf")

    def admit(self, sock: socket.socket) -> Admission:
        """Room for `sock`: made by closing the longest-waiting idle connection if need
        be. "control" when every connection is busy but a CONTROL_EXTRA one is free:
        `sock` may ask only for CONTROL; "no" when those are taken too: the caller
        refuses `sock`."""
        with self._lock:
            cap = allowed(self.services)
            if len(self._open) - len(self._control) >= cap:
                victim = self._idlest()
                if victim is None:
                    idle = self._idle_control()
                    if idle is not None:  # held open, asking nothing: its place is taken
                        self._drop(idle)
                    if len(self._control) < CONTROL_EXTRA:
                        self._control.add(sock)
                        self._open[sock] = None
                        self._tell(cap, "let in for status and shutdown only")
                        return "control"
                    self._tell(cap, "refused")
                    return "no"
                self._drop(victim)
                self._tell(cap, "closed the longest idle one (or the oldest stream)")
            self._open[sock] = None
            return "yes"

    def answering(self) -> int:
        """Connections busy with a request (not waiting for one, not streaming)."""
        with self._lock:
            return sum(1 for h in self._open.values()
                       if h is None or (h._reads.deadline is None
                                        and getattr(h, "streaming_since", None) is None))

    def control_only(self, sock: socket.socket) -> bool:
        with self._lock:
            return sock in self._control

    def attach(self, sock: socket.socket, handler: Any) -> None:
        with self._lock:
            if sock in self._open:
                self._open[sock] = handler

    def idle(self, sock: socket.socket) -> None:
        """Waiting for a request head from now on: may be closed to make room."""
        with self._lock:
            self._busy.discard(sock)

    def busy(self, sock: socket.socket) -> bool:
        """A whole request head was read: False if the connection was closed to make
        room meanwhile (its request is then answered `made_room`'s 503 and not acted
        on), else it is never closed so until `idle`."""
        with self._lock:
            if sock not in self._open:
                return False
            self._busy.add(sock)
            return True

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)
            self._control.discard(sock)
            self._busy.discard(sock)

    def _drop(self, sock: socket.socket) -> None:
        self._open.pop(sock, None)
        self._control.discard(sock)
        self._busy.discard(sock)
        # Its thread's read ends (what had come is still read) and it closes it; a whole
        # request read meanwhile can still be answered (`busy`, then made_room).
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)

    def _idle_control(self) -> socket.socket | None:
        """A CONTROL_EXTRA connection waiting for a request (none, or a second one)."""
        for s in self._control:
            if self._waiting(s) and not _arriving(s):
                return s
        return None

    def _waiting(self, s: socket.socket) -> bool:
        """Waiting for a request head (none, or part of one); the caller also asks that
        none be there unread (_arriving: a system call, so last). However new it is, or
        its head: sparing heads begun less than a second ago let a program replacing
        half-sent heads as fast as they aged keep `hd status` and `hd down` out, the
        places kept for them included (adv52 J/1). One closed as its request comes is
        answered nothing and nothing is done, as a keep-alive closed by any server; one
        closed as its thread reads it whole is answered made_room's 503 (`busy`)."""
        h = self._open.get(s)
        return h is not None and h._reads.deadline is not None and s not in self._busy

    def _idlest(self) -> socket.socket | None:
        """The connection waiting for a request head the longest (earliest deadline);
        else the oldest stream."""
        waiting = sorted(((h._reads.deadline, s) for s, h in self._open.items()
                          if s not in self._control and self._waiting(s)),
                         key=lambda w: w[0])
        for _, s in waiting:
            if not _arriving(s):
                return s
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


def _arriving(sock: socket.socket) -> bool:
    """Bytes (or the end) wait to be read on `sock`; a look that never blocks."""
    try:
        poll = select.poll()
        poll.register(sock, select.POLLIN)
        return bool(poll.poll(0))
    except (OSError, ValueError):
        return False


def made_room(cap: int) -> str:
    return (f"the daemon closed this connection to make room at its {cap} API connections "
            "before it had read this request: nothing was done; send it again")


def busy_sentence(cap: int) -> str:
    return (f"the daemon is at its {cap} API connections, every one busy with a request, "
            "the rest of its descriptors kept for the services; try again in a moment, or "
            "raise ulimit -n before hd up (hd status and hd down still get in; hd down "
            "--force ends the stack without the API)")


def refuse(sock: socket.socket, sentence: str, kind: str = "TooManyConnections") -> None:
    """A 503 with a sentence, best effort (the client may not read), then closed."""
    body = json.dumps({"error": sentence, "type": kind}).encode()
    with contextlib.suppress(OSError):
        sock.settimeout(1.0)
        sock.sendall(REFUSAL % (len(body), body))
