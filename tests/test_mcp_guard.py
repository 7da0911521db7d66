"""/mcp is the daemon's control API by another name: the same guard applies, and no web
page can drive the stack through it (DESIGN section 4). The daemon also loads the MCP
SDK only when /mcp is first used.

One real daemon over one toy service. The proof that an attempt failed is the service
itself: still running, same pid. A control request first shows that the very same
message, sent the way an agent client sends it, does stop the service, so the refusals
below are refusals of the sender, not of a message that could never have worked.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from chromium import launched
from stackutil import (
    HD_CLI,
    free_ports,
    hd,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

if TYPE_CHECKING:
    from playwright.sync_api import Browser

REBOUND = "rebind.test"
CHROMIUM_ARGS = (f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1",
                 "--disable-features=LocalNetworkAccessChecks")
STOP = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "stop", "arguments": {"service": "web"}}})
AGENT = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@dataclass
class Stack:
    root: Path
    dash: int

    def web(self) -> tuple[str, int | None]:
        status = json.loads(self.get("/api/status")[1])
        row = next(r for r in status["services"] if r["name"] == "web")
        return row["state"], row["pid"]

    def get(self, path: str) -> tuple[int, bytes]:
        return self.send("GET", path, None, {})

    def send(self, method: str, path: str, body: str | None,
             headers: dict[str, str]) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.dash, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def start_web(self) -> int:
        status, _ = self.send("POST", "/api/services/web/start", None, {})
        state, pid = self.web()
        assert status == 200 and state == "running" and pid is not None
        return pid


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("mcpguard") / "proj"
    dash, web = free_ports(2)
    write_stack(root, stack_header(dash) + toy_service("web", web))
    try:
        hd(root, "up", "--detach", check=True)
        yield Stack(root, dash)
    finally:
        hd(root, "down")
        force_down(Registry(root))


def sdk_loaded(stack: Stack) -> bool:
    """pydantic's compiled core (which the SDK imports first) mapped into the daemon."""
    pid = registry(stack.root)["daemon"]["pid"]
    return "pydantic_core" in Path(f"/proc/{pid}/maps").read_text()


def test_the_sdk_is_loaded_by_the_first_mcp_request_only(stack: Stack) -> None:
    stack.get("/api/status")
    stack.get("/")
    assert not sdk_loaded(stack)
    status, body = stack.send("POST", "/mcp", json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}), AGENT)
    assert status == 200, body
    assert "status" in {t["name"] for t in json.loads(body)["result"]["tools"]}
    assert sdk_loaded(stack)


@pytest.mark.parametrize("headers, refused", [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({"Host": "evil.example"}, 403),
    ({"Host": f"{REBOUND}:9000", "Origin": f"http://{REBOUND}:9000"}, 403),
    ({"Cf-Ray": "1234-AMS"}, 403),  # through the events tunnel
    ({"Content-Type": "text/plain"}, 400),  # what a page may post without a preflight
    ({"Content-Type": "application/x-www-form-urlencoded"}, 400),
])
def test_requests_a_browser_or_the_internet_could_send_are_refused(
        stack: Stack, headers: dict[str, str], refused: int) -> None:
    pid = stack.start_web()
    status, body = stack.send("POST", "/mcp", STOP, {**AGENT, **headers})
    assert status == refused, body
    assert stack.web() == ("running", pid)
    # the control: the same message, as an agent client sends it, does stop the service
    status, body = stack.send("POST", "/mcp", STOP, AGENT)
    assert status == 200 and json.loads(body)["result"]["structuredContent"]["ok"], body
    assert stack.web()[0] == "stopped"


def test_get_and_preflight_from_another_origin_are_refused(stack: Stack) -> None:
    assert stack.send("GET", "/mcp", None, {"Origin": "http://evil.example",
                                            "Accept": "text/event-stream"})[0] == 403
    assert stack.send("OPTIONS", "/mcp", None, {  # a preflight, refused: no CORS answer
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})[0] == 403


def test_get_is_405_at_once_not_an_event_stream_held_open(stack: Stack) -> None:
    """Stateless with JSON answers, the endpoint has no stream: the SDK held each GET
    open for 16 minutes (a thread and a socket each, until descriptors ran out)."""
    started = time.monotonic()
    status, body = stack.send("GET", "/mcp", None, AGENT)  # AGENT accepts text/event-stream
    assert status == 405, body
    assert json.loads(body)["allowed"] == ["POST"]
    assert time.monotonic() - started < 10


