"""Liveness probed for every service in one pass per tick (supervision/liveness.py),
against real sockets: each service gets its own verdict (a refusal, a 503, garbage or
silence never passes, a slow one never holds up the others), a hung service is never
probed twice at once, leaving stops every verdict, and a pass cancelled by the daemon's
shutdown leaves no socket open. The same verdicts without epoll (macOS's path)."""

from __future__ import annotations

import asyncio
import gc
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from scripted_http import raw_server
from stackutil import free_ports

from hippo_tasks.model.spec import Readiness
from hippo_tasks.supervision.liveness import Liveness

HTTP = Readiness("http", "/healthz")
TCP = Readiness("tcp", "")


def answering(reply: bytes) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(reply)
        conn.close()
    return answer


class Mute:
    """Accepts, reads the request, never answers; counts connections, and those open."""

    def __init__(self) -> None:
        self.open = 0
        self.accepted = 0
        self.lock = threading.Lock()

    def __call__(self, conn: socket.socket) -> None:
        with self.lock:
            self.accepted += 1
            self.open += 1
        threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        try:  # the fixture may have closed the socket already, at the end of a test
            conn.settimeout(10)
            while conn.recv(4096):
                pass  # until the prober gives up and closes
        except OSError:
            pass
        with self.lock:
            self.open -= 1


@pytest.fixture
def ports() -> Iterator[dict[str, int]]:
    with raw_server(answering(b"HTTP/1.0 200 OK\r\n\r\n")) as ok, \
            raw_server(answering(b"HTTP/1.1 503 Unavailable\r\n\r\n")) as failing, \
            raw_server(answering(b"SSH-2.0-OpenSSH_9.2\r\n")) as garbage, \
            raw_server(answering(b"")) as silent, \
            raw_server(Mute()) as mute:
        yield {"ok": ok, "failing": failing, "garbage": garbage, "silent": silent,
               "mute": mute, "refused": free_ports(1)[0]}


def first_verdicts(ports: dict[str, int], timeout: float) -> list[tuple[str, bool]]:
    """Each service's first (name, healthy), in the order they arrived."""
    got: list[tuple[str, bool]] = []
    watched = [(name, HTTP, port) for name, port in ports.items()]
    watched.append(("mute tcp", TCP, ports["mute"]))

    async def scenario() -> None:
        liveness = Liveness(timeout)
        everyone = asyncio.Event()

        def verdict(name: str, ok: bool) -> None:
            if name not in dict(got):
                got.append((name, ok))
            if len(got) == len(watched):
                everyone.set()

        leaves = [liveness.watch(0.05, readiness, port,
                                 lambda ok, name=name: verdict(name, ok))
                  for name, readiness, port in watched]
        await asyncio.wait_for(everyone.wait(), 10)
        for leave in leaves:
            leave()

    asyncio.run(scenario())
    return got


