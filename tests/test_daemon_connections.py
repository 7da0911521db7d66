"""The API's connections never take the descriptors supervision needs: a local program
holding connections open made the daemon unreachable (`hd status` exit 6, advising
`down --force`) and a service that crashed meanwhile could not be started again (`Too
many open files`) and ended failed. A real daemon under a low descriptor limit, a
client holding many connections, a real kill -9."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from stackutil import HD_CLI, free_ports, registry, stack_header, wait_for, write_stack

from hippo_tasks.daemon.connections import FEWEST, MOST, allowed

LIMIT = 100
SERVICES = 10


def low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def hd_cli(root: Path, *args: str, limit: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HD_CLI, *args], cwd=root, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "NO_COLOR": "1"},
                          preexec_fn=low_limit if limit else None)


def up_under_the_limit(project: Path) -> int:
    """SERVICES sleepers up under the LIMIT descriptors; the daemon's port."""
    (port,) = free_ports(1)
    write_stack(project, stack_header(port) + "".join(
        f'[services.s{i}]\ncommand = ["sleep", "3600"]\n' for i in range(SERVICES)))
    up = hd_cli(project, "up", "--detach", limit=True)
    assert up.returncode == 0, up.stdout + up.stderr
    return port


def test_how_many_connections_the_limit_leaves() -> None:
    assert allowed(10, 512) == (512 - 64 - 60) // 2
    assert allowed(40, 1 << 20) == MOST
    assert allowed(20, 80) == FEWEST  # `hd` must still get in
    assert allowed(1, resource.RLIM_INFINITY) == MOST


