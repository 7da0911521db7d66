"""hippo_platform.services.common: routing, error statuses, limits, state files, peer
client, watchdog: all over real loopback sockets, plus SIGTERM on a real process."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from service_process import ServiceStarter
from stackutil import free_ports

from hippo_platform.services.common import App, NotFound, Request, Response, created, shapes
from hippo_platform.services.common.client import JsonClient
from hippo_platform.services.common.errors import BadGateway, HttpError
from hippo_platform.services.common.router import Router
from hippo_platform.services.common.server import ServiceServer
from hippo_platform.services.common.state import (
    FolderLockedError,
    atomic_write_json,
    lock_folder,
    read_json,
)
from hippo_platform.services.common.watchdog import Watchdog


def demo_app() -> App:
    app = App("demo", max_body=1024)
    items: dict[str, dict[str, Any]] = {"a": {"id": "a"}}

    @app.router.get("/items")
    def list_items(_req: Request) -> dict[str, Any]:
        return {"results": list(items.values())}

    @app.router.post("/items")
    def add_item(req: Request) -> Response:
        item_id = shapes.require_str(req.json_object(), "id")
        items[item_id] = {"id": item_id}
        return created(items[item_id])

    @app.router.get("/items/{item_id}")
    def get_item(req: Request) -> dict[str, Any]:
        if req.params["item_id"] not in items:
            raise NotFound(f"item '{req.params['item_id']}' not found")
        return items[req.params["item_id"]]

    @app.router.get("/boom")
    def boom(_req: Request) -> None:
        raise RuntimeError("kaboom")

    return app


@contextmanager
def serving(app: App) -> Iterator[str]:
    server = ServiceServer(("127.0.0.1", 0), app)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    loop.start()
    try:
        yield server.base_url
    finally:
        server.shutdown()
        server.server_close()
        loop.join(5)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving(demo_app()) as base:
        yield base


def test_router_matches_literals_params_and_decodes() -> None:
    router = Router()
    router.add("GET", "/a/{x}/c", lambda r: r.params)
    router.add("GET", "/a/b/c", lambda r: "literal")
    handler, params = router.resolve("GET", "/a/caf%C3%A9%2F1/c/")
    assert params == {"x": "café/1"}
    with pytest.raises(ValueError):
        router.add("GET", "/a/x{y}", lambda r: None)


def test_healthz_names_the_service(url: str) -> None:
    assert requests.get(f"{url}/healthz").json() == {"status": "ok", "service": "demo"}


def test_routes_and_json_bodies(url: str) -> None:
    response = requests.post(f"{url}/items", json={"id": "b"})
    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    assert requests.get(f"{url}/items/b").json() == {"id": "b"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/items/nope", None, 404),
        ("GET", "/no/such/route", None, 404),
        ("DELETE", "/items/a", None, 405),
        ("POST", "/items", b"{not json", 400),
        ("POST", "/items", b"[1, 2]", 400),
        ("POST", "/items", b'{"id": 3}', 400),
        ("POST", "/items", b"\xff\xfe", 400),
        # NaN taken was written back as `NaN`, which no strict parser reads (adv28 k/6);
        # half a UTF-16 pair, escaped or encoded, could not be written back at all (k/3)
        ("POST", "/items", b'{"id": "n1", "v": NaN}', 400),
        ("POST", "/items", b'{"id": "n2", "v": -Infinity}', 400),
        ("POST", "/items", b'{"id": "a\\ud800"}', 400),
        ("POST", "/items", b'{"id": "a\xed\xa0\x80"}', 400),
    ],
)
def test_errors_are_json_with_the_right_status(
    url: str, method: str, path: str, body: bytes | None, status: int
) -> None:
    response = requests.request(method, url + path, data=body)
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)


def test_405_lists_allowed_methods(url: str) -> None:
    response = requests.put(f"{url}/items")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"


def test_unexpected_exception_is_a_json_500_and_the_server_goes_on(url: str) -> None:
    response = requests.get(f"{url}/boom")
    assert response.status_code == 500
    assert response.json()["type"] == "RuntimeError"
    assert requests.get(f"{url}/healthz").status_code == 200


def test_oversized_body_is_413_and_the_connection_closes(url: str) -> None:
    response = requests.post(f"{url}/items", data=b"x" * 5000)
    assert response.status_code == 413
    assert response.headers.get("Connection") == "close"
    assert requests.get(f"{url}/healthz").status_code == 200


def test_protocol_errors_from_http_server_are_json_too(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        chunks = []
        while chunk := sock.recv(4096):  # the server closes after a protocol error
            chunks.append(chunk)
        reply = b"".join(chunks).decode()
    assert reply.startswith("HTTP/1.") and " 400 " in reply.splitlines()[0]
    assert json.loads(reply.split("\r\n\r\n", 1)[1])["error"]
    assert requests.request("BREW", f"{url}/items").status_code == 501


def _raw_exchange(url: str, request: bytes) -> str:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):  # each of these heads closes the connection
            chunks.append(chunk)
    return b"".join(chunks).decode("latin-1")


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /items/a HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101))
     + b"\r\n", 431),
    (b"GET /items/a HTTP/1.1\r\nX-Long: " + b"v" * 70000 + b"\r\n\r\n", 431),
    (b"GET /items/a HTTP/1.1\r\nX-A: v\r\n folded\r\n\r\n", 400),
    (b"GET /items/a HTTP/1.1\r\nX-A : v\r\n\r\n", 400),
    (b"GET /items/a HTTP/2.0\r\n\r\n", 505),
    (b"GET /items/a HTTP/x.y\r\n\r\n", 400),
    (b"POST /items\r\n\r\n", 400),
], ids=["line-414", "headers-431", "header-line-431", "folding", "space-before-colon",
        "http2", "bad-version", "0.9-post"])
def test_heads_the_loop_refuses_get_a_json_status_and_a_close(
        url: str, request_bytes: bytes, status: int) -> None:
    """The loop under the services is hippo_contract's, not http.server's: the heads
    http.server refused still get its status, as JSON, on a closed connection, and the
    server goes on."""
    reply = _raw_exchange(url, request_bytes)
    head, _, body = reply.partition("\r\n\r\n")
    assert head.splitlines()[0].split()[1] == str(status), head
    assert "Connection: close" in head
    assert json.loads(body)["error"]
    assert requests.get(f"{url}/items/a").json() == {"id": "a"}


def test_expect_100_continue_gets_the_body_sent_and_answered(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"id": "c100"}).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        sock.sendall(body)
        answer = sock.recv(65536)
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 201 Created", b"HTTP/1.1 200 OK"), answer


SERVICE_IMPORTS = """
import importlib, os, sys
import hippo_platform.services as services
folder = services.__path__[0]
for name in sorted(os.listdir(folder)):  # not pkgutil: its listing imports inspect
    if name != "moto_quiet" and os.path.isfile(os.path.join(folder, name, "__main__.py")):
        importlib.import_module(f"hippo_platform.services.{name}.__main__")
        print("imported", name)
