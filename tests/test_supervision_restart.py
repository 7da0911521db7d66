"""After start-up: crash restarts with backoff, the crash-loop limit, liveness restarts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from harness import Harness, run
from stackutil import PY, TOY, free_ports, stack_header, toy_service, wait_for

from hippo_tasks.supervision.backoff import Backoff, FakeClock, next_failures
from hippo_tasks.supervision.states import State


def test_backoff_policy() -> None:
    b = Backoff(initial=0.5, maximum=4.0)
    assert [b.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert next_failures(3, 0.1) == 4
    assert next_failures(3, 60.0) == 1


def test_crash_restarts_with_backoff_then_gives_up(project: Path) -> None:
    """A service that was ready, then keeps dying: restarted with growing delays (on a
    fake clock, so the test does not sit through them), then FAILED."""
    (p,) = free_ports(1)
    text = stack_header(1, backoff_initial=0.5, backoff_max=4.0) + toy_service(
        "flaky", p, readiness={"tcp": True}, max_restarts=3)
    clock = FakeClock()

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        svc = h.stack.get("flaky")
        for expected_restarts in range(4):
            pid = svc.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            while svc.pid == pid and svc.state != State.FAILED:
                await asyncio.sleep(0.02)
            if expected_restarts < 3:
                while svc.state != State.RUNNING:
                    await asyncio.sleep(0.02)
                assert svc.restarts == expected_restarts + 1
        while svc.state != State.FAILED:
            await asyncio.sleep(0.02)
        assert "crash loop" in svc.reason and "killed by signal 9" in svc.reason
        assert clock.sleeps == [0.5, 1.0, 2.0]
        assert h.states("flaky").count("backoff") == 3

    run(project, text.replace("dashboard_port = 1\n", "dashboard_port = 1\n"), scenario,
        clock=clock)


def test_no_auto_restart_means_failed_on_crash(project: Path) -> None:
    (p,) = free_ports(1)
    text = toy_service("once", p, auto_restart=False)

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        svc = h.stack.get("once")
        assert svc.pid is not None
        os.kill(svc.pid, signal.SIGKILL)
        while svc.state != State.FAILED:
            await asyncio.sleep(0.02)
        assert svc.exit_code == -9 and svc.restarts == 0

    run(project, text, scenario)


def test_hung_service_holding_its_port_is_restarted(project: Path) -> None:
    """Liveness: the process lives and keeps its port but stops answering HTTP."""
    (p,) = free_ports(1)
    hang = project / "hang-now"
    text = stack_header(1, liveness_interval=0.2, liveness_failures=3, backoff_initial=0.1) + \
        toy_service("hung", p, "--hang-if-exists", str(hang),
                    readiness={"http": "/healthz"})

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        svc = h.stack.get("hung")
        first = svc.pid
        hang.write_text("x")
        while svc.restarts == 0:
            await asyncio.sleep(0.05)
        hang.unlink()
        while svc.state != State.RUNNING:
            await asyncio.sleep(0.05)
        assert svc.pid != first
        notes = [r.text for r in h.hub.tail("hung", 1000) if r.system]
        assert any("liveness probe failed (3/3)" in n for n in notes)
        assert any("hung?" in n for n in notes)

    run(project, text, scenario, timeout=60)


def test_a_hung_service_without_auto_restart_is_marked_unhealthy_and_left_running(
        project: Path) -> None:
    """`auto_restart = false`: the README promises "marked unhealthy", and that is what
    one sets it for (a debugger on the hung process). It was ended and `failed`. Its
    health comes back when it answers again."""
    (p,) = free_ports(1)
    hang = project / "hang-now"
    text = stack_header(1, liveness_interval=0.2, liveness_failures=2) + \
        toy_service("hung", p, "--hang-if-exists", str(hang),
                    readiness={"http": "/healthz"}, auto_restart=False)

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        svc = h.stack.get("hung")
        first = svc.pid
        hang.write_text("x")
        notes: list[str] = []
        while not any("marked unhealthy" in n for n in notes):
            await asyncio.sleep(0.05)
            notes = [r.text for r in h.hub.tail("hung", 1000) if r.system]
        await asyncio.sleep(1.0)  # five more misses: still there, still one note
        assert svc.state == State.RUNNING and svc.pid == first and not svc.healthy, \
            (svc.state, svc.reason)
        notes = [r.text for r in h.hub.tail("hung", 1000) if r.system]
        assert sum("marked unhealthy" in n for n in notes) == 1, notes
        assert not any("(3/2)" in n for n in notes), notes
        hang.unlink()
        while not svc.healthy:
            await asyncio.sleep(0.05)
        assert svc.pid == first and svc.restarts == 0
        notes = [r.text for r in h.hub.tail("hung", 1000) if r.system]
        assert any("liveness probe passed again" in n for n in notes), notes

    run(project, text, scenario, timeout=60)


def test_a_stopped_process_fails_its_tcp_liveness_probe(project: Path) -> None:
    """The kernel completes the TCP handshake for a SIGSTOPped (hung) process, so with
    `tcp` readiness, the default for a service with a port, it stayed "healthy" through
    a hundred probes (adv24 a/11). A stopped process is a miss."""
    (p,) = free_ports(1)
    server = (f"import socket, time; s = socket.create_server(('127.0.0.1', {p}), "
              "backlog=4096); time.sleep(600)")  # nginx, node, uvicorn: 511 and more
    text = stack_header(1, liveness_interval=0.2, liveness_failures=2, backoff_initial=0.1) \
        + f'[services.web]\ncommand = ["{PY}", "-c", "{server}"]\nport = {p}\n'

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        svc = h.stack.get("web")
        first = svc.pid
        assert first is not None
        os.kill(first, signal.SIGSTOP)
        deadline = time.monotonic() + 15
        while svc.restarts == 0:
            assert time.monotonic() < deadline, (svc.state, svc.healthy)
            await asyncio.sleep(0.05)
        while svc.state != State.RUNNING:
            await asyncio.sleep(0.05)
        assert svc.pid != first

    run(project, text, scenario, timeout=60)


def test_restart_one_service_leaves_others_alone(project: Path) -> None:
    a, b = free_ports(2)
    text = toy_service("a", a) + toy_service("b", b, depends_on=["a"])

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        a_pid, b_pid = h.stack.get("a").pid, h.stack.get("b").pid
        await h.stack.restart("b")
        assert h.stack.get("b").state == State.RUNNING
        assert h.stack.get("b").pid != b_pid
        assert h.stack.get("a").pid == a_pid

    run(project, text, scenario)


@pytest.mark.parametrize("verb", ["restart", "start"])
def test_a_request_cut_short_by_a_whole_stack_restart_answers_after_it(
        project: Path, verb: str) -> None:
    """`hd restart -s b` (or `hd start -s b`) while b starts slowly, then a whole-stack
    `hd restart`: its stop half cut b's request short, which said "b did not come up:
    another command changed the stack", exit 1, and b was running a moment later."""
    a, b = free_ports(2)
    text = toy_service("a", a) + toy_service("b", b, "--delay", "0.7", depends_on=["a"])

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        if verb == "start":
            await h.stack.stop(["b"])
            one = asyncio.ensure_future(h.stack.start(["b"]))
        else:
            one = asyncio.ensure_future(h.stack.restart("b"))
        await asyncio.sleep(0.3)
        assert h.stack.get("b").state == State.STARTING
        every = await h.stack.restart_all()
        got = await one
        snap = got["b"] if isinstance(got, dict) else got
        assert snap.ready and snap.state == "running", snap
        assert every["b"].ready

    run(project, text, scenario)


