"""A start or restart sent before a stop yields to it, whichever reaches the daemon's
code first.

Each connection is read by a thread of its own, so with the cores busy a restart sent a
few ms before a stop reached the event loop after it, started the service again, and
the stop had answered `stopped` (adv34 w/4: 5 runs in 8 under a CPU burner). Each
request now carries when the kernel received its first bytes; these tests hold a
request's body back, so that its head (sent first) reaches the kernel before a stop
from `hd stop` and its action reaches the loop after it: the order the race made.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcputil import tool_call
from stackutil import free_ports, hd, registry, stack_header, toy_service, write_stack


def held_back(port: int, path: str) -> socket.socket:
    """A POST to `path` whose head has reached the daemon and whose body has not."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: "
                 "application/json\r\nContent-Length: 2\r\n\r\n".encode())
    return sock


def finish(sock: socket.socket) -> dict[str, Any]:
    """Send the body and read the JSON answer."""
    with sock:
        sock.sendall(b"{}")
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
            head, sep, body = out.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if sep and length and len(body) >= length[0]:
                break
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    answer: dict[str, Any] = json.loads(body)
    return answer


def rows(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in answer["services"]}


@pytest.fixture
def stack(project: Path) -> Iterator[tuple[Path, int]]:
    dash, db, web = free_ports(3)
    write_stack(project, stack_header(dash) + toy_service("db", db)
                + toy_service("web", web, depends_on=["db"]))
    hd(project, "up", "--detach", timeout=60, check=True)
    yield project, dash
    hd(project, "down", timeout=60)


@pytest.mark.parametrize("path", ["/api/services/web/restart", "/api/stack/restart"])
def test_a_restart_sent_before_a_stop_leaves_the_service_stopped(
        stack: tuple[Path, int], path: str) -> None:
    project, dash = stack
    restart = held_back(dash, path)
    stop = hd(project, "stop", "-s", "web", timeout=60)
    assert stop.returncode == 0 and "web: stopped" in stop.stdout, stop
    answer = finish(restart)
    web = rows(answer)["web"]
    assert web["state"] == "stopped", answer
    assert answer["ok"] is False, answer
    if path.startswith("/api/services/"):
        assert "a stop of it was sent" in web["not_restarted"], web
        assert "the later request wins" in web["not_restarted"], web
    assert registry(project)["services"]["web"]["state"] == "stopped"
    if path == "/api/stack/restart":  # the rest of the stack was restarted
        assert rows(answer)["db"]["state"] == "running", answer


def test_a_start_sent_before_a_stop_does_not_start_it(stack: tuple[Path, int]) -> None:
    project, dash = stack
    hd(project, "stop", "-s", "web", timeout=60, check=True)
    start = held_back(dash, "/api/services/web/start")
    hd(project, "stop", "-s", "web", timeout=60, check=True)
    answer = finish(start)
    assert rows(answer)["web"]["state"] == "stopped" and answer["ok"] is False, answer
    assert registry(project)["services"]["web"]["state"] == "stopped"


def test_a_restart_sent_after_a_stop_restarts_it(stack: tuple[Path, int]) -> None:
    """The rule goes by when each was sent: sent after the stop, a restart is the later
    request, and wins."""
    project, dash = stack
    hd(project, "stop", "-s", "web", timeout=60, check=True)
    restart = held_back(dash, "/api/services/web/restart")
    answer = finish(restart)
    assert rows(answer)["web"]["state"] == "running" and answer["ok"] is True, answer


def _mcp_call(dash: int, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool call through the daemon's `/mcp` route: the one way in that is not stamped."""
    reply = tool_call(f"http://127.0.0.1:{dash}", {"name": tool, "arguments": arguments})
    result: dict[str, Any] = reply["result"]["structuredContent"]
    return result


@pytest.mark.parametrize("way", ["http", "mcp"])
def test_stop_restart_stop_ends_stopped(project: Path, way: str) -> None:
    """A stop that takes 2 s (the service ignores SIGTERM), a restart while it runs (it
    waits for that stop), a second stop while the restart waits: the second stop said
    `stopped`, then the restart started the service anyway, which ended running (adv35
    y/1). A start in its place ended stopped, as the README says. Over HTTP the stamps
    order them; through `/mcp`, unstamped, a stop asked while the restart waited wins."""
    import subprocess
    import threading

    from stackutil import HD_CLI, wait_for

    dash, web = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", web, "--ignore-term",
                                                          stop_timeout=2))
    hd(project, "up", "--detach", timeout=60, check=True)
    try:
        if way == "mcp":
            _mcp_call(dash, "status")  # the SDK loads on the first call: not in the race
        first = subprocess.Popen([*HD_CLI, "stop", "-s", "web"], cwd=project, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for(lambda: registry(project)["services"]["web"]["state"] == "stopping", 30,
                 every=0.02, what="web stopping")
        box: list[dict[str, Any]] = []
        if way == "http":
            restart = held_back(dash, "/api/services/web/restart")
            waiter = threading.Thread(target=lambda: box.append(finish(restart)))
        else:
            waiter = threading.Thread(target=lambda: box.append(
                _mcp_call(dash, "restart", service="web")))
        waiter.start()
        if way == "mcp":  # its wait shows nowhere: give it time to reach the daemon
            time.sleep(0.5)
        # The restart is waiting for the first stop, which lasts 2 s: stop again now.
        second = hd(project, "stop", "-s", "web", timeout=60)
        waiter.join(60)
        first.communicate(timeout=60)
        assert second.returncode == 0 and "web: stopped" in second.stdout, second
        answer = box[0]
        assert answer["ok"] is False and rows(answer)["web"]["state"] == "stopped", answer
        assert "the later request wins" in rows(answer)["web"]["not_restarted"], answer
        assert registry(project)["services"]["web"]["state"] == "stopped"
    finally:
        hd(project, "down", timeout=60)
