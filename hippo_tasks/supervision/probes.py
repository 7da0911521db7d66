"""Readiness and liveness probes, asynchronous so a hung service blocks nobody else.

HTTP probes speak just enough HTTP/1.0 by hand: it is cheaper than any client library
and the probe runs every few seconds for every service, so idle CPU depends on it.
"""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import struct

from hippo_tasks.model.plan import HOST
from hippo_tasks.model.spec import Readiness

HEAD_READ = 1024
"""Bytes read at most for the status line; a service that sends more without a line
break is not answering HTTP."""


def connect_now(host: str, port: int) -> tuple[socket.socket, bool] | None:
    """A non-blocking socket connecting to the port, and whether the connect is still
    pending; None when it was refused or could not be made (no file descriptor left).
    The readiness probes here and the liveness pass (liveness.py) both start with it.

    On loopback the kernel completes the handshake (or refuses it) inside connect()
    itself, so the socket is nearly always writable at once: a zero poll sees that and
    skips the event loop's writer round trip (two epoll_ctl calls and a loop turn, a
    third of an idle daemon's CPU per liveness probe). Synchronous, so a refused probe,
    every probe of a service still starting, costs no timeout handle and no exception
    on the loop."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        sock.setblocking(False)
        code = sock.connect_ex((host, port))
        if code == errno.EINPROGRESS and _writable_now(sock):
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, OSError):
            return None
        raise
    if code == errno.EINPROGRESS or (code == 0 and not to_itself(sock)):
        return sock, code == errno.EINPROGRESS
    sock.close()
    return None


def ipv6_only(port: int) -> bool:
    """Something accepts on [::1]:port while the probes, on HOST, found nothing: what a
    Node 17+ server (and others) listening on `localhost` does. Its start_timeout said
    only "not ready (readiness: tcp)" (adv28 l/9). Asked once, on that failure."""
    try:
        with socket.create_connection(("::1", port), timeout=0.2):
            pass
    except OSError:
        return False
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return False
    except OSError:
        return True


def to_itself(sock: socket.socket) -> bool:
    """Connected to itself: with nothing listening on a port in the range the kernel
    gives outgoing connections (32768-60999), a probe's socket can be given that very
    port as its own end and "connect" to itself, so a service was ready before it
    listened and its dependants started too soon.

    Such a socket is set to end with a reset: closed the usual way it stood a minute in
    TIME_WAIT on the service's own port, whose bind then failed (`Address already in
    use`) on every start meanwhile, and the next `up` was refused."""
    try:
        if sock.getsockname() != sock.getpeername():
            return False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        return True
    except OSError:
        return False


RESET_ON_CLOSE = struct.pack("ii", 1, 0)
"""SO_LINGER on, zero seconds: close() sends RST and leaves no TIME_WAIT."""


def _writable_now(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    return bool(poller.poll(0))


async def tcp_ok(port: int, timeout: float, host: str = HOST) -> bool:
    """The port accepts a connection (closed at once; we never wait for the peer)."""
    opened = connect_now(host, port)
    if opened is None:
        return False
    sock, pending = opened
    try:
        if pending:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
        return not to_itself(sock)
    except (OSError, TimeoutError):
        return False
    finally:
        sock.close()


async def http_ok(port: int, path: str, timeout: float, host: str = HOST) -> bool:
    """True for a 2xx or 3xx answer to GET path within the timeout.

    Raw non-blocking socket calls on the loop, not asyncio streams: a probe costs about
    a third of the CPU that way, and at 40 services probed every few seconds that is
    most of an idle daemon's work.
    """
    opened = connect_now(host, port)
    if opened is None:
        return False
    sock, pending = opened
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            if pending:
                await loop.sock_connect(sock, (host, port))
                if to_itself(sock):
                    return False
            await loop.sock_sendall(sock, http_request(path, host, port))
            head = b""
            while b"\r\n" not in head and len(head) < HEAD_READ:
                data = await loop.sock_recv(sock, HEAD_READ)
                if not data:
                    break
                head += data
    except (OSError, TimeoutError):
        return False
    finally:
        sock.close()
    return answered_ok(head)


def http_request(path: str, host: str, port: int) -> bytes:
    """The probe's request: HTTP/1.0 and close, so the service ends the connection."""
    return (f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
            "User-Agent: hippodrome-probe\r\nConnection: close\r\n\r\n").encode()


def answered_ok(head: bytes) -> bool:
    """A 2xx or 3xx status line at the start of what the service sent."""
    parts = head.split(b"\r\n", 1)[0].split()
    return len(parts) >= 2 and parts[1][:1] in (b"2", b"3")


async def probe(readiness: Readiness, port: int | None, timeout: float) -> bool:
    """One probe of a network readiness kind; log and none are not probed this way."""
    if readiness.kind == "http" and port is not None:
        return await http_ok(port, readiness.value, timeout)
    if readiness.kind == "tcp" and port is not None:
        return await tcp_ok(port, timeout)
    return True


def probe_delay(attempt: int) -> float:
    """Readiness polling every 5-10 ms: a refused connect costs ~30 us (0.3 % of a core
    at this pace, only while starting), and every millisecond between "listening" and
    "seen ready" delays the service and all its dependants."""
    return 0.005 * 1.5 ** attempt if attempt < 2 else 0.01  # 1.5 ** 1751 overflows