def wait_gone(pids: list[int]) -> None:
    from stackutil import alive
    wait_for(lambda: not any(alive(p) for p in pids), 5, what=f"{pids} gone")


def test_a_crash_whose_child_lingers_is_not_shown_running(project: Path) -> None:
    """The main process is killed; its child ignores SIGTERM, so ending it takes the
    whole stop_timeout. Meanwhile status says `stopping` with no pid, not `running`
    with a dead one; then the service is restarted as after any crash."""
    (p,) = free_ports(1)
    text = (f'[services.web]\nshell = "trap \'\' TERM; sleep 60 & exec {PY} {TOY} --port {p}"\n'
            f'port = {p}\nreadiness = {{ tcp = true }}\nstop_timeout = 1.5\n')

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        svc = h.stack.get("web")
        first = svc.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await asyncio.sleep(0.5)  # the child still ignores its SIGTERM
        row = svc.snapshot().as_status()
        assert (row["state"], row["pid"]) == ("stopping", None), row
        while svc.state != State.RUNNING or svc.pid == first:
            await asyncio.sleep(0.05)
        assert h.states("web")[-4:] == ["stopping", "backoff", "starting", "running"]

    run(project, text, scenario)


def test_status_read_from_another_thread_never_shows_running_without_a_live_pid(
        project: Path) -> None:
    """The API reads snapshots from its own threads. Around each crash of a running
    service it showed `running`, ready, with no pid (the exit seen, the state not yet
    moved): ~100 such rows in 5,000 reads over 20 s of a crash loop."""
    text = stack_header(1, backoff_initial=0.02, backoff_max=0.02) + (
        f'[services.crashy]\ncommand = ["{PY}", "-c", "import time, os; print(\'up\', '
        'flush=True); time.sleep(0.1); os._exit(3)"]\nreadiness = { log = "up" }\n'
        'max_restarts = 10000\n')

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        svc = h.stack.get("crashy")
        bad: list[dict[str, object]] = []
        reads = 0
        done = threading.Event()

        def poll() -> None:
            nonlocal reads
            while not done.is_set():
                row = svc.snapshot().as_status()
                reads += 1
                if row["state"] == "running" and (row["pid"] is None or not row["ready"]) \
                        or row["ready"] and row["pid"] is None:
                    bad.append(row)
                time.sleep(0.0005)  # as an API thread between requests: the GIL goes round

        reader = threading.Thread(target=poll)
        reader.start()
        await asyncio.sleep(4)
        deadline = time.monotonic() + 30  # a loaded machine starts Python slowly
        while svc.restarts < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        done.set()
        reader.join(10)
        assert svc.restarts >= 10, "the crash loop did not run"
        assert reads > 1000 and not bad, (reads, bad[:3])

    run(project, text, scenario)