def test_another_methods_405_does_not_offer_get(stack: Stack) -> None:
    status, body = stack.send("PUT", "/mcp", "{}", AGENT)
    assert status == 405 and json.loads(body)["allowed"] == ["POST"], body
    # DELETE (ending a session a stateless server never has) had the SDK's 405 with no
    # Allow, while GET's 405 offered DELETE (adv28 m/6)
    status, body = stack.send("DELETE", "/mcp", None, AGENT)
    assert status == 405 and json.loads(body)["allowed"] == ["POST"], body


@pytest.mark.parametrize(("key", "ident"), [
    ("id", "1.5"), ("id", "true"), ("id", '{"a": 1}'), ("id", "null"),
    ("\\u0069d", "1.5"), ("i\\u0064", "null"),  # "id" spelt with escapes (adv31 s/1)
])
def test_a_request_whose_id_is_not_a_string_or_integer_is_an_invalid_request(
        stack: Stack, key: str, ident: str) -> None:
    """`"id": 1.5` was taken for a notification: 202, no body, nothing done, and the
    client waited for an answer that never came (adv28 m/5)."""
    before = stack.web()  # the module's stack: an earlier test may have stopped web
    tool = "stop" if before[0] == "running" else "start"
    call = ('{"jsonrpc": "2.0", "' + key + '": ' + ident + ', "method": "tools/call", '
            '"params": {"name": "' + tool + '", "arguments": {"service": "web"}}}')
    status, body = stack.send("POST", "/mcp", call, AGENT)
    assert status == 400, body
    answer = json.loads(body)
    assert answer["id"] is None and answer["error"]["code"] == -32600, answer
    assert "'id' must be a string or an integer" in answer["error"]["message"]
    assert stack.web() == before


def test_a_batch_is_one_invalid_request_that_says_why(stack: Stack) -> None:
    """A JSON array of requests got pydantic's validation text, a dozen lines naming every
    model it tried: batches are gone from MCP (2025-06-18), and the answer says so, once,
    and nothing in the batch is carried out."""
    before = stack.web()
    tool = "stop" if before[0] == "running" else "start"
    batch = json.dumps([{"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {
        "name": tool, "arguments": {"service": "web"}}} for n in (1, 2)])
    status, body = stack.send("POST", "/mcp", batch, AGENT)
    assert status == 400, body
    answer = json.loads(body)
    assert answer == {"jsonrpc": "2.0", "id": None, "error": {
        "code": -32600, "message": "Invalid Request: a batch (a JSON array) is not taken: "
        "MCP has no batches since 2025-06-18; POST one JSON-RPC message per request"}}
    assert stack.web() == before


@pytest.mark.parametrize("body,kind", [("null", "null"), ("1", "a number"),
                                       ('"tools/list"', "a string"), (" true", "true/false")])
def test_a_body_that_is_not_an_object_is_one_invalid_request(stack: Stack, body: str,
                                                              kind: str) -> None:
    """`null` or `1` got pydantic's validation text, lines of it naming every model it
    tried (adv31 s's notes)."""
    status, answer_body = stack.send("POST", "/mcp", body, AGENT)
    assert status == 400, answer_body
    answer = json.loads(answer_body)
    assert answer == {"jsonrpc": "2.0", "id": None, "error": {
        "code": -32600, "message": f"Invalid Request: a JSON-RPC message is a JSON object, "
        f"not {kind}; POST one JSON-RPC message per request"}}


@pytest.mark.parametrize("body", ["{}", '{"jsonrpc": "2.0", "id": 1}',
                                  '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
                                  '{"jsonrpc": "2.0", "id": 1, "method": 5}', '{"id": 1.5}'])
def test_a_request_without_a_method_string_is_one_invalid_request(stack: Stack,
                                                                   body: str) -> None:
    """`{}`, or JSON-RPC 2.0's own example of an Invalid Request: -32602 and pydantic's
    text, up to 34 lines of it (adv32 u/6)."""
    status, answer_body = stack.send("POST", "/mcp", body, AGENT)
    assert status == 400, answer_body
    assert json.loads(answer_body) == {"jsonrpc": "2.0", "id": None, "error": {
        "code": -32600, "message": "Invalid Request: a JSON-RPC request needs 'method', a "
        "string, such as \"tools/list\""}}


