"""The daemon's JSON API against a real daemon: routes, errors, and bad input."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stackutil import free_ports, hd, stack_header, toy_service, write_stack


@pytest.fixture
def daemon(project: Path) -> Iterator[str]:
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", a, "--say", "<script>x</script>"))
    hd(project, "up", "--detach", check=True)
    yield f"http://127.0.0.1:{dash}"
    hd(project, "down")


def call(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthz_status_logs(daemon: str) -> None:
    assert call(daemon + "/healthz") == (200, {"status": "ok"})
    code, status = call(daemon + "/api/status")
    assert code == 200 and status["services"][0]["name"] == "web"
    code, logs = call(daemon + "/api/services/web/logs?lines=50")
    assert code == 200 and any(ln["line"] == "<script>x</script>" for ln in logs["lines"])
    last = logs["last_seq"]
    code, newer = call(daemon + f"/api/services/web/logs?after={last}")
    assert code == 200 and newer["lines"] == []


def test_errors_are_json_with_the_right_status(daemon: str) -> None:
    code, body = call(daemon + "/api/services/nope/logs")
    assert code == 404 and "unknown service 'nope'" in body["error"]
    code, body = call(daemon + "/api/services/..%2F..%2Fetc%2Fpasswd/logs")
    assert code == 404
    code, body = call(daemon + "/api/services/web/logs?lines=abc")
    assert code == 400 and "'lines' must be an integer" in body["error"]
    code, body = call(daemon + "/api/status", method="POST", body=b"{}")
    assert code == 405 and body["allowed"] == ["GET"]
    code, body = call(daemon + "/api/services/web/restart", method="POST", body=b"{not json")
    assert code == 400 and "invalid JSON" in body["error"]
    code, body = call(daemon + "/no/such/route")
    assert code == 404


def test_garbage_on_the_socket_does_not_stop_the_server(daemon: str) -> None:
    host, port = daemon.rsplit(":", 1)
    for junk in (b"\x00\xff\xfe garbage\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as s:
            s.sendall(junk)
            s.recv(1024)
    assert call(daemon + "/healthz")[0] == 200


def test_service_actions_over_http(daemon: str) -> None:
    _, before = call(daemon + "/api/status")
    code, body = call(daemon + "/api/services/web/restart", method="POST")
    assert code == 200 and body["services"][0]["state"] == "running"
    assert body["services"][0]["pid"] != before["services"][0]["pid"]
    code, body = call(daemon + "/api/stack/stop", method="POST")
    assert code == 200 and body["services"][0]["state"] == "stopped"
    code, body = call(daemon + "/api/stack/start", method="POST")
    assert code == 200 and body["services"][0]["state"] == "running"


def test_other_origins_and_rebound_hosts_are_refused(daemon: str) -> None:
    port = daemon.rsplit(":", 1)[1]
    req = urllib.request.Request(daemon + "/api/stack/stop", data=b"", method="POST",
                                 headers={"Origin": "http://evil.example"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 403 and "cross-origin" in json.loads(info.value.read())["error"]
    req = urllib.request.Request(daemon + "/api/status",
                                 headers={"Host": f"evil.example:{port}"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 403
    # The page's own requests, and localhost, still work; so does the webhook from anywhere.
    same = urllib.request.Request(daemon + "/api/services/web/restart", data=b"",
                                  method="POST", headers={"Origin": daemon})
    with urllib.request.urlopen(same, timeout=30) as resp:
        assert resp.status == 200
    assert call(f"http://localhost:{port}/healthz")[0] == 200
    hook = urllib.request.Request(daemon + "/webhook/eventbridge", method="POST",
                                  data=b'{"detail-type": "X.Y"}',
                                  headers={"Host": "abc.trycloudflare.com",
                                           "Content-Type": "application/json"})
    with urllib.request.urlopen(hook, timeout=10) as resp:
        assert resp.status == 200
    _, status = call(daemon + "/api/status")
    assert status["services"][0]["state"] == "running"