def test_a_restart_refused_for_want_of_descriptors_is_tried_again(project: Path) -> None:
    """A crash while the daemon was out of descriptors (or processes) was `failed` for
    good after one try, though they came back seconds later: it is a backoff now."""
    import resource

    text = (stack_header(1, backoff_initial=0.2, backoff_max=0.4)
            + '[services.web]\ncommand = ["sleep", "600"]\nreadiness = "none"\n')

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        svc = h.stack.get("web")
        pid = svc.pid
        assert pid is not None
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest_free = min(set(range(4096)) - {int(fd) for fd in os.listdir("/proc/self/fd")})
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new fd at all
        try:
            os.kill(pid, signal.SIGKILL)
            while "Too many open files" not in svc.reason:
                assert svc.state != State.FAILED, svc.reason
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)  # several tries, all refused
            assert svc.state == State.BACKOFF and "trying again in" in svc.reason, svc.reason
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        while svc.state != State.RUNNING:
            assert svc.state != State.FAILED, svc.reason
            await asyncio.sleep(0.02)
        assert svc.pid != pid and svc.restarts >= 2

    run(project, text, scenario)


def test_a_port_check_refused_for_want_of_descriptors_is_tried_again(project: Path) -> None:
    """A service with a port, started while the daemon has no descriptor to spare: the
    port check's own socket failed with EMFILE, and the service was `failed` with
    "internal error: OSError(24, ...) (please report it)" (adv24 c/3). It is a backoff,
    saying the limit, and it starts once descriptors come back."""
    import resource

    (port,) = free_ports(1)
    text = (stack_header(1, backoff_initial=0.2, backoff_max=0.4)
            + toy_service("web", port, readiness={"tcp": True}))

    async def scenario(h: Harness) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest_free = min(set(range(4096)) - {int(fd) for fd in os.listdir("/proc/self/fd")})
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new fd at all
        svc = h.stack.get("web")
        try:
            started = asyncio.ensure_future(h.stack.start_and_wait())
            while "cannot check its port" not in svc.reason:
                assert svc.state != State.FAILED, svc.reason
                await asyncio.sleep(0.02)
            assert svc.state == State.BACKOFF and "trying again in" in svc.reason, svc.reason
            assert f"ulimit -n: {lowest_free}" in svc.reason, svc.reason
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert await started is None
        assert svc.state == State.RUNNING, svc.reason

    run(project, text, scenario)


