"""Readiness and liveness probes, asynchronous so a hung service blocks nobody else.

HTTP probes speak just enough HTTP/1.0 by hand: it is cheaper than any client library
and the probe runs every few seconds for every service, so idle CPU depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib

from hippo_tasks.model.plan import HOST
from hippo_tasks.model.spec import Readiness


async def tcp_ok(port: int, timeout: float, host: str = HOST) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def http_ok(port: int, path: str, timeout: float, host: str = HOST) -> bool:
    """True for a 2xx or 3xx answer to GET path within the timeout."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: hippodrome-probe"
                "\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            status = await reader.readline()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    parts = status.split()
    return len(parts) >= 2 and parts[1][:1] in (b"2", b"3")


async def probe(readiness: Readiness, port: int | None, timeout: float) -> bool:
    """One probe of a network readiness kind; log and none are not probed this way."""
    if readiness.kind == "http" and port is not None:
        return await http_ok(port, readiness.value, timeout)
    if readiness.kind == "tcp" and port is not None:
        return await tcp_ok(port, timeout)
    return True


def probe_delay(attempt: int) -> float:
    """Readiness polling every 5-20 ms: a refused connect costs ~30 us, and every
    millisecond between "listening" and "seen ready" delays all its dependants."""
    return min(0.02, 0.005 * (1.5 ** attempt))
