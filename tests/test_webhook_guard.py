"""Without a token, no web page can make the webhook forward an event (DESIGN section 4).

A real daemon with no webhook token routes `Test.*` to a real toy consumer that records
every body it receives. Requests the way a browser could send them — another site's
Origin, a rebound Host name, the body types a page may post anywhere without a
preflight — must be refused with 403/415 and must never reach the consumer; the
daemon's delivery log proves each attempt did reach the daemon, so a browser that
quietly dropped the request cannot make these tests pass. Then the same in real
headless Chromium: a page served from another loopback origin posts with fetch() and
forms, and a page whose hostname "rebinds" to 127.0.0.1 tries it same-origin.
"""

from __future__ import annotations

import functools
import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from chromium import launched
from rawhttp import json_request
from stackutil import PY, TOYS, free_ports, hd, stack_header, wait_for, write_stack

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

if TYPE_CHECKING:
    from playwright.sync_api import Browser

SINK = str(TOYS / "event_sink.py")
HOOK = "/webhook/eventbridge"
REBOUND = "rebind.test"
CHROMIUM_ARGS = (  # DNS rebinding, without DNS: this name resolves to loopback.
    f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1",
    # Chromium's own Local Network Access check would block the rebound page before the
    # daemon sees it; other browsers (or a user who granted the permission) let it
    # through, so the daemon must refuse.
    "--disable-features=LocalNetworkAccessChecks")


@dataclass
class Stack:
    root: Path
    dash: int
    target: int

    def received(self) -> list[dict[str, Any]]:
        path = self.root / "received.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def deliveries(self) -> list[dict[str, Any]]:
        status, body = request(self.dash, None, method="GET", path="/api/webhook/deliveries")
        assert status == 200
        found: list[dict[str, Any]] = body["deliveries"]
        return found

    def refused(self) -> tuple[int, list[dict[str, Any]]]:
        """Requests refused before their event was read: (count, the last ones)."""
        status, body = request(self.dash, None, method="GET", path="/api/webhook/deliveries")
        assert status == 200
        return body["refused"]["count"], body["refused"]["last"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("guard") / "proj"
    dash, target = free_ports(2)
    argv = [PY, SINK, "--port", str(target), "--record", str(root / "received.jsonl")]
    write_stack(root, stack_header(dash)
                + f"[services.target]\ncommand = {json.dumps(argv)}\nport = {target}\n\n"
                + '[[routes]]\ndetail_type_prefix = "Test."\nservice = "target"\n'
                  'path = "/events"\n')
    try:
        hd(root, "up", "--detach", check=True, env={"HIPPODROME_WEBHOOK_TOKEN": ""})
        yield Stack(root, dash, target)
    finally:
        hd(root, "down")
        force_down(Registry(root))


request = functools.partial(json_request, content_type=None)  # headers exactly as given


def event(detail_type: str) -> bytes:
    return json.dumps({"detail-type": detail_type, "detail": {}}).encode()


JSON = {"Content-Type": "application/json"}


# ---- plain requests against the real daemon --------------------------------------------

def test_loopback_names_the_own_origin_and_json_are_forwarded(stack: Stack) -> None:
    before = len(stack.received())
    allowed = [{}, {"Host": "127.0.0.1"}, {"Host": f"localhost:{stack.dash}"},
               {"Host": f"LocalHost:{stack.dash}"}, {"Host": f"[::1]:{stack.dash}"},
               {"Host": "[::1]"}, {"Origin": f"http://127.0.0.1:{stack.dash}"},
               {"Host": f"127.0.0.2:{stack.dash}"},  # all of 127/8 is loopback
               {"Content-Type": "application/json; charset=utf-8"},
               {"Content-Type": "application/cloudevents+json"}]
    for n, headers in enumerate(allowed):
        code, body = request(stack.dash, event(f"Test.ok{n}"), {**JSON, **headers})
        assert code == 200 and body["webhook_status"] == "forwarded", (headers, body)
    assert [r["detail-type"] for r in stack.received()[before:]] == [
        f"Test.ok{n}" for n in range(len(allowed))]


REFUSED = [
    ({"Host": "evil.example"}, 403, "Host 'evil.example' is not this machine's loopback"),
    ({"Host": "127.0.0.1.evil.example:9000"}, 403, "Host '127.0.0.1.evil.example:9000'"),
    ({"Host": "localhost.:9000"}, 403, "Host 'localhost.:9000'"),
    ({"Host": "127.1:9000"}, 403, "Host '127.1:9000'"),  # not as a browser writes it
    ({"Host": "127.0.0.01:9000"}, 403, "Host '127.0.0.01:9000'"),
    ({"Host": "127.0.0.256:9000"}, 403, "Host '127.0.0.256:9000'"),
    ({"Host": ""}, 403, "Host '' is not"),
    ({"Origin": "http://evil.example"}, 403, "cross-origin request from 'http://evil.example'"),
    ({"Origin": "null"}, 403, "cross-origin request from 'null'"),
    ({"Origin": "http://localhost:1"}, 403, "cross-origin request from 'http://localhost:1'"),
    ({"Content-Type": "text/plain"}, 415, "Content-Type 'text/plain' is refused without"),
    ({"Content-Type": "Text/Plain; charset=utf-8"}, 415, "Content-Type 'text/plain'"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415,
     "Content-Type 'application/x-www-form-urlencoded' is refused"),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415,
     "Content-Type 'multipart/form-data' is refused"),
    ({"Content-Type": ""}, 415, "a missing Content-Type is refused without a webhook token"),
]