@pytest.mark.parametrize("moment", ["backoff", "exit seen"])
def test_a_start_asked_during_a_crash_backoff_starts_it_now(project: Path, moment: str) -> None:
    """`hd start -s X` while X waited out a 40 s backoff sat through the whole delay,
    printing nothing, where `hd restart -s X` started it at once (adv28 l/2). The user
    who has just fixed what made it crash asks for it now.

    `exit seen`: asked after the exit showed (`stopping`, read from the pidfd) but
    before the loop turn that moves the state, it was taken for a start of a running
    service: answered `stopping` at once, or left waiting for the crashed run and so
    its whole backoff (a 3.13 CI run, under load). The test asks in that very turn: it
    does not yield between the kill and the start."""
    (p,) = free_ports(1)
    text = stack_header(1, backoff_initial=40.0, backoff_max=40.0) + toy_service(
        "flaky", p, readiness={"tcp": True})

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        svc = h.stack.get("flaky")
        pid = svc.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        if moment == "backoff":
            while svc.state != State.BACKOFF:
                await asyncio.sleep(0.02)
        else:
            deadline = time.monotonic() + 10
            while svc.snapshot().state != "stopping":  # no await: the loop cannot see it
                assert time.monotonic() < deadline, svc.snapshot()
                time.sleep(0.001)
        settled = await asyncio.wait_for(h.stack.start(["flaky"]), timeout=20)
        assert settled["flaky"].state == "running" and settled["flaky"].pid not in (None, pid)
        if moment == "backoff":
            assert "backoff" in h.states("flaky")

    run(project, text, scenario)


def test_a_start_asked_while_a_crash_is_cleaned_up_does_not_wait_out_the_backoff(
        project: Path) -> None:
    """The same start asked while the crashed run's leftovers (a child ignoring SIGTERM)
    were being ended: it waited for that and then the whole 40 s backoff (adv28 l/2)."""
    (p,) = free_ports(1)
    child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    server = (f"import socket, subprocess, sys, time\n"
              f"subprocess.Popen([sys.executable, '-c', {child!r}])\n"
              f"s = socket.create_server(('127.0.0.1', {p}))\ntime.sleep(1.5)\nsys.exit(3)\n")
    text = stack_header(1, backoff_initial=40.0, backoff_max=40.0) + (
        f'[services.crashy]\ncommand = ["{PY}", "-c", {json.dumps(server)}]\nport = {p}\n'
        'readiness = { tcp = true }\nstop_timeout = 3\n')

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        svc = h.stack.get("crashy")
        first = svc.pid
        while svc.snapshot().state != "stopping":  # its main exited; the child is ending
            await asyncio.sleep(0.02)
        settled = await asyncio.wait_for(h.stack.start(["crashy"]), timeout=20)
        assert settled["crashy"].state == "running", settled["crashy"]
        assert settled["crashy"].pid not in (None, first)

    run(project, text, scenario)
