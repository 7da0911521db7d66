"""The API socket is bound before any service starts, its server built in a thread
(daemon/listener.py): a port taken at the last moment still fails before a single
service runs, requests made while the server is being built are answered, and the
server is built, while the stack starts, only when a client comes."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from stackutil import PY, free_ports, hd, registry, stack_header, toy_service, write_stack

from hippo_tasks.daemon import listener
from hippo_tasks.daemon.engine import Engine
from hippo_tasks.daemon.launch import prepare
from hippo_tasks.daemon.main import run_engine
from hippo_tasks.errors.ports import PortsBusyError
from hippo_tasks.model.plan import Options, url_host
from hippo_tasks.supervision.states import State


def test_a_dashboard_port_taken_after_the_preflight_fails_before_any_service(
        tmp_path: Path) -> None:
    dash, port = free_ports(2)
    write_stack(tmp_path, stack_header(dash) + toy_service(
        "web", port, "--marker", str(tmp_path / "started"), readiness={"http": "/healthz"}))
    plan, reg = prepare(Options(project_root=tmp_path, python=PY), lambda s: None)
    thief = socket.socket()
    thief.bind(("127.0.0.1", dash))
    thief.listen(1)
    try:
        with pytest.raises(PortsBusyError) as caught:
            run_engine(plan, reg, None)
    finally:
        thief.close()
    text = caught.value.message()  # the holder named, as the pre-flight names it
    assert f"port {dash} (service 'dashboard') is already in use by pid {os.getpid()}" in text
    assert not (tmp_path / "started").exists(), "a service started behind a busy dashboard"
    assert not reg.read().get("services")


def test_requests_made_while_the_server_is_built_wait_and_are_answered() -> None:
    """The starter blocks (imports, as the daemon's do) until three clients have
    connected; each is answered once it runs, none refused."""
    sock = listener.bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    go = threading.Event()

    def start(bound: socket.socket) -> Callable[[], None]:
        from http.server import BaseHTTPRequestHandler, HTTPServer

        class Ok(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"ok": True}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        go.wait(10)
        server = HTTPServer(bound.getsockname(), Ok, bind_and_activate=False)
        server.socket.close()
        server.socket = bound
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()

        def stop() -> None:
            server.shutdown()
            server.server_close()
        return stop

    stop = listener.serve_soon(sock, start)
    answers: list[int] = []
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(3)]
    try:
        for c in conns:
            c.request("GET", "/")  # connected and sent while nothing serves yet
        go.set()
        for c in conns:
            answers.append(c.getresponse().status)
    finally:
        for c in conns:
            c.close()
        stop()
    assert answers == [200, 200, 200]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_starter_that_fails_closes_the_socket_and_says_why(
        capsys: pytest.CaptureFixture[str]) -> None:
    sock = listener.bind("127.0.0.1", 0)
    port = sock.getsockname()[1]

    def broken(_: socket.socket) -> Callable[[], None]:
        raise RuntimeError("routes table is broken")

    stop = listener.serve_soon(sock, broken)
    stop()
    assert "routes table is broken" in capsys.readouterr().err
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_while_the_stack_starts_the_server_is_built_only_when_a_client_comes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three services that take 3 s to listen: once all are starting, the server is
    still not built (its imports would take a core from them); a client connecting
    then has it built at once, while they still start, and is answered. Before the
    gate, the starter ran as the engine began, with every service pending."""
    monkeypatch.setattr(listener, "AFTER_LIMIT_S", 30.0)
    dash, *ports = free_ports(4)
    text = stack_header(dash)
    for i, port in enumerate(ports):
        text += toy_service(f"s{i}", port, "--delay", "3", readiness={"http": "/healthz"})
    write_stack(tmp_path, text)
    plan, reg = prepare(Options(project_root=tmp_path, python=PY), lambda s: None)
    engine = Engine(plan, reg)
    names = ("s0", "s1", "s2")
    seen: dict[str, State] = {}
    built = threading.Event()

    def serve(eng: Engine) -> Callable[[], None]:
        def start(bound: socket.socket) -> Callable[[], None]:
            seen.update({n: eng.stack.get(n).state for n in names})
            built.set()
            return bound.close

        return listener.serve_soon(listener.bind("127.0.0.1", dash), start,
                                   after=eng.start_over)

    async def main() -> bool:
        running = asyncio.ensure_future(engine.run(serve))
        try:
            while any(engine.stack.get(n).state is not State.STARTING for n in names):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)
            early = built.is_set()
            client = socket.create_connection(("127.0.0.1", dash), timeout=10)
            try:
                await asyncio.get_running_loop().run_in_executor(None, built.wait, 10)
            finally:
                client.close()
            return early
        finally:
            engine.request_shutdown("test")
            await running

    built_early = asyncio.run(main())
    assert not built_early, "the server was built while the services started, with no client"
    assert built.is_set(), "a client came and the server was never built"
    assert all(seen[n] is State.STARTING for n in names), seen


