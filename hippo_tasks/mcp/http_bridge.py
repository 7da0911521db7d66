"""The SDK's streamable HTTP transport, run inside the daemon's own HTTP server.

The daemon serves HTTP with the standard library's threaded server (daemon/http.py),
not ASGI, and must not grow a second listener: one port, one guard. So `/mcp` hands
each request, already read and guarded, to the SDK's session manager as a single ASGI
exchange, on an event loop of its own in one thread, and writes back what the SDK
answered. The manager is stateless with JSON answers (both allowed by the spec): every
POST carries one JSON-RPC message and gets one JSON answer, so nothing is held between
requests, no stream stays open in a worker thread, and both protocol eras the SDK
speaks (the initialize handshake, and 2026-07-28's self-contained requests) work.

Tools run in the SDK loop's worker threads and call the daemon's command interface
(`LocalStack`), which hands work to the engine's loop: the three loops never block one
another. Made on the first `/mcp` request (daemon/mcp_route.py): importing the SDK
costs the daemon ~50 MB, which a stack nobody drives through MCP never pays.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from hippo_tasks.daemon.commands import StackCommands
from hippo_tasks.mcp.backend import LocalStack
from hippo_tasks.mcp.server import build

GONE_EVERY_S = 0.25
"""How often a waiting exchange looks whether its client is still there."""
EXCHANGE_TIMEOUT_S = 960.0
"""Longer than the slowest tool may take (a seed or probes run, up to 900 s)."""
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "127.0.0.1:*", "localhost:*",
                  "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]

Answer = tuple[int, list[tuple[str, str]], bytes]


class McpBridge:
    """One SDK session manager on a loop of its own; `exchange` is called from the HTTP
    server's worker threads."""

    def __init__(self, commands: StackCommands, loopback_only: bool) -> None:
        self.server = build(LocalStack(commands))
        # The daemon's guard has already refused foreign Hosts and Origins; the SDK's
        # own check, kept on for loopback, is a second lock on the same door.
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=loopback_only, allowed_hosts=LOOPBACK_HOSTS,
            allowed_origins=LOOPBACK_ORIGINS)
        self.manager = StreamableHTTPSessionManager(
            app=self.server, json_response=True, stateless=True, security_settings=security)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mcp", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._failed is not None or self._loop is None:
            raise RuntimeError(f"the MCP endpoint did not start: {self._failed}")

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with self.manager.run():
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:  # said by the constructor, or by the next request
            self._failed = exc
        finally:
            self._ready.set()

    def exchange(self, method: str, path: str, query: str,
                 headers: Sequence[tuple[str, str]], body: bytes,
                 gone: Callable[[], bool] = lambda: False) -> Answer | None:
        """One HTTP request through the SDK: its status, headers and body; None once
        `gone()` says its client hung up. A `wait_ready` of up to 600 s whose client went
        away held its thread and connection all that while: 200 of them took the
        daemon to 404 threads, and with the API's connections capped, would have held
        every one of them."""
        loop = self._loop
        if loop is None or self._failed is not None or not self._thread.is_alive():
            raise RuntimeError(f"the MCP endpoint stopped: {self._failed}")
        future = asyncio.run_coroutine_threadsafe(
            self._asgi(method, path, query, headers, body), loop)
        deadline = time.monotonic() + EXCHANGE_TIMEOUT_S
        while True:
            try:
                return future.result(GONE_EVERY_S)
            except TimeoutError:
                if gone() or time.monotonic() > deadline:
                    future.cancel()
                    if time.monotonic() > deadline:
                        raise
                    return None

    async def _asgi(self, method: str, path: str, query: str,
                    headers: Sequence[tuple[str, str]], body: bytes) -> Answer:
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode("latin-1"), "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in headers],
            "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0),
        }
        done = asyncio.Event()
        delivered = False
        status = 500
        out_headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()  # the body was read whole: the client "leaves" once answered
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                out_headers.extend((k.decode("latin-1"), v.decode("latin-1"))
                                   for k, v in message.get("headers", ()))
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    done.set()

        try:
            await self.manager.handle_request(scope, receive, send)
        finally:
            done.set()
        return status, out_headers, b"".join(chunks)

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)