@pytest.mark.parametrize(("headers", "status", "start"), REFUSED)
def test_what_a_browser_could_send_is_refused_and_never_arrives(
        stack: Stack, headers: dict[str, str], status: int, start: str) -> None:
    before = len(stack.received())
    conn = http.client.HTTPConnection("127.0.0.1", stack.dash, timeout=30)
    try:
        code, body = request(stack.dash, event("Test.attack"), {**JSON, **headers}, conn=conn)
        assert code == status and body["error"].startswith(start), body
        assert list(body) == ["error"]
        # The refusal says what to do instead, at the daemon's own address.
        assert "hd events.send" in body["error"] or \
            "-H 'Content-Type: application/json'" in body["error"]
        assert "PORT" not in body["error"]
        # The refused body was read and dropped: the same connection carries on.
        assert request(stack.dash, event("Test.after"), JSON, conn=conn)[0] == 200
    finally:
        conn.close()
    assert [r["detail-type"] for r in stack.received()[before:]] == ["Test.after"]
    assert stack.deliveries()[0]["status"] == 200
    assert stack.refused()[1][0]["status"] == status
    assert stack.refused()[1][0]["error"].startswith(start)


def test_refused_requests_never_push_deliveries_out_of_the_list(stack: Stack) -> None:
    """Each refusal was a delivery: a page anyone visits, with a few hundred no-cors
    POSTs, pushed every real delivery out of the 200 kept (adv26 h/3). They are counted
    apart now, with the last 20."""
    assert request(stack.dash, event("Test.kept"), JSON)[0] == 200
    before, _ = stack.refused()
    for i in range(250):
        code, _ = request(stack.dash, event(f"Test.flood{i}"),
                          {**JSON, "Origin": "http://evil.example"})
        assert code == 403
    assert stack.deliveries()[0]["detail_type"] == "Test.kept"
    count, last = stack.refused()
    assert count == before + 250 and len(last) == 20
    assert {d["status"] for d in last} == {403}


def test_a_rebound_host_on_a_raw_socket_is_refused(stack: Stack) -> None:
    """What a DNS-rebinding page makes the browser send: its own name, our address."""
    import socket

    before = len(stack.received())
    body = event("Test.rebound")
    raw = (f"POST {HOOK} HTTP/1.1\r\nHost: attacker.example:{stack.dash}\r\n"
           f"Origin: http://attacker.example:{stack.dash}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
           "Connection: close\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", stack.dash), timeout=10) as s:
        s.sendall(raw)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert json.loads(payload)["error"].startswith("Host 'attacker.example:")
    assert stack.received()[before:] == []