def test_held_connections_leave_the_api_and_restarts_working(project: Path) -> None:
    port = up_under_the_limit(project)
    held: list[socket.socket] = []
    try:
        for _ in range(2 * LIMIT):  # more than the daemon has descriptors
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        status = hd_cli(project, "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        victim = registry(project)["services"]["s4"]["pid"]
        os.kill(victim, signal.SIGKILL)

        def restarted() -> bool:
            answer = hd_cli(project, "status", "--json")
            rows = {r["name"]: r for r in json.loads(answer.stdout)["services"]} \
                if answer.returncode == 0 else {}
            row = rows.get("s4", {})
            assert row.get("state") != "failed", row
            return row.get("state") == "running" and row.get("pid") != victim

        wait_for(restarted, timeout=30, every=0.5, what="s4 restarted")
    finally:
        for sock in held:
            sock.close()
    daemon_log = (project / ".hippodrome" / "daemon.log").read_text()
    assert "the API is at its" in daemon_log, daemon_log[-2000:]
    assert "Too many open files" not in daemon_log, daemon_log[-2000:]
    down = hd_cli(project, "down")
    assert down.returncode == 0, down.stdout + down.stderr


def test_streams_at_the_cap_give_way_to_a_command(project: Path) -> None:
    """Event streams (dashboard tabs, a script) held to the cap locked out `hd status`
    and `hd down`: a 503, and only `--force` stopped the stack."""
    port = up_under_the_limit(project)
    streams: list[socket.socket] = []
    try:
        for _ in range(FEWEST + 4):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
                         .encode())
            sock.recv(1024)  # the stream's head and first event: it is a stream now
            streams.append(sock)
        status = hd_cli(project, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        down = hd_cli(project, "down")
        assert down.returncode == 0, down.stdout + down.stderr
    finally:
        for sock in streams:
            sock.close()


def test_requests_busy_to_the_cap_leave_status_and_down_a_way_in(project: Path) -> None:
    """Every connection busy with a request (an agent's wait_ready calls, restarts that
    wait; here bodies sent half way, which hold a request as long) answered `hd down`
    503, exit 1, and the stack kept running. status and down get in past the cap;
    anything else there is a 503 that names `hd down --force`."""
    port = up_under_the_limit(project)
    cap = allowed(SERVICES, LIMIT)
    busy: list[socket.socket] = []
    try:
        for _ in range(cap):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"POST /api/services/s0/restart HTTP/1.1\r\nHost: 127.0.0.1:{port}"
                         "\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"
                         .encode())
            busy.append(sock)
        # Each head read (its connection busy, no longer "waiting for a request" that
        # may be closed to make room): a loaded machine takes a moment for 4 threads.
        time.sleep(1.0)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        busy.append(extra)
        extra.sendall(f"GET /api/services/s1/logs HTTP/1.1\r\nHost: 127.0.0.1:{port}"
                      "\r\n\r\n".encode())
        refused = extra.recv(4096).decode()
        assert refused.startswith("HTTP/1.1 503") and "hd down --force" in refused, refused
        # a health check's HEAD gets in as its GET does (adv27 j/6)
        head = socket.create_connection(("127.0.0.1", port), timeout=5)
        busy.append(head)
        head.sendall(f"HEAD /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
                     .encode())
        answer = head.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 200"), answer
        status = hd_cli(project, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        down = hd_cli(project, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert "stack stopped" in down.stdout, down.stdout
    finally:
        for sock in busy:
            sock.close()


def test_a_request_under_way_at_shutdown_gets_its_answer(project: Path) -> None:
    """The API stopped and the process ended under the requests still being answered:
    an MCP call in flight at `hd down` got an empty reply, where the API's own answered.
    Here the request's body is still coming when the API stops accepting: it is read,
    and answered, before the daemon exits."""
    port = up_under_the_limit(project)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        body = b'{"cascade": false}'
        sock.sendall(f"POST /api/services/s0/restart HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                     .encode() + body[:5])
        time.sleep(0.3)  # its head is read: the request is under way
        down = subprocess.Popen([*HD_CLI, "down"], cwd=project, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert down.stdout is not None
        said = down.stdout.readline()  # the shutdown was asked for and accepted
        assert "stopping the stack" in said, said
        time.sleep(0.5)  # its sleepers are stopped, and the API is stopping
        sock.sendall(body[5:])
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 "), answer
        out, _ = down.communicate(timeout=60)
        assert down.returncode == 0, out
    finally:
        sock.close()


def test_half_heads_closed_to_make_room_are_never_acted_on(project: Path) -> None:
    """Connections holding a stop's head sent half way, past the cap: each closed to
    make room had its request carried out (its end taken for the head's): 400 such heads
    restarted a service 8 times (adv51 H/1). Closed at the cap, or by their client, none
    is acted on."""
    port = up_under_the_limit(project)
    cap = allowed(SERVICES, LIMIT)
    before = registry(project)["services"]["s3"]["pid"]
    held: list[socket.socket] = []
    try:
        for _round in range(3):
            for _ in range(cap):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(f"POST /api/services/s3/stop HTTP/1.1\r\nHost: 127.0.0.1:{port}"
                             "\r\nContent-Type: application/json\r\n".encode())
                held.append(sock)
            time.sleep(1.5)  # stalled heads, the first to be closed for the next round's
        closed = sum(1 for sock in held[:2 * cap] if sock.recv(1024) == b"")
        assert closed >= cap, f"only {closed} of the first rounds' heads were closed"
    finally:
        for sock in held:
            sock.close()
    status = hd_cli(project, "status", "--json")
    rows = {r["name"]: r for r in json.loads(status.stdout)["services"]}
    assert rows["s3"]["state"] == "running" and rows["s3"]["pid"] == before, rows["s3"]
    log = (project / ".logs" / "latest" / "s3.log").read_text()
    assert "stop requested" not in log, log
    assert hd_cli(project, "down").returncode == 0


def test_every_whole_request_at_the_cap_gets_an_answer(project: Path) -> None:
    """Whole requests arriving together past the cap: one whose thread had not yet read
    or parsed its head counted as idle and was closed to make room, with no answer at
    all (1-2 of 300, adv51 H/4). Each is sent as its connection opens, and gets its
    answer or the cap's 503."""
    port = up_under_the_limit(project)
    # A head of 90 long fields: each takes its thread a moment to read and parse.
    fields = "".join(f"X-Pad-{i}: {'p' * 600}\r\n" for i in range(90))
    request = (f"GET /api/services/s1/logs?lines=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"{fields}Connection: close\r\n\r\n").encode()
    try:
        for _ in range(10):
            socks = []
            for _ in range(40):
                sock = socket.create_connection(("127.0.0.1", port), timeout=20)
                sock.sendall(request)
                socks.append(sock)
            firsts = []
            for sock in socks:
                out = b""
                with contextlib.suppress(ConnectionResetError):
                    while chunk := sock.recv(65536):
                        out += chunk
                sock.close()
                firsts.append(out.split(b"\r\n", 1)[0])
            assert all(f in (b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Service Unavailable")
                       for f in firsts), firsts
    finally:
        assert hd_cli(project, "down").returncode == 0


def test_half_heads_replaced_as_they_age_leave_status_and_down_a_way_in(
        project: Path) -> None:
    """A program keeping the cap and the places past it full of half-sent heads, each
    replaced before it was a second old: heads that young were spared as maybe being
    read, so `hd status`, `hd down` and /healthz were all answered 503 for as long as it
    ran (adv52 J/1). A head that has not come whole is no request: closed to make room."""
    port = up_under_the_limit(project)
    cap = allowed(SERVICES, LIMIT)
    stop = threading.Event()
    half = f"POST /api/services/s1/restart HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()

    def roll() -> None:
        held: list[socket.socket] = []
        try:
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    sock.sendall(half[:30])
                    held.append(sock)
                while len(held) > 2 * (cap + 4):
                    held.pop(0).close()
                time.sleep(0.6 / (2 * (cap + 4)))
        finally:
            for sock in held:
                sock.close()

    rollers = [threading.Thread(target=roll) for _ in range(2)]
    for t in rollers:
        t.start()
    try:
        time.sleep(1.0)
        for _ in range(3):
            status = hd_cli(project, "status")
            assert status.returncode == 0, status.stdout + status.stderr
        down = hd_cli(project, "down")
        assert down.returncode == 0 and "stack stopped" in down.stdout, \
            down.stdout + down.stderr
    finally:
        stop.set()
        for t in rollers:
            t.join(10)
        hd_cli(project, "down")


def test_a_timestamped_follow_rides_out_the_cap(project: Path) -> None:
    """`hd logs -f --timestamps` ended, exit 1, on the first 503 TooManyConnections of a
    burst, whose sentence said to try again in a moment (adv52 J/3): it asks again, and
    follows on once the connections are free, until `hd down`."""
    port = up_under_the_limit(project)
    cap = allowed(SERVICES, LIMIT)
    follow = subprocess.Popen([*HD_CLI, "logs", "-f", "--timestamps", "-s", "s0"],
                              cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={**os.environ, "NO_COLOR": "1"})
    busy: list[socket.socket] = []
    try:
        time.sleep(1.0)
        for _ in range(cap + 4):  # the cap and the places kept past it: a body half sent
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"POST /api/services/s0/restart HTTP/1.1\r\nHost: 127.0.0.1:{port}"
                         "\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"
                         .encode())
            busy.append(sock)
        time.sleep(2.0)  # its queries meanwhile: each a 503
        assert follow.poll() is None, follow.communicate()[0]
    finally:
        for sock in busy:
            sock.close()
    try:
        time.sleep(1.0)
        assert follow.poll() is None, follow.communicate()[0]
    finally:
        down = hd_cli(project, "down")
        out, _ = follow.communicate(timeout=30)
    assert down.returncode == 0, down.stdout + down.stderr
    assert follow.returncode == 0 and "the daemon has stopped" in out, out


def test_up_warns_of_an_open_files_limit_too_low_for_its_stack(project: Path) -> None:
    """Under `ulimit -n 16` a stack came up without a word, and every restart then failed
    with `Too many open files` (adv52 J/4): `up` says so first, naming the limit and
    what the stack needs, and the stack still starts."""
    (port,) = free_ports(1)
    write_stack(project, stack_header(port) + "".join(
        f'[services.s{i}]\ncommand = ["sleep", "3600"]\n' for i in range(2)))

    def tiny() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24))

    up = subprocess.run([*HD_CLI, "up", "--detach"], cwd=project, capture_output=True,
                        text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
                        preexec_fn=tiny)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "warning: the open-files limit (ulimit -n 24) is below the 92 descriptors " \
               "this stack of 2 service(s) needs" in up.stdout + up.stderr, up.stderr
        roomy = hd_cli(project, "up", "--detach")  # the usual limit: not a word of it
        assert "open-files limit" not in roomy.stdout + roomy.stderr
    finally:
        assert hd_cli(project, "down").returncode == 0
