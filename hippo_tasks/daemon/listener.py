"""The API's socket bound at once, its server built off the event loop.

Binding is what must happen before any service starts: a busy dashboard port fails
loudly then. Building the server is what costs: the request loop, the routes, the page and
MCP glue are ~35 ms of imports that delayed every service's spawn. So the socket is
bound and listening here, synchronously, and the rest is imported and started in a
thread; a client that connects meanwhile waits in the listen backlog and is answered
once the server is up (a few tens of ms).

That thread waits until a client connects, or `after` is set (the engine sets it
once the stack's start is over: ready, failed or stopped), or AFTER_LIMIT_S has passed.
While services start they need every core: run beside their start-up, these imports
held the GIL between spawns (svc01 of 10 toys came 20 ms after svc00, 4 ms of that its
own work) and took a core from the services.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable

from hippo_contract.http_loop import stamp_arrivals
from hippo_tasks.errors import ProcessLimitError
from hippo_tasks.out_of_memory import OUT_OF_MEMORY

BACKLOG = 128
"""Above socketserver's 5: every `hd` and page request of a burst waits, none refused."""

START_LIMIT_S = 30.0
"""How long a stop waits for a server still being built."""

AFTER_LIMIT_S = 2.0
"""The longest the server waits for the start to be over when no client has come."""
AFTER_POLL_S = 0.05
"""How often the waiting thread looks at `after`; a client wakes it at once."""

Starter = Callable[[socket.socket], Callable[[], None]]
"""Builds and starts the server on the bound socket; returns its `stop`."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, as socketserver would make it (SO_REUSEADDR; IPv6 for a
    ':' host). OSError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        stamp_arrivals(sock)  # which of two racing requests came first (http_loop)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _until_needed(sock: socket.socket, after: threading.Event) -> None:
    """Until `after` is set, a connection waits in the backlog, or the limit passed."""
    deadline = time.monotonic() + AFTER_LIMIT_S
    poller = select.poll()  # not select(): no limit on the descriptor's number
    try:
        poller.register(sock, select.POLLIN)
    except (OSError, ValueError):  # closed meanwhile: the starter says so, if at all
        return
    while not after.is_set() and time.monotonic() < deadline:
        if poller.poll(AFTER_POLL_S * 1000):  # a connection waits (or the socket broke)
            return


def serve_soon(sock: socket.socket, start: Starter,
               after: threading.Event | None = None,
               failed: Callable[[str], None] = lambda _why: None) -> Callable[[], None]:
    """Run `start(sock)` in a thread, once a client connects or `after` is set (or
    AFTER_LIMIT_S passed); the returned `stop` waits for it, then stops the server (or
    closes the bare socket, if starting it failed, which is said to `failed`: a daemon
    no command can reach must not go on as if all were well, as `up --detach` said
    "stack ready" with a dashboard URL that never answered)."""
    done = threading.Event()
    stops: list[Callable[[], None]] = []

    def run() -> None:
        if after is not None:
            _until_needed(sock, after)
        try:
            stops.append(start(sock))
        except BaseException as exc:
            limit = ProcessLimitError.of(exc, "the dashboard and API's threads")
            short = _out_of_files(exc)
            why = limit.message() if limit is not None else short or (
                OUT_OF_MEMORY if isinstance(exc, MemoryError) else traceback.format_exc())
            with contextlib.suppress(OSError):
                print(f"hippodrome | the dashboard and API could not start: {why}",
                      file=sys.stderr, flush=True)
            failed("the dashboard and API could not start"
                   + (": the process limit is reached" if limit is not None else "")
                   + (f": {short}" if short else ""))
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


def _out_of_files(exc: BaseException) -> str:
    """A sentence for EMFILE/ENFILE (the API's late imports open files): it was a
    traceback. Empty for anything else."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.EMFILE, errno.ENFILE):
        return ""
    try:
        import resource

        limit = f" (ulimit -n: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]})"
    except (ImportError, OSError, ValueError):
        limit = ""
    from hippo_tasks.supervision.process import SHORT_OF  # a failed spawn says it so too

    return (f"{SHORT_OF[exc.errno]}{limit}: raise the limit (`ulimit -n 4096`) and run "
            "`hd up` again, or run fewer services")