@pytest.mark.parametrize("epoll", [True, False], ids=["epoll", "without epoll"])
def test_each_service_gets_its_own_verdict_and_a_silent_one_holds_up_none(
        ports: dict[str, int], epoll: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not epoll:
        monkeypatch.delattr(select, "epoll")
    got = first_verdicts(ports, timeout=3.0)  # roomy: a loaded machine answers late too
    assert dict(got) == {"ok": True, "failing": False, "garbage": False, "silent": False,
                         "mute": False, "refused": False, "mute tcp": True}
    # Every answer (or refusal) was delivered before the mute service's timeout ran out.
    assert got[-1] == ("mute", False)


def test_a_hung_service_is_never_probed_twice_at_once() -> None:
    """Ticks every 0.05 s, a probe times out after 0.4 s: a prober that probed at every
    tick would hold ~8 connections to the hung service at once, and count its misses
    eight times too fast. Counted from the connections the service accepted against the
    verdicts (each probe ends in one, but the last may still be out): the service's own
    view of how many are open lags behind the prober's closes on a loaded machine."""
    mute = Mute()
    misses = 0

    async def scenario() -> None:
        nonlocal misses
        liveness = Liveness(0.4)

        def verdict(ok: bool) -> None:
            nonlocal misses
            misses += 0 if ok else 1

        leave = liveness.watch(0.05, HTTP, port, verdict)
        await asyncio.sleep(1.5)
        leave()

    with raw_server(mute) as port:
        asyncio.run(scenario())
    assert 1 <= misses <= 4, misses
    assert mute.accepted <= misses + 1, (mute.accepted, misses)


def test_a_pass_held_open_by_a_hung_service_frees_no_one_a_later_pass_holds() -> None:
    """X answers its first probe at once, then hangs; B always hangs. The first pass
    stays open on B while X is already out again in the next tick's pass: when the first
    pass ends it must not free X, or X gets a second probe beside the one still out,
    and then more with every pass that ends."""
    mute_b, mute_x = Mute(), Mute()
    answered = threading.Event()
    verdicts = 0

    def first_then_hang(conn: socket.socket) -> None:
        if not answered.is_set():
            answered.set()
            answering(b"HTTP/1.0 200 OK\r\n\r\n")(conn)
        else:
            mute_x(conn)

    async def scenario() -> None:
        nonlocal verdicts
        liveness = Liveness(0.6)

        def count(ok: bool) -> None:
            nonlocal verdicts
            verdicts += 1

        leaves = [liveness.watch(0.05, HTTP, port_b, lambda ok: None),
                  liveness.watch(0.05, HTTP, port_x, count)]
        await asyncio.sleep(2.0)
        for leave in leaves:
            leave()

    with raw_server(mute_b) as port_b, raw_server(first_then_hang) as port_x:
        asyncio.run(scenario())
    # One connection answered, then hung ones: every one but the last has its verdict.
    assert 1 + mute_x.accepted <= verdicts + 1, (mute_x.accepted, verdicts)


def test_leaving_stops_every_verdict_and_the_last_one_out_ends_the_tick(
        ports: dict[str, int]) -> None:
    got: list[bool] = []

    async def scenario() -> None:
        liveness = Liveness(1.0)
        leave_mute = liveness.watch(0.05, HTTP, ports["mute"], got.append)
        await asyncio.sleep(0.2)  # its probe is out, hung
        leave_mute()  # the service stopped: its pending verdict is dropped
        leave_ok = liveness.watch(0.05, HTTP, ports["ok"], got.append)
        while not got:
            await asyncio.sleep(0.01)
        assert got == [True]
        leave_ok()
        await asyncio.sleep(1.2)  # past the mute probe's timeout
        assert got == [True]
        ticks = [t for t in asyncio.all_tasks() if t.get_name().startswith("liveness tick")]
        assert ticks == [] or all(t.cancelled() or t.done() for t in ticks)

    asyncio.run(scenario())


def test_a_pass_cancelled_by_shutdown_leaves_no_socket_open() -> None:
    """Twenty probes out to a hung service when the loop ends: every one is closed (the
    service sees each connection end), none left to the garbage collector."""
    mute = Mute()

    async def scenario() -> None:
        liveness = Liveness(5.0)
        for _ in range(20):
            liveness.watch(0.05, HTTP, port, lambda ok: None)
        while mute.accepted < 20:
            await asyncio.sleep(0.01)
        # asyncio.run now cancels the pass, as the daemon's shutdown does

    with raw_server(mute) as port:
        gc.disable()  # a socket closed only by its finaliser would pass otherwise
        try:
            asyncio.run(asyncio.wait_for(scenario(), 10))
            deadline = time.monotonic() + 5
            while mute.open and time.monotonic() < deadline:
                time.sleep(0.01)
            assert (mute.accepted, mute.open) == (20, 0)
        finally:
            gc.enable()


def test_many_services_in_one_pass_all_answer(ports: dict[str, int]) -> None:
    got: list[bool] = []

    async def scenario() -> None:
        liveness = Liveness(5.0)
        for _ in range(60):
            liveness.watch(0.05, HTTP, ports["ok"], got.append)
        while len(got) < 60:
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert got[:60] == [True] * 60