def test_the_server_waits_for_its_gate_and_is_built_without_it_after_the_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate never set (a service that takes minutes to start) holds the server back
    for AFTER_LIMIT_S at most; a gate set lets it go at once."""
    calls: list[float] = []

    def start(bound: socket.socket) -> Callable[[], None]:
        calls.append(time.monotonic())
        return bound.close

    monkeypatch.setattr(listener, "AFTER_LIMIT_S", 30.0)
    gate = threading.Event()
    stop = listener.serve_soon(listener.bind("127.0.0.1", 0), start, after=gate)
    time.sleep(0.3)
    assert not calls, "the server was built before its gate was set"
    gate.set()
    stop()  # waits for the starter, which the set gate let go
    assert len(calls) == 1

    monkeypatch.setattr(listener, "AFTER_LIMIT_S", 0.05)
    stop = listener.serve_soon(listener.bind("127.0.0.1", 0), start, after=threading.Event())
    stop()  # never set: built anyway once the limit passed
    assert len(calls) == 2


def test_a_server_that_cannot_start_ends_the_stack_with_a_sentence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """At the user's process limit the server's threads could not start: the daemon
    printed a traceback and ran on with no API, so `up --detach` said "stack ready" with
    a dashboard URL that never answered and `hd status` timed out for good. The stack
    now ends, saying why (the kernel's refusal, not a traceback)."""
    from hippo_tasks.daemon import http

    def no_threads(*_: object, **__: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(http, "serve", no_threads)
    dash, port = free_ports(2)
    write_stack(tmp_path, stack_header(dash) + toy_service("web", port))
    plan, reg = prepare(Options(project_root=tmp_path, python=PY), lambda s: None)
    run_engine(plan, reg, None)
    err = capsys.readouterr().err
    assert "the dashboard and API could not start: cannot start the dashboard and API's " \
        "threads: this user's process limit is reached" in err, err
    assert "Traceback" not in err
    data = reg.read()
    assert data["daemon"] is None and data["services"] == {}
    assert "the dashboard and API could not start" in str((data["failure"] or {}).get("reason"))


REFUSING_THREADS = """
import os, sys, threading
start = threading.Thread.start
def refusing(self):  # as pthread_create at the user's process limit, while MARK exists
    target = getattr(self, "_target", None)
    if os.path.exists(MARK) and getattr(target, "__name__", "") == "process_request_thread":
        raise RuntimeError("can't start new thread")
    return start(self)
threading.Thread.start = refusing  # the forked daemon keeps it
from hippo_tasks.tasks.program import cli  # not entry's: its seed would be the daemon
cli()
"""


def up_wrapped(project: Path, wrapper: str, mark_name: str) -> Path:
    """A one-service stack brought up by `wrapper` (a script around `hd` that the forked
    daemon keeps), whose fault is on while the returned file exists."""
    import subprocess

    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    mark = project / mark_name
    up = subprocess.run([PY, "-c", wrapper.replace("MARK", repr(str(mark))),
                         "up", "--detach", "--project-root", str(project)], cwd=project,
                        capture_output=True, text=True, timeout=120,
                        env={**os.environ, "NO_COLOR": "1"})
    assert up.returncode == 0, up.stdout + up.stderr
    return mark


def test_a_request_at_the_process_limit_is_told_so_and_the_stack_runs_on(
        project: Path) -> None:
    """Other processes took the user's last processes while the stack ran: each
    connection's thread could not start, the daemon dropped it with a traceback in
    daemon.log, and every command said the daemon "does not answer ... If it is hung,
    run `hd down --force`", which ends a healthy stack (adv45 R/1). Each request is a
    503 that says so now, and the next one, with room again, is served."""
    mark = up_wrapped(project, REFUSING_THREADS, "no-threads")
    try:
        mark.touch()
        for _ in range(3):
            said = hd(project, "status")
            assert said.returncode == 1 and "cannot start a thread for this request: this " \
                "user's process limit is reached" in said.stderr, said.stdout + said.stderr
            assert "ask again (the stack runs on" in said.stderr and "--force" not in \
                said.stderr, said.stderr
        log = (project / ".hippodrome" / "daemon.log").read_text()
        assert "Traceback" not in log, log
        mark.unlink()
        assert hd(project, "status").returncode == 0
    finally:
        hd(project, "down")


AT_THE_LIMIT = {
    # the webhook recorder's thread, which the engine starts before any service
    "thread": """
import threading
start = threading.Thread.start
def refusing(self):
    if getattr(getattr(self, "_target", None), "__name__", "") == "_run":
        raise RuntimeError("can't start new thread")
    return start(self)
threading.Thread.start = refusing
""",
    # the orphan guard's fork: EAGAIN, a BlockingIOError (an OSError)
    "fork": """
import errno, subprocess
execute = subprocess.Popen._execute_child
def refusing(self, args, *rest):
    if "hippodrome-guard" in args:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
    return execute(self, args, *rest)
subprocess.Popen._execute_child = refusing
"""}


@pytest.mark.parametrize("refused", sorted(AT_THE_LIMIT))
def test_a_daemon_at_the_process_limit_says_so_exit_1(project: Path, refused: str) -> None:
    """At the user's process limit the daemon's start failed as "cannot write
    <project>: Resource temporarily unavailable. Make the folder writable", exit 10
    (the guard's fork), or as the limit with exit 2, a usage error's (a thread; adv45
    R/2, R/3). Both are the process limit, exit 1, and nothing is left running."""
    import subprocess

    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    # program's cli, not entry's: the daemon is then a fork of this patched process,
    # not the seed entry.py starts (a new interpreter, which the patch never reaches)
    wrapper = AT_THE_LIMIT[refused] + "from hippo_tasks.tasks.program import cli\ncli()\n"
    up = subprocess.run([PY, "-c", wrapper, "up", "--detach", "--project-root",
                         str(project)], cwd=project, capture_output=True, text=True,
                        timeout=120, env={**os.environ, "NO_COLOR": "1"})
    said = up.stdout + up.stderr
    assert up.returncode == 1 and "this user's process limit is reached" in up.stderr, said
    assert "writable" not in said and "Traceback" not in said, said
    assert not registry(project).get("daemon") and not registry(project).get("services"), \
        registry(project)
    assert hd(project, "status").returncode == 5  # no daemon: nothing left to end


OUT_OF_MEMORY_IN = {
    # `hd status` meeting MemoryError (a low `ulimit -v`): a traceback, exit 1
    "status": """
import hippo_tasks.daemon.client as client
def short(*_a, **_k):
    raise MemoryError
client.DaemonClient.status = short
""",
    # the forked daemon, importing its modules: the same traceback as its output
    "up": """
import os, sys
parent = os.getpid()
class Short:
    def find_spec(self, name, path=None, target=None):
        if name == "hippo_tasks.daemon.main" and os.getpid() != parent:
            raise MemoryError
        return None
sys.meta_path.insert(0, Short())
""",
    # `hd` itself, importing the machinery of its commands: ENOMEM listing a package's
    # folder (an OSError), a traceback (adv47 G/4)
    "hd itself": """
import sys
class Short:
    def find_spec(self, name, path=None, target=None):
        if name == "hippo_tasks.tasks.program":
            raise OSError(12, "Cannot allocate memory", "/site-packages/hippo_tasks/tasks")
        return None
sys.meta_path.insert(0, Short())
""",
    # a command loading an extension module as it runs: dlopen's mmap refused, an
    # ImportError, a traceback (adv47 G/4)
    "status loading": """
import hippo_tasks.daemon.client as client
def short(*_a, **_k):
    raise ImportError("/lib-dynload/math.cpython-311-x86_64-linux-gnu.so: failed to map "
                      "segment from shared object")
client.DaemonClient.status = short
"""}


@pytest.mark.parametrize("where", sorted(OUT_OF_MEMORY_IN))
def test_out_of_memory_is_a_sentence(project: Path, where: str) -> None:
    """`ulimit -v 20000`: `hd up --detach` said the daemon exited with code 70 and
    printed its MemoryError traceback, and `hd status` its own (adv45 R/6). A sentence
    that names the limit."""
    import subprocess

    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    if where != "up":
        hd(project, "up", "--detach", check=True, timeout=60)
    argv = ["up", "--detach"] if where == "up" else ["status"]
    try:
        # `up`: program's cli, not entry's, so that the daemon is a fork of this patched
        # process, not the seed entry.py starts (a new interpreter the patch never reaches)
        cli = "hippo_tasks.tasks.program" if where == "up" else "hippo_tasks.entry"
        ran = subprocess.run([PY, "-c", OUT_OF_MEMORY_IN[where] + f"from {cli} import cli\n"
                              "cli()\n", *argv, "--project-root", str(project)],
                             cwd=project, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "NO_COLOR": "1"})
        said = ran.stdout + ran.stderr
        assert ran.returncode != 0 and "out of memory: this process could not get the " \
            "memory it asked for (a low `ulimit -v`" in said, said
        assert "Traceback" not in said, said
    finally:
        hd(project, "down", timeout=60)


def test_up_detach_says_ready_only_once_the_daemon_answers(tmp_path: Path) -> None:
    """The registry said every service was ready, so `up --detach` said "stack ready"
    and printed the dashboard URL, though the daemon's API never started and the daemon
    was ending its stack. It now asks the daemon first, and says why it ended."""
    import subprocess

    from hippo_tasks.errors import StartCutShortError
    from hippo_tasks.registry.store import Registry
    from hippo_tasks.tasks.detached import _answers

    (dead,) = free_ports(1)
    reg = Registry(tmp_path)
    reason = "the dashboard and API could not start: the process limit is reached"
    reg.update(lambda d: d.__setitem__("failure", {
        "service": None, "kind": "Unreachable", "final": True,
        "reason": f"{reason}; the stack was stopped"}))
    log = tmp_path / ".hippodrome" / "daemon.log"
    log.write_text("hippodrome | the dashboard and API could not start: ...\n")
    ended = subprocess.Popen(["true"])
    try:
        with pytest.raises(StartCutShortError, match="the process limit is reached"):
            _answers(f"http://127.0.0.1:{dead}", ended, reg, log, 0)
    finally:
        ended.wait()


def test_an_ipv6_dashboard_host_gives_urls_that_reach_it(project: Path) -> None:
    """`HIPPODROME_DASHBOARD_HOST=::1` printed and served `http://::1:PORT` (no client
    takes it), and gave services `${dashboard_url}` on 127.0.0.1, where nothing listened."""
    assert [url_host(h) for h in ("", "0.0.0.0", "::", "::1", "[::1]", "localhost")] == [
        "127.0.0.1", "127.0.0.1", "[::1]", "[::1]", "[::1]", "localhost"]
    (dash,) = free_ports(1)
    out = project / "said.txt"
    write_stack(project, stack_header(dash) + (
        '[services.a]\ncommand = ["sh", "-c", "echo ${dashboard_url} > said.txt; '
        'exec sleep 600"]\n'))
    env = {"HIPPODROME_DASHBOARD_HOST": "::1"}
    up = hd(project, "up", "--detach", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        want = f"http://[::1]:{dash}"
        assert registry(project)["daemon"]["url"] == want
        assert f"dashboard {want}" in up.stdout + up.stderr, up.stdout + up.stderr
        assert out.read_text().strip() == want
        status = hd(project, "status", "--json", env=env)
        assert status.returncode == 0 and json.loads(status.stdout)["dashboard_url"] == want
    finally:
        hd(project, "down", env=env)


@pytest.mark.parametrize("spelling", ["127.1", "::ffff:127.0.0.1"])
def test_a_dashboard_host_in_another_spelling_is_the_address_it_spells(
        project: Path, spelling: str) -> None:
    """`HIPPODROME_DASHBOARD_HOST=127.1`: the daemon handed out http://127.1:PORT and then
    refused that Host itself: `hd status` and `hd down` got a 403. `::ffff:127.0.0.1`
    was kept as it was, and the webhook refused its own URL (`hd events.send`, 403)."""
    from hippo_tasks.model.plan import canonical_address

    assert [canonical_address(h) for h in ("127.1", "127.000.000.001", "0:0:0:0:0:0:0:1",
                                           "localhost", "::ffff:127.0.0.1")] == [
        "127.0.0.1", "127.0.0.1", "::1", "localhost", "127.0.0.1"]
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.a]\ncommand = ["sleep", "600"]\n')
    env = {"HIPPODROME_DASHBOARD_HOST": spelling}
    up = hd(project, "up", "--detach", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert registry(project)["daemon"]["url"] == f"http://127.0.0.1:{dash}"
        status = hd(project, "status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        sent = hd(project, "events.send", "--detail-type", "X.Y", env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
    finally:
        down = hd(project, "down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr


@pytest.mark.parametrize("detach", [True, False], ids=["detached", "foreground"])
def test_a_dashboard_host_that_is_no_text_a_socket_takes_is_a_sentence(
        project: Path, detach: bool) -> None:
    """A byte that is not UTF-8 in HIPPODROME_DASHBOARD_HOST (a script's mangled value)
    was `TypeError: encoding of hostname failed` in a traceback, exit 1, where an address
    it cannot bind is named with the variable, exit 2 (adv30 q/1)."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.a]\ncommand = ["sleep", "600"]\n')
    env = {"HIPPODROME_DASHBOARD_HOST": os.fsdecode(b"\xff")}
    try:
        up = hd(project, "up", *(["--detach"] if detach else []), env=env, timeout=60)
        said = up.stdout + up.stderr
        assert up.returncode == 2 and "Traceback" not in said, said
        assert f"cannot serve the dashboard on port {dash}: encoding of hostname failed " \
               "(HIPPODROME_DASHBOARD_HOST='\\xff': unset it, or give an address of this " \
               "machine)" in said, said
    finally:
        hd(project, "down", "--force", timeout=60)


def test_commands_reach_the_daemon_without_the_idna_codec(project: Path) -> None:
    """Under a low `ulimit -v`, importing the idna codec (unicodedata, stringprep) for the
    daemon's address failed, which the codec registry says as `LookupError: unknown
    encoding: idna`: a traceback from every command that talks to the daemon (adv48
    A/1). An ASCII address goes to the socket as bytes, so no codec is needed."""
    import subprocess

    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True, timeout=60)
    refuse = """
import sys
class NoIdna:
    def find_spec(self, name, path=None, target=None):
        if name in ("encodings.idna", "stringprep", "unicodedata"):
            raise MemoryError
        return None
sys.meta_path.insert(0, NoIdna())
"""
    try:
        ran = subprocess.run([PY, "-c", refuse + "from hippo_tasks.entry import cli\ncli()\n",
                              "status", "--project-root", str(project)],
                             cwd=project, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "NO_COLOR": "1"})
        said = ran.stdout + ran.stderr
        assert ran.returncode == 0 and "web" in ran.stdout, said
        assert "Traceback" not in said, said
    finally:
        hd(project, "down", timeout=60)


SHORT_OF_MEMORY_PER_REQUEST = """
import os, socket
makefile = socket.socket.makefile
def short(self, *args, **kwargs):  # as under a low `ulimit -v`, while MARK exists
    if os.path.exists(MARK):
        raise MemoryError
    return makefile(self, *args, **kwargs)
socket.socket.makefile = short  # the forked daemon keeps it
from hippo_tasks.tasks.program import cli  # not entry's: its seed would be the daemon
cli()
"""


def test_a_request_the_daemon_has_no_memory_for_is_told_so_and_the_stack_runs_on(
        project: Path) -> None:
    """Under a low `ulimit -v` the daemon could not make a request's socket file: each
    connection was dropped with two tracebacks in daemon.log, and every command called
    the daemon hung (adv48 A/9). Each request is a 503 that says so; with memory again,
    the next one is served."""
    mark = up_wrapped(project, SHORT_OF_MEMORY_PER_REQUEST, "no-memory")
    try:
        mark.touch()
        said = hd(project, "status")
        out = said.stdout + said.stderr
        assert said.returncode == 1 and "out of memory: this process could not get the " \
            "memory it asked for" in said.stderr, out
        assert "ask again" in said.stderr and "--force" not in out, out
        log = (project / ".hippodrome" / "daemon.log").read_text()
        assert "Traceback" not in log, log
        mark.unlink()
        assert hd(project, "status").returncode == 0
    finally:
        mark.unlink(missing_ok=True)
        hd(project, "down")
