"""Liveness probes of every running service in one pass per tick.

At 40 services an idle daemon's CPU was the liveness probes, and half of it was not
the probes' sockets but Python's bookkeeping around them (perf over an idle window: 46 %
of samples in libpython, 49 % in the kernel's TCP connect and close): per service and
per tick an `asyncio.wait` on the shared tick, a timeout timer, and a reader added to
and removed from the event loop's selector, for answers that all arrive within the same
millisecond on loopback. Here one pass per tick opens every due probe's connection, one
epoll set holds them all, and the event loop watches that set's single descriptor. A
service's verdict goes to its callback as soon as its answer (or refusal) arrives, so a
hung service delays no other's; it fails at the probe's timeout.

A service whose probe is still out (hung, until that timeout) is not probed again at the
next tick: as when each service probed in turn, misses are counted one per probe, never
faster than the probe's timeout allows. Without epoll (macOS), each due service is
probed as its own coroutine (probes.py), with the same tick and callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
from collections.abc import Callable

from hippo_tasks.model.plan import HOST
from hippo_tasks.model.spec import Readiness
from hippo_tasks.supervision import probes

PROBE_TIMEOUT = 2.0
"""How long one liveness probe may take before it counts as a miss."""


class _Member:
    """One watched service; compared and hashed by identity (a pass keeps a set of them)."""

    __slots__ = ("readiness", "port", "on_result", "busy", "left")

    def __init__(self, readiness: Readiness, port: int, on_result: Callable[[bool], None],
                 busy: bool = False, left: bool = False) -> None:
        self.readiness = readiness
        self.port = port
        self.on_result = on_result
        self.busy = busy
        """Its probe of an earlier tick is still out."""
        self.left = left


class Liveness:
    """The stack's liveness prober: a service joins while it runs and leaves after."""

    def __init__(self, timeout: float = PROBE_TIMEOUT) -> None:
        self.timeout = timeout
        self._members: dict[float, list[_Member]] = {}
        self._ticks: dict[float, asyncio.Task[None]] = {}
        self._passes: set[asyncio.Task[None]] = set()

    def watch(self, interval: float, readiness: Readiness, port: int,
              on_result: Callable[[bool], None]) -> Callable[[], None]:
        """Probe `port` at every tick of `interval` (the first within one interval) and
        call `on_result(healthy)` with each verdict. Returns the call that leaves:
        after it, no verdict for this service is delivered, even one already on its way."""
        member = _Member(readiness, port, on_result)
        self._members.setdefault(interval, []).append(member)
        if interval not in self._ticks:
            self._ticks[interval] = asyncio.get_running_loop().create_task(
                self._tick(interval), name=f"liveness tick {interval:g}s")

        def leave() -> None:
            member.left = True
            members = self._members.get(interval, [])
            if member in members:
                members.remove(member)
            if not members:  # nothing left to probe at this interval: no timer either
                self._members.pop(interval, None)
                tick = self._ticks.pop(interval, None)
                if tick is not None:
                    tick.cancel()

        return leave

    async def _tick(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            due = [m for m in self._members.get(interval, ()) if not m.busy]
            for member in due:  # now, not when the pass task first runs
                member.busy = True
            if due:
                # Its own task: the next tick comes on time even while a hung service
                # holds this pass open until the probe's timeout.
                task = loop.create_task(self._pass(due))
                self._passes.add(task)
                task.add_done_callback(self._passes.discard)

    async def _pass(self, due: list[_Member]) -> None:
        pending = set(due)

        def deliver(member: _Member, healthy: bool) -> None:
            pending.discard(member)
            member.busy = False  # free for the next tick, while this pass waits on others
            if not member.left:
                member.on_result(healthy)

        async def one(member: _Member) -> None:
            deliver(member, await probes.probe(member.readiness, member.port, self.timeout))

        try:
            if hasattr(select, "epoll"):
                await _EpollPass(due, self.timeout, deliver).run()
            else:
                await asyncio.gather(*(one(m) for m in due))
        finally:
            # Only those this pass never answered (cancelled, or a bug): a member it did
            # answer may already be out again in a later tick's pass.
            for member in pending:
                member.busy = False


class _EpollPass:
    """One tick's probes: non-blocking sockets in one epoll set, whose descriptor is the
    only thing the event loop watches for them."""

    def __init__(self, due: list[_Member], timeout: float,
                 deliver: Callable[[_Member, bool], None]) -> None:
        self.due = due
        self.timeout = timeout
        self.deliver = deliver
        self.epoll = select.epoll()
        self.open: dict[int, tuple[_Member, socket.socket, bytearray]] = {}
        self.connecting: set[int] = set()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for member in self.due:
                self._start(member)
            if self.open:
                loop.add_reader(self.epoll.fileno(), self._events)
                timer = loop.call_later(self.timeout, self._expire)
                try:
                    await self.done
                finally:
                    loop.remove_reader(self.epoll.fileno())
                    timer.cancel()
        finally:
            for fd in list(self.open):  # cancelled (the daemon stopping): none is left open
                self._finish(fd, False)
            self.epoll.close()

    def _start(self, member: _Member) -> None:
        opened = probes.connect_now(HOST, member.port)
        if opened is None:  # refused, or out of descriptors: a miss
            self.deliver(member, False)
            return
        sock, pending = opened
        self.open[sock.fileno()] = (member, sock, bytearray())
        if pending:
            self.connecting.add(sock.fileno())
            self.epoll.register(sock.fileno(), select.EPOLLOUT)
        else:  # loopback completes the handshake inside connect() nearly always
            self._connected(sock.fileno(), registered=False)

    def _connected(self, fd: int, registered: bool) -> None:
        member, sock, _ = self.open[fd]
        if probes.to_itself(sock):  # no listener: the probe met its own socket
            self._finish(fd, False)
            return
        if member.readiness.kind != "http":  # tcp: accepting the connection is the answer
            self._finish(fd, True)
            return
        request = probes.http_request(member.readiness.value, HOST, member.port)
        try:
            sent = sock.send(request)
        except OSError:
            sent = 0
        if sent != len(request):  # a fresh socket takes ~150 bytes whole, or it is broken
            self._finish(fd, False)
            return
        if registered:
            self.epoll.modify(fd, select.EPOLLIN)
        else:
            self.epoll.register(fd, select.EPOLLIN)

    def _events(self) -> None:
        for fd, _ in self.epoll.poll(0):
            entry = self.open.get(fd)
            if entry is None:
                continue
            _, sock, head = entry
            if fd in self.connecting:
                self.connecting.discard(fd)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self._finish(fd, False)  # refused, or reset while connecting
                else:
                    self._connected(fd, registered=True)
                continue
            try:
                data = sock.recv(probes.HEAD_READ)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            head += data
            if not data or b"\r\n" in head or len(head) >= probes.HEAD_READ:
                self._finish(fd, probes.answered_ok(bytes(head)))
        if not self.open and not self.done.done():
            self.done.set_result(None)

    def _expire(self) -> None:
        for fd in list(self.open):  # no answer within the timeout: a miss
            self._finish(fd, False)
        if not self.done.done():
            self.done.set_result(None)

    def _finish(self, fd: int, healthy: bool) -> None:
        member, sock, _ = self.open.pop(fd)
        self.connecting.discard(fd)
        with contextlib.suppress(OSError):  # never registered: finished from connect()
            self.epoll.unregister(fd)
        sock.close()
        self.deliver(member, healthy)