@pytest.mark.parametrize("host", ["LOCALHOST", "127.0.0.9", "[::1]"])
def test_every_loopback_name_the_guard_takes_reaches_the_tools(stack: Stack,
                                                               host: str) -> None:
    """The daemon's guard took these, the SDK's own exact list did not: a plain-text
    `421 Invalid Host header` at the daemon's own URL with HIPPODROME_DASHBOARD_HOST=
    127.0.0.2 (z/6). With an Origin of the same host too; another origin stays 403."""
    listing = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    named = {**AGENT, "Host": f"{host}:{stack.dash}"}
    for headers in (named, {**named, "Origin": f"http://{host}:{stack.dash}"}):
        status, body = stack.send("POST", "/mcp", listing, headers)
        assert status == 200 and json.loads(body)["result"]["tools"], (headers, body)
    status, _ = stack.send("POST", "/mcp", listing, {**named, "Origin": "http://evil.example"})
    assert status == 403


def test_a_media_type_in_capitals_is_json_too(stack: Stack) -> None:
    """Media types are case-insensitive: the SDK answered APPLICATION/JSON with 415."""
    listing = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    status, body = stack.send("POST", "/mcp", listing, {**AGENT,
                                                        "Content-Type": "APPLICATION/JSON"})
    assert status == 200 and json.loads(body)["result"]["tools"], body


def test_a_body_that_is_not_json_gets_a_json_error(stack: Stack) -> None:
    status, body = stack.send("POST", "/mcp", STOP, {**AGENT, "Content-Type": "text/plain"})
    assert status == 400
    assert "Content-Type must be application/json" in json.loads(body)["error"]


# ---- a real browser ----------------------------------------------------------------------

ATTACK = """<!doctype html><html><body><iframe name="f"></iframe>
<form id="form" method="POST" action="{mcp}" enctype="text/plain" target="f">
<input name='{{"jsonrpc":"2.0","id":1,"method":"tools/call","x":"' value='"}}'></form>
<script>
const body = {stop};
window.outcomes = {{}};
const note = (k) => [() => window.outcomes[k] = "sent", (e) => window.outcomes[k] = String(e)];
fetch("{mcp}", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
  body}}).then(...note("text"));
fetch("{mcp}", {{method: "POST", mode: "no-cors", body: new Blob([body])}}).then(...note("blob"));
fetch("{mcp}", {{method: "POST", headers: {{"Content-Type": "application/json",
  "Accept": "application/json, text/event-stream"}}, body}}).then(...note("cors"));
document.getElementById("form").submit();
</script></body></html>"""

