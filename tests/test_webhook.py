"""The EventBridge webhook against a real daemon and real event consumers.

Every answer of the contract (DESIGN section 4, the reference README) is checked word
for word; the target services are tests/toys/event_sink.py processes run by the stack
itself, routed to by `[[routes]]` tables, so forwarding crosses real sockets.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawhttp import json_request
from stackutil import PY, TOYS, free_ports, hd, registry, stack_header, wait_for, write_stack

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

SINK = str(TOYS / "event_sink.py")
HOOK = "/webhook/eventbridge"
RAW_HEAD = (b"POST " + HOOK.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n")
FRAMINGS = ["chunked", "close", "garbage", "huge", "cut", "trickle", "overlong"]
TIMEOUT_S = 1.0  # HIPPODROME_WEBHOOK_TIMEOUT for the shared stack
READ_TIMEOUT_S = 1.5  # HIPPODROME_WEBHOOK_READ_TIMEOUT
REFERENCE_EVENT = {
    "source": "marqo.dynamodb",
    "detail-type": "EcomIndexSettings.MODIFY",
    "detail": {
        "eventName": "MODIFY",
        "tableName": "dev-main-EcomIndexSettingsTable",
        "keys": {"pk": {"S": "INDEX#test"}, "sk": {"S": "SETTINGS"}},
        "newImage": {"pk": {"S": "INDEX#test"}},
    },
}


def sink(name: str, port: int, *flags: str, enabled: bool = True) -> str:
    argv = [PY, SINK, "--port", str(port), *flags]
    text = f"[services.{name}]\ncommand = {json.dumps(argv)}\nport = {port}\n"
    return text + ("" if enabled else "enabled = false\n") + "\n"


def routes(*pairs: tuple[str, str]) -> str:
    return "".join(f'[[routes]]\ndetail_type_prefix = "{prefix}"\nservice = "{service}"\n'
                   f'path = "/events"\n\n' for prefix, service in pairs)


@dataclass
class Stack:
    root: Path
    dash: int
    ports: dict[str, int]

    def records(self, name: str) -> list[dict[str, Any]]:
        path = self.root / f"{name}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("webhook") / "proj"
    names = ["settings", "merch", "slow", "text", "failing", "gone", "deaf", "resets",
             *FRAMINGS]
    dash, *ports = free_ports(1 + len(names))
    by_name = dict(zip(names, ports, strict=True))
    write_stack(root, stack_header(dash)
                + sink("settings", by_name["settings"], "--record", str(root / "settings.jsonl"))
                + sink("merch", by_name["merch"], "--record", str(root / "merch.jsonl"))
                + sink("slow", by_name["slow"], "--slow", "4")
                + sink("resets", by_name["resets"], "--record", str(root / "resets.jsonl"))
                + sink("text", by_name["text"], "--non-json")
                + sink("failing", by_name["failing"], "--status", "500")
                + sink("gone", by_name["gone"], enabled=False)
                + f'[services.deaf]\ncommand = ["sleep", "3600"]\nport = {by_name["deaf"]}\n'
                  'readiness = "none"\n\n'  # in the run, listening on nothing
                + "".join(sink(f, by_name[f], "--framing", f) for f in FRAMINGS)
                + routes(("EcomIndexSettings.", "settings"), ("EcomIndex", "merch"),
                         ("Merchandising.", "merch"), ("Slow.", "slow"), ("Text.", "text"),
                         ("Fail.", "failing"), ("Gone.", "gone"), ("Deaf.", "deaf"),
                         ("Reset.", "resets"),
                         *((f"{f.title()}.", f) for f in FRAMINGS)))
    env = {"HIPPODROME_WEBHOOK_TOKEN": "", "HIPPODROME_WEBHOOK_TIMEOUT": str(TIMEOUT_S),
           "HIPPODROME_WEBHOOK_READ_TIMEOUT": str(READ_TIMEOUT_S)}
    try:
        hd(root, "up", "--detach", check=True, env=env)
        yield Stack(root, dash, by_name)
    finally:
        hd(root, "down")
        force_down(Registry(root))


request = json_request  # Content-Type: application/json unless headers say otherwise


def post(port: int, event: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return request(port, json.dumps(event).encode(), headers)


def forwarded(port: int, detail_type: str) -> dict[str, Any]:
    return {"webhook_status": "forwarded", "target": f"localhost:{port}",
            "service_response": {"status": "success", "result": {"received": detail_type}}}


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are; read until the server closes (or answers and idles)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        s.settimeout(timeout)
        try:
            while chunk := s.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, body = out.partition(b"\r\n\r\n")
                    length = [int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
                              if ln.lower().startswith(b"content-length:")]
                    if length and len(body) >= length[0]:
                        break
        except TimeoutError:
            pass
        return out


def parse_raw(out: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(ln.split(": ", 1) for ln in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


# ---- the contract, word for word ------------------------------------------------------

def test_forwarded_answer_is_the_services_json_and_the_whole_event_arrives(stack: Stack) -> None:
    settings_port, merch_port = stack.ports["settings"], stack.ports["merch"]
    assert post(stack.dash, REFERENCE_EVENT) == (
        200, forwarded(settings_port, "EcomIndexSettings.MODIFY"))
    assert REFERENCE_EVENT in stack.records("settings")
    merch = {"source": "marqo.dynamodb", "detail-type": "Merchandising.INSERT",
             "detail": {"eventName": "INSERT", "tableName": "dev-main-MerchandisingTable",
                        "keys": {"pk": {"S": "RULE#123"}}, "newImage": {"pk": {"S": "RULE#123"}}}}
    assert post(stack.dash, merch) == (200, forwarded(merch_port, "Merchandising.INSERT"))
    assert merch in stack.records("merch")


def test_first_matching_route_wins(stack: Stack) -> None:
    # "EcomIndex" -> merch is listed after "EcomIndexSettings." -> settings.
    code, body = post(stack.dash, {"detail-type": "EcomIndexSettings.REMOVE"})
    assert code == 200 and body["target"] == f"localhost:{stack.ports['settings']}"
    code, body = post(stack.dash, {"detail-type": "EcomIndexOther"})
    assert code == 200 and body["target"] == f"localhost:{stack.ports['merch']}"


def test_no_route_is_ignored_with_the_reason(stack: Stack) -> None:
    assert post(stack.dash, {"source": "marqo.dynamodb", "detail-type": "Unknown.Event"}) == (
        200, {"status": "ignored", "reason": "No route configured for detail-type: Unknown.Event"})


@pytest.mark.parametrize("event", [
    {"source": "marqo.dynamodb", "detail": {}},
    {"detailType": "EcomIndexSettings.MODIFY"},
    {"detail_type": "EcomIndexSettings.MODIFY"},
    {"detail-type": None},
    {"detail-type": ""},
])
def test_missing_detail_type_is_400(stack: Stack, event: dict[str, Any]) -> None:
    assert post(stack.dash, event) == (400, {"error": "Missing 'detail-type' field in event"})


def test_target_down_is_503_naming_service_and_port(stack: Stack) -> None:
    code, body = post(stack.dash, {"detail-type": "Deaf.MODIFY"})
    assert code == 503 and list(body) == ["error"]
    assert body["error"].startswith("Service unavailable: deaf at ")
    assert f"localhost:{stack.ports['deaf']}" in body["error"]


def test_a_route_to_a_service_outside_the_run_is_not_forwarded(stack: Stack) -> None:
    """`gone` is switched off: its port is not the stack's, and whatever program held it
    got the events (and a 503 blamed a service `hd status` does not list)."""
    with socket.socket() as stranger:
        stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        stranger.bind(("127.0.0.1", stack.ports["gone"]))
        stranger.listen(1)
        stranger.settimeout(0.5)
        code, body = post(stack.dash, {"detail-type": "Gone.MODIFY", "detail": {"pw": "x"}})
        with pytest.raises(TimeoutError):
            stranger.accept()
    assert (code, body["status"]) == (200, "ignored"), body
    assert body["reason"] == ("the route for 'Gone.' names 'gone', which is not part of this "
                              "run (left out by the profile, cell or --only); not forwarded")


def test_a_stopped_services_port_gets_nothing(stack: Stack) -> None:
    """An event for a service `hd stop` stopped went to whatever program held its port,
    recorded as `forwarded`."""
    assert request(stack.dash, b"", method="POST", path="/api/services/text/stop")[0] == 200
    try:
        with socket.socket() as stranger:
            stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            stranger.bind(("127.0.0.1", stack.ports["text"]))
            stranger.listen(1)
            stranger.settimeout(0.5)
            code, body = post(stack.dash, {"detail-type": "Text.secret"})
            with pytest.raises(TimeoutError):
                stranger.accept()
        assert code == 503 and body["error"].startswith(
            f"Service unavailable: text at localhost:{stack.ports['text']}/events: it is "
            "stopped, so nothing was sent to its port"), body
    finally:
        request(stack.dash, b"", method="POST", path="/api/services/text/start")


def test_slow_target_is_504_in_time_and_blocks_nobody(stack: Stack) -> None:
    results: list[tuple[int, Any, float]] = []

    def slow() -> None:
        began = time.monotonic()
        code, body = post(stack.dash, {"detail-type": "Slow.MODIFY"})
        results.append((code, body, time.monotonic() - began))

    worker = threading.Thread(target=slow)
    worker.start()
    time.sleep(0.1)
    began = time.monotonic()
    assert post(stack.dash, {"detail-type": "EcomIndexSettings.MODIFY"})[0] == 200
    assert time.monotonic() - began < 0.9  # well before the slow one's 1 s timeout
    worker.join(10)
    code, body, took = results[0]
    assert code == 504 and body["error"].startswith("Service timed out: slow at ")
    assert f"within {TIMEOUT_S:g}s" in body["error"]
    assert TIMEOUT_S <= took < TIMEOUT_S + 1.5


def test_a_target_that_trickles_its_answer_is_504_by_its_whole_answer_time(
        stack: Stack) -> None:
    """A byte every 0.3 s is never silent for the timeout: the webhook held its thread
    and both sockets for ever, and `hd events.send` blamed the daemon (z/3). The whole
    answer has 6 timeouts."""
    code, body = post(stack.dash, {"detail-type": "Trickle.MODIFY"})
    assert code == 504, body
    assert body["error"] == (
        f"Service timed out: trickle at localhost:{stack.ports['trickle']}/events did not "
        f"finish its answer within {6 * TIMEOUT_S:g}s (it sends, but too slowly; see "
        "`hd logs -s trickle`)")


def test_bytes_past_an_answers_length_never_answer_the_next_event(stack: Stack) -> None:
    """A target that sends more than its Content-Length (one counted in characters, not
    bytes): the webhook kept the connection, and the extra bytes were read as the next
    event's answer, another event's 200 or a 502 for an event it had handled (z/11)."""
    port = stack.ports["overlong"]
    for i in range(3):
        assert post(stack.dash, {"detail-type": f"Overlong.{i}"}) == (
            200, forwarded(port, f"Overlong.{i}"))


def test_non_json_answer_is_passed_on_raw(stack: Stack) -> None:
    assert post(stack.dash, {"detail-type": "Text.MODIFY"}) == (200, {
        "webhook_status": "forwarded", "target": f"localhost:{stack.ports['text']}",
        "service_response": {"raw": "received Text.MODIFY", "content_type": "text/plain"}})


def test_a_json_answer_no_double_holds_is_passed_on_raw(project: Path) -> None:
    """`{"big": 1e999}` is JSON, but Python reads 1e999 as inf: the webhook answered
    `"service_response": {"big": Infinity}`, which is not JSON, and wrote it into the
    recording, whose replay report then was not JSON either (adv46 H/7). Passed on as
    `raw`, as an integer of 5000 digits is."""
    dash, port = free_ports(2)
    answer = project / "answer.json"
    answer.write_bytes(b'{"big": 1e999, "small": -1E400}')
    write_stack(project, stack_header(dash) + sink("huge", port, "--answer-file", str(answer))
                + routes(("Huge.", "huge")))
    hd(project, "up", "--detach", check=True)
    try:
        code, raw = request(dash, json.dumps({"detail-type": "Huge.x"}).encode(), None)
        assert (code, raw["service_response"]) == (200, {
            "raw": '{"big": 1e999, "small": -1E400}', "content_type": "application/json"}), raw
        events = project / ".hippodrome" / "events"
        wait_for(lambda: any(f.stat().st_size for f in events.glob("*.jsonl")), 10,
                 what="the delivery recorded")
        for recording in events.glob("*.jsonl"):  # the line as written is JSON
            json.loads(recording.read_text().splitlines()[-1], parse_constant=_refused)
    finally:
        hd(project, "down")


def _refused(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def test_error_answer_keeps_the_services_status(stack: Stack) -> None:
    code, body = post(stack.dash, {"detail-type": "Fail.MODIFY"})
    assert code == 500
    assert body == {**forwarded(stack.ports["failing"], "Fail.MODIFY"), "service_status": 500}


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_every_http_framing_of_an_answer_is_read(stack: Stack, framing: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.dash, timeout=30)
    try:
        for i in range(3):  # and the pooled connection (or a fresh one) serves the next
            detail_type = f"{framing.title()}.{i}"
            assert request(stack.dash, json.dumps({"detail-type": detail_type}).encode(),
                           conn=conn) == (200, forwarded(stack.ports[framing], detail_type))
    finally:
        conn.close()


@pytest.mark.parametrize(("framing", "why"), [
    ("garbage", "not an HTTP status line: b'NOT HTTP AT ALL\\r\\n'"),
    ("huge", "answer over 1024 KiB"),
    ("cut", "answer cut short in its body (10 of 100 bytes)"),
])
def test_a_broken_answer_is_502_naming_the_service(stack: Stack, framing: str, why: str) -> None:
    for _ in range(2):
        code, body = post(stack.dash, {"detail-type": f"{framing.title()}.MODIFY"})
        assert (code, body) == (502, {"error": f"Bad answer from service: {framing} at "
                                               f"localhost:{stack.ports[framing]}/events: {why}"})


@pytest.mark.parametrize("pad", [0, 200_000], ids=["small", "larger than the buffers"])
def test_an_event_the_service_read_and_reset_on_is_502_and_never_sent_again(
        stack: Stack, pad: int) -> None:
    """A service that read the event, acted on it and reset the connection unanswered
    (a handler that aborts, or one that closes with bytes unread) got it again on a
    new connection, and the webhook answered 503 "is it running?", which EventBridge
    retries (adv59 F1): after an earlier event left a pooled connection, every time."""
    port = stack.ports["resets"]
    for n in range(3):
        assert post(stack.dash, {"detail-type": f"Reset.OK{pad}.{n}"})[0] == 200  # pooled
        code, body = post(stack.dash, {"detail-type": f"Reset.ACT{pad}.{n}", "reset": True,
                                       "pad": "x" * pad})
        assert code == 502, body
        assert body["error"].startswith(f"Bad answer from service: resets at localhost:{port}"
                                        "/events: reset (") and \
            body["error"].endswith("not sent again, as it may have acted on it"), body
    time.sleep(0.3)  # a resend would have been recorded by now
    acted = [r["detail-type"] for r in stack.records("resets")
             if r["detail-type"].startswith(f"Reset.ACT{pad}.")]
    assert acted == [f"Reset.ACT{pad}.{n}" for n in range(3)], "an event was sent twice"


# ---- bad input ------------------------------------------------------------------------

BAD_BODIES = [
    (b"{not json", {}, 400, "Invalid JSON: "),
    (b'{"detail-type": "EcomIndexSettings.X", "n": NaN}', {}, 400, "Invalid JSON: NaN"),
    (b"\xff\xfe{}", {}, 400, "Body is not valid UTF-8"),
    (b"[1, 2]", {}, 400, "Event must be a JSON object, got array"),
    (b'"EcomIndexSettings.MODIFY"', {}, 400, "Event must be a JSON object, got string"),
    (b'{"detail-type": 7}', {}, 400, "'detail-type' must be a string, got number"),
    (b'{"detail-type": ["a"]}', {}, 400, "'detail-type' must be a string, got array"),
    (b"[" * 100_000, {}, 400, "Invalid JSON: "),
    (b"1" * 5000, {}, 400, "The event holds an integer of 5000 digits, over the 4300"),
    (b"", {}, 400, "Empty body"),
    (b"{}", {"Content-Type": "image/png"}, 415, "Unsupported Content-Type 'image/png'"),
    (b" " * (256 * 1024 + 1), {}, 413, "Event too large: 262145 bytes"),
]


@pytest.mark.parametrize(("body", "headers", "status", "start"), BAD_BODIES)
def test_bad_bodies_are_4xx_json_and_the_connection_stays_usable(
        stack: Stack, body: bytes, headers: dict[str, str], status: int, start: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.dash, timeout=30)
    try:
        code, answer = request(stack.dash, body, headers, conn=conn)
        assert code == status and answer["error"].startswith(start), answer
        # The same keep-alive connection carries the next event.
        event = json.dumps({"detail-type": "EcomIndexSettings.MODIFY"}).encode()
        assert request(stack.dash, event, conn=conn)[0] == 200
    finally:
        conn.close()


def test_json_types_are_accepted_and_browser_simple_types_refused_without_a_token(
        stack: Stack) -> None:
    body = json.dumps({"detail-type": "EcomIndexSettings.MODIFY"}).encode()
    for ctype in ("application/json; charset=utf-8", "application/cloudevents+json"):
        assert request(stack.dash, body, {"Content-Type": ctype})[0] == 200
    # What a web page may send anywhere without a preflight (and curl -d's default).
    for ctype in ("application/x-www-form-urlencoded", "text/plain;charset=UTF-8",
                  "multipart/form-data; boundary=x"):
        code, answer = request(stack.dash, body, {"Content-Type": ctype})
        assert code == 415 and answer["error"].startswith(f"Content-Type '{ctype.split(';')[0]}'"
                                                          " is refused without a webhook token")
        assert "-H 'Content-Type: application/json'" in answer["error"]


@pytest.mark.parametrize(("head", "status", "start"), [
    (b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411, "Chunked request bodies"),
    (b"\r\n{}", 411, "Missing Content-Length header"),
    (b"Content-Length: abc\r\n\r\n{}", 400, "Invalid Content-Length header"),
    (b"Content-Length: -2\r\n\r\n{}", 400, "Invalid Content-Length header"),
    (b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "Invalid Content-Length"),
    (b"Content-Length: 99999999999999999999999\r\n\r\n{}", 413,
     "Event too large: 99999999999999999999999 bytes"),
])
def test_bad_framing_is_4xx_json_and_closes_the_connection(
        stack: Stack, head: bytes, status: int, start: str) -> None:
    out = raw_exchange(stack.dash, RAW_HEAD + head)
    code, headers, body = parse_raw(out)
    assert code == status and body["error"].startswith(start)
    assert headers["connection"] == "close"
    assert request(stack.dash, None, method="GET", path="/healthz") == (200, {"status": "ok"})


def test_wrong_method_is_405(stack: Stack) -> None:
    code, body = request(stack.dash, None, method="GET")
    assert code == 405 and body["allowed"] == ["POST"]


# ---- slow clients, restarts, the delivery log -----------------------------------------

def test_stuck_clients_block_nobody_and_a_stuck_body_gets_408(stack: Stack) -> None:
    half_head = socket.create_connection(("127.0.0.1", stack.dash), timeout=10)
    half_body = socket.create_connection(("127.0.0.1", stack.dash), timeout=10)
    try:
        half_head.sendall(b"POST " + HOOK.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        half_body.sendall(RAW_HEAD + b"Content-Length: 100\r\n\r\n{\"detail-type\"")
        began = time.monotonic()
        for _ in range(20):
            assert post(stack.dash, {"detail-type": "EcomIndexSettings.MODIFY"})[0] == 200
        assert time.monotonic() - began < 3.0  # the half-head client would block forever
        out = b""
        while chunk := half_body.recv(65536):
            out += chunk
        code, headers, body = parse_raw(out)
        assert code == 408 and headers["connection"] == "close"
        assert body == {"error": f"Request body not received within {READ_TIMEOUT_S:g}s"}
    finally:
        half_head.close()
        half_body.close()


def test_a_body_trickled_in_gets_408_when_the_whole_of_it_is_late(stack: Stack) -> None:
    """The read timeout was per read: one byte every 0.4 s kept the body coming for
    21 s (and a daemon thread held) and then got a 200."""
    body = b'{"detail-type":"X"}'  # 19 bytes, 0.3 s apart: 5.7 s, each read well in time
    with socket.create_connection(("127.0.0.1", stack.dash), timeout=10) as s:
        s.sendall(RAW_HEAD + b"Content-Length: %d\r\n\r\n" % len(body))
        sent = 0
        with contextlib.suppress(OSError):  # the daemon closes once it has answered
            while sent < len(body):
                s.sendall(body[sent:sent + 1])
                sent += 1
                time.sleep(0.3)
        out = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                out += chunk
    code, headers, answer = parse_raw(out)
    assert code == 408 and headers["connection"] == "close", out
    assert answer == {"error": f"Request body not received within {READ_TIMEOUT_S:g}s"}
    assert sent < len(body), "the whole body got through: nothing was late"


def test_target_restart_reuses_nothing_stale(stack: Stack) -> None:
    merch = stack.ports["merch"]
    conn = http.client.HTTPConnection("127.0.0.1", stack.dash, timeout=30)
    event = json.dumps({"detail-type": "Merchandising.MODIFY"}).encode()
    try:
        assert request(stack.dash, event, conn=conn)[0] == 200  # the pool now holds one
        hd(stack.root, "restart", "--service", "merch", check=True)
        assert request(stack.dash, event, conn=conn) == (
            200, forwarded(merch, "Merchandising.MODIFY"))
        hd(stack.root, "stop", "--service", "merch", check=True)
        code, body = request(stack.dash, event, conn=conn)
        assert code == 503 and f"merch at localhost:{merch}/events" in body["error"]
        hd(stack.root, "start", "--service", "merch", check=True)
        assert request(stack.dash, event, conn=conn)[0] == 200
    finally:
        conn.close()
    logs = request(stack.dash, None, method="GET", path="/api/services/merch/logs?lines=5000")[1]
    notes = [ln["line"] for ln in logs["lines"] if ln["system"]]
    assert any(n.startswith(f"webhook: Failed to forward event to localhost:{merch} "
                            "(Merchandising.MODIFY): Service unavailable: ") for n in notes)


def test_deliveries_newest_first_and_noted_in_the_service_log(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    post(stack.dash, {"detail-type": f"EcomIndexSettings.{tag}"})
    post(stack.dash, {"detail-type": f"Nowhere.{tag}"})
    post(stack.dash, {"detail-type": f"Deaf.{tag}"})
    request(stack.dash, b"{oops")
    code, body = request(stack.dash, None, method="GET", path="/api/webhook/deliveries")
    assert code == 200 and len(body["deliveries"]) <= 200
    newest = body["deliveries"][:4]
    for entry in newest:
        assert set(entry) == {"at", "detail_type", "target", "status", "latency_ms", "outcome"}
        assert isinstance(entry["at"], float) and isinstance(entry["latency_ms"], float)
    assert [(e["detail_type"], e["target"], e["status"], e["outcome"]) for e in newest] == [
        ("", None, 400, "error"),
        (f"Deaf.{tag}", f"localhost:{stack.ports['deaf']}", 503, "error"),
        (f"Nowhere.{tag}", None, 200, "ignored"),
        (f"EcomIndexSettings.{tag}", f"localhost:{stack.ports['settings']}", 200, "forwarded"),
    ]
    assert newest[0]["at"] >= newest[3]["at"]

    def noted() -> bool:
        logs = request(stack.dash, None, method="GET",
                       path="/api/services/settings/logs?lines=5000")[1]
        want = (f"webhook: EcomIndexSettings.{tag} forwarded to "
                f"localhost:{stack.ports['settings']}/events: 200 in ")
        return any(ln["system"] and ln["line"].startswith(want) for ln in logs["lines"])

    wait_for(noted, timeout=5, what="the delivery note in the settings log")
    assert f"EcomIndexSettings.{tag} forwarded" in (
        stack.root / ".logs" / "latest" / "settings.log").read_text()


def test_deliveries_keep_the_last_200(stack: Stack) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.dash, timeout=30)
    try:
        for i in range(230):
            request(stack.dash, json.dumps({"detail-type": f"Nope.{i}"}).encode(), conn=conn)
    finally:
        conn.close()
    body = request(stack.dash, None, method="GET", path="/api/webhook/deliveries")[1]
    assert len(body["deliveries"]) == 200 and body["deliveries"][0]["detail_type"] == "Nope.229"


# ---- fuzz -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)
DETAIL_TYPES = JSON | st.builds(lambda p, t: p + t, st.sampled_from(
    ["EcomIndexSettings.", "Merchandising.", "Text.", "Nope.", ""]), st.text())
EVENTS = st.builds(lambda dt, rest: {**rest, "detail-type": dt}, DETAIL_TYPES,
                   st.dictionaries(st.text(), JSON, max_size=3))
BODIES = (st.binary(max_size=2000) | JSON.map(lambda v: json.dumps(v).encode())
          | EVENTS.map(lambda e: json.dumps(e).encode())
          | EVENTS.map(lambda e: json.dumps(e, ensure_ascii=False).encode("utf-8", "replace")))
CTYPES = st.sampled_from(["application/json", "text/plain", "", "image/png", "a/b+json"])


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=BODIES, ctype=CTYPES)
def test_fuzz_bodies_always_get_a_json_answer(stack: Stack, body: bytes, ctype: str) -> None:
    code, answer = request(stack.dash, body, {"Content-Type": ctype})
    assert isinstance(answer, dict)
    if code == 200:
        assert "webhook_status" in answer or answer.get("status") == "ignored"
    else:
        assert code in (400, 415) and isinstance(answer["error"], str), (code, answer)


def test_after_the_fuzz_the_daemon_still_serves_and_forwards(stack: Stack) -> None:
    assert request(stack.dash, None, method="GET", path="/healthz") == (200, {"status": "ok"})
    assert post(stack.dash, REFERENCE_EVENT) == (
        200, forwarded(stack.ports["settings"], "EcomIndexSettings.MODIFY"))


# ---- invoke events.send -----------------------------------------------------------------

def test_events_send_prints_the_routing_result(stack: Stack) -> None:
    before = len(stack.records("settings"))
    run = hd(stack.root, "events.send", "--detail-type", "EcomIndexSettings.INSERT", check=True)
    assert json.loads(run.stdout) == forwarded(stack.ports["settings"], "EcomIndexSettings.INSERT")
    assert run.stdout.startswith("{\n  ")  # indented
    sent = stack.records("settings")[before:]
    assert len(sent) == 1 and sent[0]["source"] == "marqo.dynamodb"
    assert sent[0]["detail"]["eventName"] == "INSERT"
    assert sent[0]["detail"]["tableName"].endswith("EcomIndexSettingsTable")

    detail = {"eventName": "REMOVE", "keys": {"pk": {"S": "INDEX#from-file"}}}
    (stack.root / "detail.json").write_text(json.dumps(detail))
    run = hd(stack.root, "events.send", "--detail-type", "EcomIndexSettings.REMOVE",
             "--file", str(stack.root / "detail.json"), check=True)
    assert stack.records("settings")[-1] == {
        "source": "marqo.dynamodb", "detail-type": "EcomIndexSettings.REMOVE", "detail": detail}

    run = hd(stack.root, "events.send", "--detail-type", "Unknown.Event", check=True)
    assert json.loads(run.stdout) == {
        "status": "ignored", "reason": "No route configured for detail-type: Unknown.Event"}


def test_events_send_exit_codes(stack: Stack, project: Path) -> None:
    run = hd(stack.root, "events.send", "--detail-type", "Deaf.MODIFY")
    assert run.returncode == 1
    assert json.loads(run.stdout)["error"].startswith("Service unavailable: deaf at ")
    assert "the webhook answered 503" in run.stderr
    run = hd(stack.root, "events.send", "--detail-type", "X.Y", "--file", "missing.json")
    assert run.returncode == 2 and "--file missing.json" in run.stderr
    (stack.root / "list.json").write_text("[1]")
    run = hd(stack.root, "events.send", "--detail-type", "X.Y", "--file", "list.json")
    assert run.returncode == 2 and "must be a JSON object" in run.stderr
    # The event around the detail is a level more: 511 are sent, 512 (the webhook's 400,
    # exit 1) and anything deeper (Python 3.11 reads ~1000) are refused first, exit 2.
    for levels, sent in ((511, True), (512, False), (600, False), (5000, False)):
        (stack.root / "deep.json").write_text('{"a": ' + "[" * (levels - 1)
                                              + "]" * (levels - 1) + "}")
        run = hd(stack.root, "events.send", "--detail-type", "X.Y", "--file", "deep.json")
        said = run.stdout + run.stderr
        assert "Traceback" not in said, said
        if sent:
            assert run.returncode == 0, said
        else:
            assert run.returncode == 2 and "nested too deeply (the webhook takes at most " \
                "512 levels" in run.stderr, (levels, said)
    # 1e999 is a JSON number Python reads as inf, and it was sent as the token Infinity,
    # which the webhook refused (adv24 b/4); a bare NaN was sent and refused, exit 1.
    for body, said in (('{"price": 1e999}', "1e999 is too large for a double: it would "
                        "be sent as Infinity"), ('{"a": NaN}', "NaN is not JSON"),
                       ('{"a": ' + "9" * 4301 + "}", "an integer of 4301 digits, over the "
                        "4300 a number may have here")):  # Python's own advice (e/4)
        (stack.root / "odd.json").write_text(body)
        run = hd(stack.root, "events.send", "--detail-type", "X.Y", "--file", "odd.json")
        assert run.returncode == 2 and said in run.stderr, run.stdout + run.stderr
    # an empty --file (a script's unset variable) sent the default event, exit 0 (e/3)
    run = hd(stack.root, "events.send", "--detail-type", "X.Y", "--file", "")
    assert run.returncode == 2 and "--file '' names nothing" in run.stderr, run.stderr
    # a detail-type holding a byte that is not UTF-8 was sent, refused by the daemon: exit
    # 1, where a bad argument is 2 (adv43 V/10)
    run = hd(stack.root, "events.send", "--detail-type", "X.\udcffY")
    assert run.returncode == 2 and "--detail-type 'X.\\xffY' is not UTF-8 text" in \
        run.stderr, run.stdout + run.stderr
    run = hd(stack.root, "events.send")
    assert run.returncode == 2 and "--detail-type is required" in run.stderr
    run = hd(project, "events.send", "--detail-type", "X.Y")  # no daemon there
    assert run.returncode == 5 and "No Hippodrome daemon is running" in run.stderr


def test_an_event_far_over_the_limit_is_the_webhooks_413_not_a_hung_daemon(
        stack: Stack) -> None:
    """Past the 8 MiB the daemon drains, it closes on the rest of the body; the send
    failed with a reset, and `events.send` said the daemon does not answer and advised
    `hd down --force` against a healthy stack. Its 413 was there to be read."""
    (stack.root / "huge.json").write_text(json.dumps({"blob": "x" * (12 * 1024 * 1024)}))
    run = hd(stack.root, "events.send", "--detail-type", "X.Y", "--file", "huge.json")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "the webhook answered 413" in run.stderr, run.stderr
    assert "does not answer" not in run.stderr and "down --force" not in run.stderr
    assert "too large" in json.loads(run.stdout)["error"]
    # A device or a runaway file is not read into memory: `/dev/zero` took 8.7 GB
    run = hd(stack.root, "events.send", "--detail-type", "X.Y", "--file", "/dev/zero")
    assert run.returncode == 2 and "--file /dev/zero: is a device, not a regular file" in run.stderr


# ---- the token --------------------------------------------------------------------------

def test_token_guards_the_webhook_and_is_never_logged(project: Path) -> None:
    dash, port = free_ports(2)
    token = "tok-" + uuid.uuid4().hex
    write_stack(project, stack_header(dash) + sink("settings", port)
                + routes(("EcomIndexSettings.", "settings")))
    hd(project, "up", "--detach", check=True, env={"HIPPODROME_WEBHOOK_TOKEN": token})
    event = {"detail-type": "EcomIndexSettings.MODIFY"}
    for headers in ({}, {"x-hippodrome-webhook-token": "wrong"},
                    {"x-hippodrome-webhook-token": token + "x"}):
        code, body = post(dash, event, headers)
        assert code == 401 and list(body) == ["error"] and token not in body["error"]
    # a 401 with a body over the limit still leaves a readable answer
    code, _ = request(dash, b" " * 300_000)
    assert code == 401
    # without the token, a chunked body or a broken Content-Length is a 401 too, counted
    # among the refused, never a delivery that pushes real ones out (adv27 j/1)
    from rawhttp import exchange

    before = request(dash, None, method="GET", path="/api/webhook/deliveries")[1]
    for framing in (b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                    b"Content-Length: abc\r\n\r\n"):
        answer = exchange(dash, b"POST /webhook/eventbridge HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Content-Type: application/json\r\n" + framing)
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    # the token twice, the right one first: taken, as the first one was all that was
    # read, where the order a proxy appends them in decided (adv46 H/4)
    body = json.dumps(event).encode()
    for first, second in ((token, "wrong"), ("wrong", token)):
        answer = exchange(dash, b"POST /webhook/eventbridge HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Content-Type: application/json\r\n"
                                b"x-hippodrome-webhook-token: " + first.encode() + b"\r\n"
                                b"x-hippodrome-webhook-token: " + second.encode() + b"\r\n"
                                b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert answer.startswith(b"HTTP/1.1 400 ") and b"x-hippodrome-webhook-token given " \
            b"2 times: send it once" in answer, answer[:300]
        assert token.encode() not in answer
    after = request(dash, None, method="GET", path="/api/webhook/deliveries")[1]
    assert after["deliveries"] == before["deliveries"]
    assert after["refused"]["count"] == before["refused"]["count"] + 4
    assert post(dash, event, {"X-Hippodrome-Webhook-Token": token}) == (
        200, forwarded(port, "EcomIndexSettings.MODIFY"))
    # With the token, any Host (the tunnel's name) and curl -d's default type are fine.
    for ctype in ("application/x-www-form-urlencoded", "text/plain"):
        assert post(dash, event, {"x-hippodrome-webhook-token": token, "Content-Type": ctype,
                                  "Host": "abc.trycloudflare.com"})[0] == 200
    code, body = post(dash, event, {"x-hippodrome-webhook-token": token,
                                    "Content-Type": "multipart/form-data; boundary=x"})
    assert code == 415 and body["error"].startswith("Unsupported Content-Type")
    assert request(dash, None, method="GET", path="/healthz")[0] == 200

    run = hd(project, "events.send", "--detail-type", "EcomIndexSettings.MODIFY",
             env={"HIPPODROME_WEBHOOK_TOKEN": "not-" + token})
    assert run.returncode == 1 and "x-hippodrome-webhook-token" in json.loads(run.stdout)["error"]
    run = hd(project, "events.send", "--detail-type", "EcomIndexSettings.MODIFY",
             env={"HIPPODROME_WEBHOOK_TOKEN": ""})  # unset: the daemon's own is sent (b/3)
    assert run.returncode == 0 and token not in run.stdout + run.stderr
    run = hd(project, "events.send", "--detail-type", "EcomIndexSettings.MODIFY",
             env={"HIPPODROME_WEBHOOK_TOKEN": token})
    assert run.returncode == 0 and json.loads(run.stdout)["webhook_status"] == "forwarded"

    hd(project, "down", check=True)
    for path in [project / ".hippodrome" / "daemon.log", *project.glob(".logs/*/*.log")]:
        assert token not in path.read_text(errors="replace"), path


UNSENDABLE_TOKENS = {
    "crlf-file": ("secret123\r", "it ends with a carriage return (\\r)"),
    "space-end": ("secret123 ", "it starts or ends with whitespace"),
    "space-start": (" secret123", "it starts or ends with whitespace"),
    "tab-inside": ("sec\tret123", "it holds a control character"),
    "not-utf8": ("secret123\udcff", "it holds bytes that are not UTF-8"),
    "too-long": ("a" * 70000, "it is longer than the 4096 bytes a token may be"),
}


def token_env(token: str) -> dict[str, str]:
    """subprocess writes the environment as UTF-8 with surrogateescape, as the shell would
    pass the raw bytes: `\\udcff` arrives as the byte 0xff (a docstring holds no lone
    surrogate: Python 3.13 encodes docstrings when it compiles them)."""
    return {"HIPPODROME_WEBHOOK_TOKEN": token}


@pytest.mark.parametrize(("token", "said"), UNSENDABLE_TOKENS.values(),
                         ids=list(UNSENDABLE_TOKENS))
def test_up_refuses_a_token_no_header_can_carry_without_showing_it(
        project: Path, token: str, said: str) -> None:
    """A token read from a CRLF file (`$(cat token.txt)` keeps the \\r) was taken: the
    webhook then refused every request, the daemon's own event_pipe's too."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + sink("settings", port))
    run = hd(project, "up", "--detach", env=token_env(token))
    assert run.returncode == 2, run.stdout + run.stderr
    assert said in run.stderr and "HIPPODROME_WEBHOOK_TOKEN" in run.stderr, run.stderr
    assert "secret123" not in run.stdout + run.stderr and "Traceback" not in run.stderr
    assert not (project / ".hippodrome" / "registry.json").exists() or \
        registry(project)["daemon"] is None