print(sorted(m for m in ("http.server", "http.client", "email", "mimetypes", "html", "shutil",
                         "dataclasses", "inspect") if m in sys.modules))
"""


def test_no_service_loads_what_it_does_not_use() -> None:
    """http.server, with its file handler's mimetypes, html and shutil, was 1.3 MB of
    every service, http.client with the email package ~1.5 MB more, and dataclasses
    with inspect (ast, dis, tokenize) 1.3 MB more; a service that imports one of them
    again fails here."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", SERVICE_IMPORTS], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    *imported, loaded = out.stdout.strip().splitlines()
    assert len(imported) >= 15, imported  # every bundled service but moto
    assert loaded == "[]"


def test_keep_alive_serves_several_requests_on_one_connection(url: str) -> None:
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/items/a")
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"id": "a"}
        conn.request("GET", "/items/zzz")
        assert conn.getresponse().status == 404
    finally:
        conn.close()


def test_atomic_writes_race_without_losing_the_file(tmp_path: Path) -> None:
    target = tmp_path / "state" / "s.json"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(40):
                atomic_write_json(target, {"writer": n, "i": i}, fsync=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert read_json(target)["i"] == 39
    assert [p.name for p in target.parent.iterdir()] == ["s.json"]  # no temp files left
    assert read_json(tmp_path / "missing.json", default={"d": 1}) == {"d": 1}


def test_a_state_folder_has_one_owner(tmp_path: Path) -> None:
    handle = lock_folder(tmp_path)
    with pytest.raises(FolderLockedError):
        lock_folder(tmp_path)
    handle.close()
    lock_folder(tmp_path).close()


def test_client_passes_peer_errors_through_and_names_a_dead_peer(url: str) -> None:
    client = JsonClient(url, peer="demo")
    assert client.call("GET", "/items/a") == {"id": "a"}
    with pytest.raises(HttpError) as missing:
        client.call("GET", "/items/zzz")
    assert missing.value.status == 404
    with pytest.raises(BadGateway) as boom:
        client.call("GET", "/boom")
    assert "answered 500" in boom.value.message
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"  # nobody listens there
    with pytest.raises(BadGateway) as down:
        JsonClient(dead, peer="ghost", timeout=1).call("GET", "/x")
    assert down.value.status == 502 and dead in down.value.message


def test_watchdog_fires_on_a_server_that_accepts_but_never_answers() -> None:
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)  # connections succeed, nothing ever answers: the reference's hang
        fired = threading.Event()
        port = mute.getsockname()[1]
        dog = Watchdog(
            f"http://127.0.0.1:{port}/healthz",
            interval=0.05,
            timeout=0.2,
            failures=2,
            on_fail=fired.set,
        ).start()
        assert fired.wait(5)
        assert dog.misses == 2