@pytest.mark.parametrize(("head", "said"), [
    (b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n",
     b"More than one Host header"),
    (b"GET /api/status HTTP/1.1\r\nHost: evil.example\r\nHost: 127.0.0.1\r\n",
     b"More than one Host header"),
    (b"GET http://evil.example/api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n",
     b"An absolute-form request target is for proxies"),
])
def test_a_second_host_or_a_target_naming_another_host_is_refused(
        stack: Stack, head: bytes, said: bytes) -> None:
    """Only the first Host was checked, and an absolute-form target's authority (which
    HTTP says wins over Host) never was: both were served (adv26 h's notes)."""
    from rawhttp import exchange

    answer = exchange(stack.dash, head + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and said in answer, answer[:300]


# ---- a real browser ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched(CHROMIUM_ARGS) as b:
        yield b


ATTACK = """<!doctype html><html><body>
<iframe name="f1"></iframe><iframe name="f2"></iframe>
<form id="plain" method="POST" action="{hook}" enctype="text/plain" target="f1">
<input name='{{"detail-type":"Test.form-plain","x":"' value='"}}'></form>
<form id="urlenc" method="POST" action="{hook}" target="f2">
<input name="detail-type" value="Test.form-urlencoded"></form>
<script>
const hook = "{hook}";
const ev = (t) => JSON.stringify({{"detail-type": t, "detail": {{}}}});
window.outcomes = {{}};
const note = (k) => [() => window.outcomes[k] = "sent", (e) => window.outcomes[k] = String(e)];
fetch(hook, {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
  body: ev("Test.fetch-text")}}).then(...note("text"));
fetch(hook, {{method: "POST", mode: "no-cors", body: new Blob([ev("Test.fetch-blob")])}})
  .then(...note("blob"));
fetch(hook, {{method: "POST", mode: "no-cors",
  body: new URLSearchParams({{"detail-type": "Test.fetch-params"}})}}).then(...note("params"));
fetch(hook, {{method: "POST", headers: {{"Content-Type": "application/json"}},
  body: ev("Test.fetch-cors")}}).then(...note("cors"));
document.getElementById("plain").submit();
document.getElementById("urlenc").submit();
</script></body></html>"""


@pytest.fixture
def attacker() -> Iterator[tuple[str, dict[str, str]]]:
    """Another origin on this machine: a second HTTP server serving whatever page is set."""
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = pages.get(self.path, "not found").encode()
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pages
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_origin_cannot_make_the_webhook_forward(
        stack: Stack, browser: Browser, attacker: tuple[str, dict[str, str]]) -> None:
    origin, pages = attacker
    pages["/attack.html"] = ATTACK.format(hook=f"http://127.0.0.1:{stack.dash}{HOOK}")
    before_received, before_log = len(stack.received()), stack.refused()[0]
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(origin + "/attack.html")
        def new_entries() -> list[dict[str, Any]]:
            count, last = stack.refused()
            return last[:count - before_log]

        # Five requests reach the daemon (the JSON fetch stops at its refused preflight).
        wait_for(lambda: len(new_entries()) >= 5, timeout=15,
                 what="the page's five posts at the daemon")
        wait_for(lambda: page.evaluate("Object.keys(window.outcomes).length") == 4,
                 what="the page's fetches to settle")
        outcomes = page.evaluate("window.outcomes")
        assert outcomes["cors"].startswith("TypeError")  # no CORS answer: nothing readable
        refused = new_entries()
        assert len(refused) == 5 and {d["status"] for d in refused} == {403}, refused
    finally:
        context.close()
    assert stack.received()[before_received:] == []


REBIND = """<!doctype html><html><body><script>
window.result = null;
(async () => {
  const hook = await fetch("/webhook/eventbridge", {method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({"detail-type": "Test.rebound", "detail": {}})});
  const status = await fetch("/api/status");
  window.result = {hook: hook.status, hookBody: await hook.json(), status: status.status};
})().catch((e) => { window.result = {error: String(e)}; });
</script></body></html>"""


def test_a_page_whose_name_rebinds_to_loopback_reads_only_refusals(
        stack: Stack, browser: Browser) -> None:
    """The page's own origin is rebind.test:PORT; its name now resolves to 127.0.0.1."""
    before = len(stack.received())
    url = f"http://{REBOUND}:{stack.dash}/"
    context = browser.new_context()
    try:
        page = context.new_page()
        page.route(url, lambda route: route.fulfill(status=200, body=REBIND,
                                                    content_type="text/html"))
        page.goto(url)
        result = wait_for(lambda: page.evaluate("window.result"), timeout=15,
                          what="the rebound page's requests")
    finally:
        context.close()
    assert result.get("hook") == 403, result
    assert result["hookBody"]["error"].startswith(f"Host '{REBOUND}:{stack.dash}' is not")
    assert result["status"] == 403
    assert stack.received()[before:] == []
    assert stack.refused()[1][0]["status"] == 403