@pytest.mark.parametrize(("token", "said"), UNSENDABLE_TOKENS.values(),
                         ids=list(UNSENDABLE_TOKENS))
def test_clients_refuse_a_token_no_header_can_carry_without_showing_it(
        stack: Stack, tmp_path: Path, token: str, said: str) -> None:
    """`events.send` and `events.replay` crashed with a traceback ending `ValueError:
    Invalid header value b'secret123\\r'`: the token, printed."""
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({
        "v": 1, "kind": "delivery", "at": 1, "detail_type": "X", "route": None,
        "target": None, "event": {"detail-type": "X"}, "status": 200,
        "answer": {"status": "ignored", "reason": "No route configured for detail-type: X"},
        "outcome": "ignored", "latency_ms": 1}) + "\n")
    for args in (("events.send", "--detail-type", "EcomIndexSettings.MODIFY"),
                 ("events.replay", str(one))):
        run = hd(stack.root, *args, env=token_env(token))
        assert run.returncode == 2, (args, run.stdout + run.stderr)
        assert said in run.stderr, run.stderr
        assert "secret123" not in run.stdout + run.stderr and "Traceback" not in run.stderr


def test_a_token_beyond_ascii_works_from_hd_as_from_curl(project: Path) -> None:
    """With HIPPODROME_WEBHOOK_TOKEN=jeton-é, curl (UTF-8 bytes) got 200 but `hd
    events.send` and `hd events.replay` (Latin-1 bytes) got 401; a character past
    U+00FF could not be sent at all."""
    dash, port = free_ports(2)
    token = "jeton-é-€-" + uuid.uuid4().hex[:8]
    env = {"HIPPODROME_WEBHOOK_TOKEN": token}
    write_stack(project, stack_header(dash) + sink("settings", port)
                + routes(("EcomIndexSettings.", "settings")))
    hd(project, "up", "--detach", check=True, env=env)
    try:
        run = hd(project, "events.send", "--detail-type", "EcomIndexSettings.MODIFY", env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert json.loads(run.stdout)["webhook_status"] == "forwarded"
        recording = wait_for(lambda: next(iter((project / ".hippodrome" / "events")
                                               .glob("*.jsonl")), None), 10, what="recorded")
        run = hd(project, "events.replay", str(recording), "--as-fast-as-possible", env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "1 answered as recorded" in run.stdout
    finally:
        hd(project, "down")


def test_an_event_nested_past_the_limit_is_refused_and_one_at_it_replays(
        stack: Stack) -> None:
    """979 levels were accepted and recorded, and the recording's line was then refused as
    `not valid JSON` by a replay that read it one level deeper: the parser's recursion
    limit, which depends on the thread's stack, was the only limit."""
    deep = b'{"detail-type":"Nothing.Routed","d":' + b"[" * 512 + b"]" * 512 + b"}"
    code, body = request(stack.dash, deep)
    assert code == 400 and body["error"] == \
        "Invalid JSON: nested too deeply (more than 512 levels)"
    ok = b'{"detail-type":"Nothing.Routed","d":' + b"[" * 511 + b"]" * 511 + b"}"
    assert request(stack.dash, ok)[0] == 200
    tricky = b'{"detail-type":"Nothing.Routed","s":"' + b"[" * 5000 + b'"}'  # in a string
    assert request(stack.dash, tricky)[0] == 200


@pytest.mark.parametrize("value", ["inf", "1e10"])
def test_a_timeout_of_no_limit_still_forwards(project: Path, value: str) -> None:
    """`inf` (no timeout while debugging a target) overflowed every deadline: each
    event was a 500 `OverflowError: timestamp out of range for platform time_t`."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + sink("settings", port)
                + routes(("EcomIndexSettings.", "settings")))
    hd(project, "up", "--detach", check=True,
       env={"HIPPODROME_WEBHOOK_TOKEN": "", "HIPPODROME_WEBHOOK_TIMEOUT": value,
            "HIPPODROME_WEBHOOK_READ_TIMEOUT": value})
    assert post(dash, {"detail-type": "EcomIndexSettings.MODIFY"}) == (
        200, forwarded(port, "EcomIndexSettings.MODIFY"))
    assert post(dash, {"detail-type": "Nothing.Routed"})[0] == 200