REBIND = """<!doctype html><html><body><script>
window.result = null;
fetch("/mcp", {method: "POST", headers: {"Content-Type": "application/json",
  "Accept": "application/json, text/event-stream"}, body: %s})
  .then(async (r) => { window.result = {status: r.status, body: await r.text()}; })
  .catch((e) => { window.result = {error: String(e)}; });
</script></body></html>"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched(CHROMIUM_ARGS) as b:
        yield b


@pytest.fixture
def attacker() -> Iterator[tuple[str, dict[str, str]]]:
    """Another origin on this machine, serving whatever page is set."""
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
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pages
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_origin_cannot_stop_a_service(
        stack: Stack, browser: Browser, attacker: tuple[str, dict[str, str]]) -> None:
    pid = stack.start_web()
    origin, pages = attacker
    mcp = f"http://127.0.0.1:{stack.dash}/mcp"
    pages["/attack.html"] = ATTACK.format(mcp=mcp, stop=json.dumps(STOP))
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(origin + "/attack.html")
        wait_for(lambda: page.evaluate("Object.keys(window.outcomes).length") == 3,
                 timeout=15, what="the page's fetches to settle")
        outcomes = page.evaluate("window.outcomes")
        assert outcomes["cors"].startswith("TypeError")  # refused preflight: unreadable
        page.wait_for_timeout(500)  # the form's post, which reports nothing to the page
    finally:
        context.close()
    assert stack.web() == ("running", pid)


def test_a_page_whose_name_rebinds_to_loopback_is_refused(stack: Stack,
                                                          browser: Browser) -> None:
    pid = stack.start_web()
    url = f"http://{REBOUND}:{stack.dash}/"
    context = browser.new_context()
    try:
        page = context.new_page()
        page.route(url, lambda route: route.fulfill(
            status=200, body=REBIND % json.dumps(STOP), content_type="text/html"))
        page.goto(url)
        result = wait_for(lambda: page.evaluate("window.result"), timeout=15,
                          what="the rebound page's request")
    finally:
        context.close()
    assert result.get("status") == 403, result
    assert "is not this machine's loopback" in result["body"]
    assert stack.web() == ("running", pid)


# ---- overlapping requests ------------------------------------------------------------------

def test_overlapping_requests_are_each_answered(tmp_path: Path) -> None:
    """Eight first requests at once make one SDK bridge and all get their answer; a
    status asked during a slow restart is answered while the restart still runs."""
    root = tmp_path / "proj"
    dash, slow = free_ports(2)
    write_stack(root, stack_header(dash) + toy_service("slow", slow, "--delay", "2"))
    stack = Stack(root, dash)
    try:
        hd(root, "up", "--detach", check=True)
        answers: list[tuple[int, bytes]] = []
        list_tools = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        first = [threading.Thread(target=lambda: answers.append(
            stack.send("POST", "/mcp", list_tools, AGENT))) for _ in range(8)]
        for t in first:
            t.start()
        for t in first:
            t.join(60)
        assert [a[0] for a in answers] == [200] * 8, answers

        restart = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "restart", "arguments": {"service": "slow"}}})
        status = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                             "params": {"name": "status", "arguments": {}}})
        done: list[tuple[int, bytes]] = []
        slow_restart = threading.Thread(target=lambda: done.append(
            stack.send("POST", "/mcp", restart, AGENT)))
        slow_restart.start()

        def answered_mid_restart() -> bool:
            _, body = stack.send("POST", "/mcp", status, AGENT)
            rows = json.loads(body)["result"]["structuredContent"]["services"]
            return rows[0]["state"] == "starting" and not done

        wait_for(answered_mid_restart, timeout=30, what="a status answered mid-restart")
        slow_restart.join(60)
        outcome = json.loads(done[0][1])["result"]["structuredContent"]
        assert outcome["ok"] and outcome["services"][0]["state"] == "running"
    finally:
        hd(root, "down")
        force_down(Registry(root))


def test_a_read_another_page_makes_is_refused_by_the_browsers_own_word(
        stack: Stack, browser: Browser, attacker: tuple[str, dict[str, str]]) -> None:
    """`<img src=http://127.0.0.1:9000/api/services/web/logs?regex=...>` carries no
    Origin, so a page anywhere could make the daemon run any (allowed) query. Chromium
    says where such a request comes from: here, what it sends for an image from another
    port of 127.0.0.1 is captured, and the daemon refuses exactly that."""
    captured: list[dict[str, str]] = []

    class Capture(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            captured.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin, pages = attacker
    pages["/img.html"] = (f'<img src="http://127.0.0.1:{server.server_address[1]}/x.png">')
    context = browser.new_context()
    try:
        context.new_page().goto(origin + "/img.html")
        wait_for(lambda: captured, timeout=15, what="the image request")
    finally:
        context.close()
        server.shutdown()
        server.server_close()
    sent = {k: v for k, v in captured[0].items() if k.startswith("sec-fetch-")}
    assert sent["sec-fetch-site"] == "same-site", sent
    status, body = stack.send("GET", "/api/services/web/logs?lines=1", None, sent)
    assert status == 403 and b"another site's page" in body, body
    # The same read from the dashboard itself, and a link followed to the API, go on.
    for own in ({**sent, "sec-fetch-site": "same-origin"},
                {"sec-fetch-site": "same-site", "sec-fetch-mode": "navigate",
                 "sec-fetch-dest": "document"}):
        assert stack.send("GET", "/api/services/web/logs?lines=1", None, own)[0] == 200


def test_a_call_whose_client_hung_up_lets_go_of_its_connection(tmp_path: Path) -> None:
    """A `wait_ready` of 600 s whose client went away held its thread and connection
    all that while: 200 of them took the daemon to 404 threads (and, with the API's
    connections capped, could hold every one)."""
    import socket

    import psutil

    root = tmp_path / "proj"
    dash, deaf = free_ports(2)
    write_stack(root, stack_header(dash) + (
        f'[services.deaf]\ncommand = ["sleep", "600"]\nport = {deaf}\n'
        'start_timeout = 600\n'))
    wait = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "wait_ready", "arguments": {"services": ["deaf"], "timeout_s": 600}}})
    head = (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{dash}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream"
            f"\r\nContent-Length: {len(wait)}\r\n\r\n").encode()
    up = subprocess.Popen([*HD_CLI, "up", "--detach"], cwd=root, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)  # waits for `deaf` for ever: not us
    try:
        wait_for(lambda: stack_answers(Stack(root, dash)), timeout=30, what="the daemon")
        daemon = psutil.Process(registry(root)["daemon"]["pid"])
        assert stack_answers(Stack(root, dash))  # (and the SDK loaded: its threads counted)
        wait_for(lambda: Stack(root, dash).send("POST", "/mcp", json.dumps(
            {"jsonrpc": "2.0", "id": 0, "method": "tools/list"}), AGENT)[0] == 200,
            what="the MCP endpoint")
        before = daemon.num_threads()
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", dash), timeout=10) as sock:
                sock.sendall(head + wait.encode())
                time.sleep(0.2)  # the call under way, then the client goes

        def let_go() -> bool:
            return not [c for c in daemon.net_connections("tcp")  # CLOSE_WAIT: held
                        if c.laddr and c.laddr[1] == dash and c.status != "LISTEN"]

        wait_for(let_go, timeout=10, what="the daemon letting go of hung-up calls")
        # the tool threads too: each waited up to 600 s for `deaf` (10 calls, 10 threads)
        wait_for(lambda: daemon.num_threads() <= before + 2, timeout=10,
                 what="the hung-up calls' tool threads to end")
    finally:
        up.kill()
        up.wait()
        hd(root, "down")
        force_down(Registry(root))


def stack_answers(stack: Stack) -> bool:
    try:
        return stack.get("/healthz")[0] == 200
    except OSError:
        return False


def test_an_address_space_too_small_for_the_sdk_is_refused_not_fatal(project: Path) -> None:
    """Under a tight `ulimit -v`, the first `/mcp` request loaded the SDK and its Rust
    allocator aborted the whole daemon ("memory allocation of 1 bytes failed"); or it
    answered an empty MemoryError, and `hd down` then left a LookupError (idna) in
    daemon.log."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.a]\ncommand = ["sleep", "600"]\n')

    def tight() -> None:  # the daemon runs in about 50 MB of it; the SDK needs 96 more
        resource.setrlimit(resource.RLIMIT_AS, (120 << 20, 120 << 20))

    # One malloc arena: each new thread's own 64 MB arena, reserved under this limit, is
    # what made the daemon's address space vary from machine to machine.
    up = subprocess.run([*HD_CLI, "up", "--detach"], cwd=project, capture_output=True,
                        text=True, timeout=60, preexec_fn=tight,
                        env={**os.environ, "NO_COLOR": "1", "MALLOC_ARENA_MAX": "1"})
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        conn = http.client.HTTPConnection("127.0.0.1", dash, timeout=30)
        conn.request("POST", "/mcp", body=json.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-03-26", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}),
            headers={"Content-Type": "application/json",
                     "Accept": "application/json, text/event-stream"})
        answer = conn.getresponse()
        body = answer.read().decode()
        assert answer.status == 503 and "ulimit -v" in body, (answer.status, body)
        os.kill(registry(project)["daemon"]["pid"], 0)  # alive: the refusal is not fatal
    finally:
        down = subprocess.run([*HD_CLI, "down"], cwd=project, capture_output=True,
                              text=True, timeout=60)
        if down.returncode != 0:  # (a limit this tight may refuse a thread for it)
            subprocess.run([*HD_CLI, "down", "--force"], cwd=project, timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    log = (project / ".hippodrome" / "daemon.log").read_text()
    assert "Traceback" not in log, log[-3000:]