def test_watchdog_stays_quiet_while_healthy(url: str) -> None:
    fired = threading.Event()
    dog = Watchdog(f"{url}/healthz", interval=0.05, timeout=1, on_fail=fired.set).start()
    time.sleep(0.4)
    dog.stop()
    assert not fired.is_set() and dog.misses == 0


def test_real_process_logs_requests_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    with ServiceStarter(tmp_path) as start:
        svc = start.start("fake_cognito", args=["--max-body-bytes", "64"])
        assert requests.get(f"{svc.base_url}/nope").status_code == 404
        assert requests.post(f"{svc.base_url}/validate", data=b"x" * 100).status_code == 413
        assert svc.terminate() == 0
        out = svc.output()
    assert "GET /nope 404 " in out
    assert "POST /validate 413 " in out
    assert out.rstrip().endswith("fake_cognito stopped")


def test_json_the_services_could_not_write_back_is_refused_at_the_reader() -> None:
    """979 levels were read, then json.dumps (fake_cell's journal, an answer) failed on
    them: a 500 with a traceback (adv29 o/8). 512 levels, as the daemon takes, pass."""
    from hippo_platform.services.common.errors import HttpError
    from hippo_platform.services.common.messages import MAX_DEPTH, Request

    req = Request.__new__(Request)
    req.body = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert json.dumps(req.json()).count("[") == MAX_DEPTH
    for depth in (MAX_DEPTH + 1, 979, 980):
        req.body = b'{"d": ' + b"[" * depth + b"]" * depth + b"}"
        with pytest.raises(HttpError) as info:
            req.json()
        assert info.value.status == 400 and "nested too deeply (more than 512" in str(
            info.value), str(info.value)


def test_deeply_nested_json_is_a_400_not_a_500() -> None:
    from hippo_platform.services.common.errors import HttpError
    from hippo_platform.services.common.messages import Request

    req = Request.__new__(Request)
    req.body = b"[" * 100_000 + b"]" * 100_000
    try:
        req.json()
    except HttpError as exc:
        assert exc.status == 400 and "nested too deeply" in str(exc)
    else:
        raise AssertionError("no error for 100,000 nested lists")


def test_successful_health_probes_are_not_logged(tmp_path: Path) -> None:
    """Quiet by default: the orchestrator's probes every few seconds leave no lines."""
    with ServiceStarter(tmp_path) as start:
        svc = start.start("fake_cognito")
        for _ in range(5):
            assert requests.get(f"{svc.base_url}/healthz?probe=1").status_code == 200
        assert requests.get(f"{svc.base_url}/nope").status_code == 404
        assert svc.terminate() == 0
        out = svc.output()
    assert "/healthz" not in out
    assert "GET /nope 404 " in out


def test_what_counts_as_a_probe() -> None:
    """(A failing probe is still logged: test_fake_cell's hung-watchdog test sees its 503.)"""
    from hippo_platform.services.common.app import is_probe

    assert is_probe("GET", "/healthz") and is_probe("HEAD", "/healthz?x=1")
    assert not is_probe("POST", "/healthz") and not is_probe("GET", "/healthz/deep")


def test_a_peer_closing_an_idle_keep_alive_socket_costs_no_error() -> None:
    """JsonClient on hippo_contract's connection: two calls share one connection; after
    the peer closed it idle (0.3 s), the next call is sent once more on a fresh one and
    succeeds, and the peer saw each call exactly once."""
    from scripted_http import serving

    with serving([(200, {"n": 1}, 0.0), (200, {"n": 2}, 0.0), (200, {"n": 3}, 0.0)]) as peer:
        client = JsonClient(peer.url, peer="scripted", timeout=5)
        assert client.call("POST", "/a", body={}) == {"n": 1}
        assert client.call("POST", "/a", body={}) == {"n": 2}
        assert len(peer.connections) == 1, "the second call reused the connection"
        deadline = time.monotonic() + 10
        while peer.closed < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert peer.closed == 1
        assert client.call("POST", "/a", body={}) == {"n": 3}
        assert len(peer.seen) == 3 and len(peer.connections) == 2
        client.close()
