"""The API's socket bound at once, its server built off the event loop.

Binding is what must happen before any service starts: a busy dashboard port fails
loudly then. Building the server is what costs: the request loop, the routes, the page and
MCP glue are ~35 ms of imports that delayed every service's spawn. So the socket is
bound and listening here, synchronously, and the rest is imported and started in a
thread; a client that connects meanwhile waits in the listen backlog and is answered
once the server is up (a few tens of ms).

That thread waits for `after` (the engine sets it once the first wave of services is
spawned) for at most AFTER_LIMIT_S: imports hold the GIL, and while they ran beside the
spawns each spawn waited for them (svc01 of 10 toys came 20 ms after svc00, 4 ms of
that its own work).
"""

from __future__ import annotations

import socket
import sys
import threading
import traceback
from collections.abc import Callable

BACKLOG = 128
"""Above socketserver's 5: every `hd` and page request of a burst waits, none refused."""

START_LIMIT_S = 30.0
"""How long a stop waits for a server still being built."""

AFTER_LIMIT_S = 0.25
"""The longest the server waits for the first wave (a setup step may run first)."""

Starter = Callable[[socket.socket], Callable[[], None]]
"""Builds and starts the server on the bound socket; returns its `stop`."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, as socketserver would make it (SO_REUSEADDR; IPv6 for a
    ':' host). OSError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def serve_soon(sock: socket.socket, start: Starter,
               after: threading.Event | None = None) -> Callable[[], None]:
    """Run `start(sock)` in a thread, once `after` is set (or AFTER_LIMIT_S passed); the
    returned `stop` waits for it, then stops the server (or closes the bare socket, if
    starting it failed)."""
    done = threading.Event()
    stops: list[Callable[[], None]] = []

    def run() -> None:
        if after is not None:
            after.wait(AFTER_LIMIT_S)
        try:
            stops.append(start(sock))
        except BaseException:  # a bug: say so in daemon.log; the stack keeps running
            print("hippodrome | the dashboard and API could not start:\n"
                  + traceback.format_exc(), file=sys.stderr, flush=True)
        finally:
            done.set()

    threading.Thread(target=run, name="http-start", daemon=True).start()

    def stop() -> None:
        done.wait(START_LIMIT_S)  # imports never take this long; a stop never hangs on it
        if stops:
            stops[0]()
        else:
            sock.close()

    return stop
