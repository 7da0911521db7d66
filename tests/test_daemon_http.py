"""The daemon's JSON API against a real daemon: routes, errors, and bad input."""

from __future__ import annotations

import email.utils
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from rawhttp import exchange
from rawhttp import post as raw_post
from stackutil import free_ports, hd, stack_header, toy_service, write_stack

from hippo_tasks.daemon.http import IDLE_TIMEOUT_S


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
    # before=1: nothing (numbers start at 1); before=0 answered the newest lines as if
    # absent, and a client paging with first_seq - 1 went round in a loop (adv28 m/7)
    code, older = call(daemon + "/api/services/web/logs?before=1")
    assert code == 200 and older["lines"] == []
    code, body = call(daemon + "/api/services/web/logs?before=0")
    assert code == 400 and "'before' must be between 1 and" in body["error"], body
    # lines=0: the sequence numbers alone; its `next` was itself, and a paging client
    # that followed it looped (testers' notes)
    for query in ("lines=0", "lines=0&grep=script", f"lines=0&after={last - 1}"):
        code, counted = call(daemon + f"/api/services/web/logs?{query}")
        assert code == 200 and counted["lines"] == [] and counted["next"] is None, counted
        assert counted["last_seq"] == last and counted["more"] is False, counted


def test_errors_are_json_with_the_right_status(daemon: str) -> None:
    code, body = call(daemon + "/api/services/nope/logs")
    assert code == 404 and "unknown service 'nope'" in body["error"]
    code, body = call(daemon + "/api/services/..%2F..%2Fetc%2Fpasswd/logs")
    assert code == 404
    code, body = call(daemon + "/api/services/web/logs?lines=abc")
    assert code == 400 and "'lines' must be an integer" in body["error"]
    code, body = call(daemon + "/api/services/web/logs?lines=%EF%BC%91%EF%BC%92")  # '１２'
    assert code == 400 and "'lines' must be an integer" in body["error"], body
    code, body = call(daemon + "/api/status", method="POST", body=b"{}")
    assert code == 405 and body["allowed"] == ["GET", "HEAD"]
    code, body = call(daemon + "/api/services/web/restart", method="POST", body=b"{not json")
    assert code == 400 and body["error"].startswith("Invalid JSON: ")
    code, body = call(daemon + "/no/such/route")
    assert code == 404


@pytest.mark.parametrize("path", ["/api/services/caf\u00e9/logs".encode(),
                                  b"/api/services/caf%C3%A9/logs"])
def test_a_404_names_a_non_ascii_path_as_it_was_sent(daemon: str, path: bytes) -> None:
    """The request line is read as Latin-1: the 404 said `cafÃ©`."""
    port = int(daemon.rsplit(":", 1)[1])
    out = exchange(port, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Connection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404")
    assert json.loads(body)["error"] == "no such route: GET /api/services/caf\u00e9/logs"


@pytest.mark.parametrize("path", ["/api/services/web/stop", "/webhook/eventbridge", "/mcp"])
def test_a_body_cut_short_by_a_half_close_is_answered(daemon: str, path: str) -> None:
    """Two of ten bytes, then the client closes its side (it still reads): the
    connection was closed with no answer, on every route (adv46 H/11). A 400 says what
    came, and nothing was done."""
    port = int(daemon.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                  "application/json\r\nContent-Length: 10\r\n\r\n{}".encode())
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), out[:300]
    assert "the request's body ended after 2 of its 10 bytes" in json.loads(body)["error"]
    code, status = call(daemon + "/api/status")
    assert code == 200 and status["services"][0]["state"] == "running", status


@pytest.mark.parametrize("ending", ["close", "half-close", "reset"])
def test_a_head_the_connection_ended_before_it_is_never_acted_on(
        daemon: str, project: Path, ending: str) -> None:
    """A head with no empty line, a header line or the request line cut off, then the
    connection's end (a client killed mid-write, a proxy cutting it): the end was taken
    for the head's, `POST /api/shutdown` shut the stack down and a half-closing client
    got `200 OK` for a stop (adv51 H/1). Closed without an answer, nothing done."""
    port = int(daemon.rsplit(":", 1)[1])
    _, before = call(daemon + "/api/status")
    host = f"Host: 127.0.0.1:{port}"
    for cut in (f"POST /api/services/web/stop HTTP/1.1\r\n{host}\r\n",
                f"POST /api/services/web/stop HTTP/1.1\r\n{host}",
                f"POST /api/services/web/stop HTTP/1.1\r\n{host}\r\nContent-Le",
                "POST /api/shutdown HTTP/1.1",
                f"POST /api/shutdown HTTP/1.1\r\n{host}\r\n"):
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        s.sendall(cut.encode())
        if ending == "reset":
            reset(s)
            continue
        if ending == "half-close":
            s.shutdown(socket.SHUT_WR)
            assert s.recv(65536) == b"", f"answered {cut!r}"
        s.close()
    code, after = call(daemon + "/api/status")  # the daemon is still there
    assert code == 200, after
    assert after["services"][0]["state"] == "running", after
    assert after["services"][0]["pid"] == before["services"][0]["pid"], after
    assert "stop requested" not in (project / ".logs" / "latest" / "web.log").read_text()


def test_an_escaped_letter_in_a_path_is_the_letter(daemon: str) -> None:
    """`%61` is `a` (RFC 3986): `/api/st%61tus` was a 404 that said "no such route: GET
    /api/status", and `/api/services/w%65b/logs` reached no service (adv46 H/3). An
    escaped `/` stays one: `/api%2Fstatus` names no route."""
    code, body = call(daemon + "/api/st%61tus")
    assert code == 200 and [r["name"] for r in body["services"]] == ["web"], body
    code, body = call(daemon + "/api/services/w%65b/logs?lines=1")
    assert code == 200 and "lines" in body, body
    code, body = call(daemon + "/h%65althz")
    assert code == 200, body
    code, body = call(daemon + "/api%2Fstatus")
    assert code == 404 and body["error"] == "no such route: GET /api%2Fstatus", body


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


def test_an_action_that_failed_is_not_ok_over_http_as_in_the_cli(project: Path) -> None:
    """A restart whose new process exited 3 was a plain 200 with the row in it, while
    `hd restart` exited 1 and MCP said ok false: a script took it for a success."""
    (dash,) = free_ports(1)
    flag = project / "broken"
    write_stack(project, stack_header(dash) + (
        '[services.flaky]\ncommand = ["sh", "-c", "test -e broken && exit 3; echo up; '
        'exec sleep 600"]\nreadiness = { log = "up" }\nauto_restart = false\n'))
    hd(project, "up", "--detach", check=True)
    try:
        url = f"http://127.0.0.1:{dash}"
        code, body = call(url + "/api/services/flaky/restart", method="POST")
        assert (code, body["ok"], body["problems"]) == (200, True, []), body
        flag.write_text("")
        code, body = call(url + "/api/services/flaky/restart", method="POST")
        assert code == 200 and body["ok"] is False, body
        assert body["problems"] == ["flaky failed: exited with code 3"], body
        assert body["services"][0]["state"] == "failed"
        cli = hd(project, "restart", "--service", "flaky")
        assert cli.returncode == 1 and "flaky: failed — exited with code 3" in cli.stdout
        code, body = call(url + "/api/stack/stop", method="POST")
        assert (code, body["ok"]) == (200, True), body
    finally:
        hd(project, "down")


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
    # The page's own requests, and localhost, still work.
    same = urllib.request.Request(daemon + "/api/services/web/restart", data=b"",
                                  method="POST", headers={"Origin": daemon})
    with urllib.request.urlopen(same, timeout=30) as resp:
        assert resp.status == 200
    assert call(f"http://localhost:{port}/healthz")[0] == 200
    # Without a token the webhook, too, answers only loopback names (tests/test_webhook.py).
    hook = urllib.request.Request(daemon + "/webhook/eventbridge", method="POST",
                                  data=b'{"detail-type": "X.Y"}',
                                  headers={"Host": "abc.trycloudflare.com",
                                           "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(hook, timeout=10)
    assert info.value.code == 403
    _, status = call(daemon + "/api/status")
    assert status["services"][0]["state"] == "running"


LENGTH = b"Content-Length: %d\r\n"
BAD_ACTION_REQUESTS = [
    (b"Content-Length: abc\r\n", b"{}", 400, "Invalid Content-Length header ('abc')"),
    (b"Content-Length: -5\r\n", b"{}", 400, "Invalid Content-Length header ('-5')"),
    (b"Content-Length: 1e3\r\n", b"{}", 400, "Invalid Content-Length header"),
    (b"Content-Length: 2\r\nContent-Length: 3\r\n", b"{}", 400, "Invalid Content-Length"),
    (b"Transfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n\r\n", 411, "Chunked request"),
    (LENGTH % 100_000, b"[" * 100_000, 400, "Invalid JSON: nested too deeply"),
    (LENGTH % 100_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000 + b" " * 0, 400, "Invalid JSON"),
    (LENGTH % 4, b"\xff\xfe{}", 400, "Body is not valid UTF-8 (byte 0)"),
    (LENGTH % 6, b"[1, 2]", 400, "Request body must be a JSON object or empty, got array"),
    (LENGTH % 4, b"null", 400, "Request body must be a JSON object or empty, got null"),
    (LENGTH % 3, b'"x"', 400, "Request body must be a JSON object or empty, got string"),
    (LENGTH % 10, b'{"n": NaN}', 400, "Invalid JSON: NaN is not JSON"),
    (LENGTH % 9, b"{not json", 400, "Invalid JSON: "),
    # a misspelt field restarted the one service alone, as if it had not been sent
    (LENGTH % 16, b'{"cascde": true}', 400,
     "unknown field(s) 'cascde'; a restart takes cascade"),
    (LENGTH % 8, b'{"a": 1}', 400, "unknown field(s) 'a'; a restart takes cascade"),
    # the last one was taken, in silence, where the query refused a parameter given twice
    (LENGTH % 32, b'{"cascade":true,"cascade":false}', 400,
     "field(s) 'cascade' given more than once in the request: give each once"),
    (LENGTH % 46, b'{"cascade":true,"x":{"a":1,"a":2,"b":3,"b":4}}', 400,
     "field(s) 'a', 'b' given more than once in the request: give each once"),
    (LENGTH % (2 * 1024 * 1024), b" " * (2 * 1024 * 1024), 413,
     "Request body too large: 2097152 bytes; the limit is 1048576 bytes"),
    (LENGTH % (100 * 1024 * 1024), b"{}", 413, "Request body too large"),
    (LENGTH % (10**20 - 1), b"{}", 413, "Request body too large: 99999999999999999999 bytes;"),
    (b"Content-Length: 00%s\r\n" % (b"7" * 80), b"{}", 413,
     "Request body too large: a Content-Length of 80 digits"),
]


@pytest.mark.parametrize(("head", "body", "status", "start"), BAD_ACTION_REQUESTS)
def test_bad_bodies_on_actions_are_4xx_json_and_nothing_happens(
        daemon: str, head: bytes, body: bytes, status: int, start: str) -> None:
    port = int(daemon.rsplit(":", 1)[1])
    pid = call(daemon + "/api/status")[1]["services"][0]["pid"]
    answer = raw_post(port, "/api/services/web/restart", head, body)
    assert answer.headers["content-type"] == "application/json"
    assert answer.status == status and answer.json()["error"].startswith(start), answer
    assert list(answer.json()) == ["error"]
    assert call(daemon + "/healthz") == (200, {"status": "ok"})
    assert call(daemon + "/api/status")[1]["services"][0]["pid"] == pid  # not restarted


def test_a_query_flag_that_is_not_a_yes_or_no_is_refused(daemon: str) -> None:
    """?cascade=banana restarted without a cascade, in silence (?errors=maybe was a 400)."""
    pid = call(daemon + "/api/status")[1]["services"][0]["pid"]
    code, body = call(daemon + "/api/services/web/restart?cascade=banana", "POST", b"")
    assert code == 400 and body["error"].startswith("'cascade' must be 1 or 0"), body
    for blank in ("/api/services/web/restart?cascade=", "/api/services/web/restart?cascade"):
        code, body = call(daemon + blank, "POST", b"")  # it was taken as no
        assert code == 400 and body["error"].startswith("'cascade' must be 1 or 0"), body
    code, body = call(daemon + "/api/services/web/logs?errors=")
    assert code == 400 and body["error"].startswith("'errors' must be 1 or 0"), body
    # a misspelt or repeated parameter was taken silently, the restart `ok: true` (z/7)
    for query, said in (("?cascde=1", "unknown query parameter(s) 'cascde'; a restart "
                                      "takes cascade"),
                        ("?cascade=1&cascade=0", "query parameter(s) 'cascade' given more "
                                                 "than once: give each once")):
        code, body = call(daemon + "/api/services/web/restart" + query, "POST", b"")
        assert (code, body["error"]) == (400, said), body
    code, body = call(daemon + "/api/services/web/restart?cascade=1", "POST",
                      b'{"cascade": false}')  # one of them won, silently (s/1)
    assert (code, body["error"]) == (400, "'cascade' given in both the query and the body: "
                                          "give it once"), body
    code, body = call(daemon + "/api/services/web/stop?force=1", "POST", b"")
    assert (code, body["error"]) == (400, "unknown query parameter(s) 'force'; this action "
                                          "takes none"), body
    # the one route that ignored them (adv59)
    code, body = call(daemon + "/api/status?x=1")
    assert (code, body["error"]) == (400, "unknown query parameter(s) 'x'; GET /api/status "
                                          "takes none"), body
    # `?error=1` answered every line, unfiltered, to a script checking for none (b/5)
    code, body = call(daemon + "/api/services/web/logs?error=1")
    assert (code, body["error"]) == (400, "unknown query parameter(s) 'error'; a logs query "
                                          "takes lines, after, before, since, grep, regex, "
                                          "errors"), body
    assert call(daemon + "/api/services/web/logs?errors=1&lines=5&grep=x")[0] == 200
    code, body = call(daemon + "/api/services/web/logs?since=")  # unfiltered (e/5)
    assert code == 400 and body["error"].startswith("'since' is empty"), body
    code, body = call(daemon + "/api/services/web/logs?errors=%20")
    assert code == 400 and body["error"].endswith("got ' '"), body
    assert call(daemon + "/api/status")[1]["services"][0]["pid"] == pid  # not restarted


def test_an_empty_or_object_body_is_an_action(daemon: str) -> None:
    port = int(daemon.rsplit(":", 1)[1])
    for head, body in ((b"", b""), (LENGTH % 0, b""), (LENGTH % 2, b"{}"),
                       (LENGTH % 19, b' {"cascade": false}')):
        answer = raw_post(port, "/api/services/web/restart", head + b"Connection: close\r\n", body)
        assert answer.status == 200 and answer.json()["services"][0]["state"] == "running"


def test_heads_a_server_must_refuse_are_refused_and_the_server_goes_on(daemon: str) -> None:
    """The header lines are read by hand (hippo_contract/http_head.py), so everything a parser can
    get wrong is tried: folded lines, space before the colon (a smuggling vector), a
    line without a colon, over-long and too many lines, HTTP/2 on the wire, a
    scheme-less absolute path, and duplicate and mixed-case fields kept as sent."""
    port = int(daemon.rsplit(":", 1)[1])
    host = f"Host: 127.0.0.1:{port}\r\n".encode()

    def status(raw: bytes) -> int:
        return int(exchange(port, raw).split(b"\r\n", 1)[0].split()[1])

    get = b"GET /api/status HTTP/1.1\r\n" + host
    assert status(get + b"X-A: 1\r\n  folded\r\n\r\n") == 400
    assert status(get + b"X-A : 1\r\n\r\n") == 400
    assert status(get + b"no colon here\r\n\r\n") == 400
    assert status(get + b"X-A: " + b"a" * 70000 + b"\r\n\r\n") == 431
    assert status(get + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n") == 431
    assert status(b"GET /api/status HTTP/2.0\r\n" + host + b"\r\n") == 505
    assert status(b"GET /api/status HTTP/1.x\r\n" + host + b"\r\n") == 400
    assert status(b"GET //healthz HTTP/1.1\r\n" + host + b"\r\n") == 200
    # Two Content-Lengths that disagree are refused (the body's end is unknown) ...
    smuggle = (b"POST /api/services/web/restart HTTP/1.1\r\n" + host +
               b"Content-Type: application/json\r\ncontent-length: 2\r\n"
               b"Content-Length: 3\r\n\r\n{}x")
    assert status(smuggle) == 400
    # ... and the guard's headers are seen whatever their case.
    foreign = (b"POST /api/services/web/restart HTTP/1.1\r\n" + host + b"oRiGiN: "
               b"http://evil.example\r\nContent-Type: application/json\r\n"
               b"Content-Length: 2\r\n\r\n{}")
    assert status(foreign) == 403
    assert status(get + b"x-FORWARDED-for: 10.0.0.1\r\n\r\n") == 403
    # A guard's field given twice: only the first was checked, and a same-origin one
    # before another site's let a stop through (adv51 H/3); joined in one, refused too.
    stop = b"POST /api/services/web/stop HTTP/1.1\r\n" + host + b"Content-Length: 0\r\n"
    page = f"http://127.0.0.1:{port}".encode()
    assert status(stop + b"Origin: " + page + b"\r\nOrigin: http://evil.example\r\n\r\n") \
        == 400
    assert status(stop + b"Sec-Fetch-Site: same-origin\r\nsec-fetch-site: cross-site\r\n"
                  b"\r\n") == 400
    assert status(stop + b"Sec-Fetch-Site: same-origin, cross-site\r\n\r\n") == 403
    assert status(stop + b"Sec-Fetch-Site:\r\n\r\n") == 403  # empty: none of the four
    assert status(stop + b"Origin: " + page + b"\r\nSec-Fetch-Site: same-origin\r\n\r\n") \
        == 200  # the page's own, once each
    assert call(daemon + "/healthz") == (200, {"status": "ok"})


def test_the_request_loop_as_http_server_kept_it(daemon: str) -> None:
    """The loop under the handler is the daemon's own (hippo_contract/http_loop.py), not
    http.server's: the same answers to an over-long request line, an unknown method,
    HTTP/0.9, `Expect: 100-continue` and two requests on one connection, and a Date
    header in RFC 9110's format."""
    port = int(daemon.rsplit(":", 1)[1])
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    too_long = exchange(port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    uri_too_long = HTTPStatus(414).phrase  # "URI Too Long" from Python 3.13 (RFC 9110)
    assert too_long.startswith(f"HTTP/1.1 414 {uri_too_long}\r\n".encode()), too_long[:80]
    assert json.loads(too_long.split(b"\r\n\r\n", 1)[1]) == {"error": uri_too_long}
    brew = exchange(port, b"BREW /api/status HTTP/1.1\r\n" + host + b"\r\n")
    assert brew.startswith(b"HTTP/1.1 501 ")
    assert json.loads(brew.split(b"\r\n\r\n", 1)[1]) == \
        {"error": "Unsupported method ('BREW')"}
    # HTTP/0.9: the page is a bare body (as http.server wrote it), a JSON answer has its head.
    assert exchange(port, b"GET /\r\n" + host + b"\r\n").startswith(b"<!doctype html>")
    healthz = exchange(port, b"GET /healthz\r\n" + host + b"\r\n")
    assert healthz.endswith(b'\r\n\r\n{"status": "ok"}')
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /api/services/web/start HTTP/1.1\r\n" + host +
                  b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        assert s.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"{}" + b"GET /healthz HTTP/1.1\r\n" + host + b"\r\n")
        out = b""
        while out.count(b"HTTP/1.1 ") < 2 or not out.endswith(b"\"ok\"}"):
            chunk = s.recv(65536)
            assert chunk, out
            out += chunk
    first, second = out.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK\r\n") and second.startswith(b"200 OK\r\n"), out
    date = next(ln for ln in second.split(b"\r\n") if ln.startswith(b"Date: "))[6:].decode()
    assert date == email.utils.formatdate(email.utils.parsedate_to_datetime(date).timestamp(),
                                          usegmt=True)


def test_idle_and_half_sent_connections_are_closed_not_held(daemon: str) -> None:
    """Each open connection holds a daemon thread and descriptor: one that says nothing
    (or half a head, or a bare HTTP/0.9 line) is closed after the idle timeout, and the
    daemon answers meanwhile."""
    port = int(daemon.rsplit(":", 1)[1])
    openings = [b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1", b"GET /healthz\r\n"]
    socks = [socket.create_connection(("127.0.0.1", port), timeout=IDLE_TIMEOUT_S + 10)
             for _ in openings]
    try:
        for s, opening in zip(socks, openings, strict=True):
            s.sendall(opening)
        assert call(daemon + "/healthz") == (200, {"status": "ok"})
        for s in socks:
            assert s.recv(1024) == b"", "the daemon held a silent connection open"
    finally:
        for s in socks:
            s.close()


def test_a_body_declared_too_large_gets_its_413_before_it_is_sent(daemon: str) -> None:
    """The 413 is decided by the header alone: it came only after the body did, or after
    the 10 s read timeout when the client waited for the answer before sending."""
    port = int(daemon.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /api/services/web/restart HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n")
        head = s.recv(65536)  # within 5 s, or TimeoutError
        assert head.startswith(b"HTTP/1.1 413") and b"Connection: close" in head, head
        s.sendall(b" " * (2 * 1024 * 1024))  # sent anyway: read and dropped, then closed
        while s.recv(65536):
            pass
    assert call(daemon + "/healthz") == (200, {"status": "ok"})


def reset(sock: socket.socket) -> None:
    """Close with an RST, as a killed browser or a load tester does (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def test_a_connection_reset_is_closed_quietly(daemon: str, project: Path) -> None:
    """Each reset connection was socketserver's 19-line traceback in a foreground `hd
    up`'s terminal and daemon.log, 273 of them for 300 connections (adv26 h/2): one idle,
    one reset after a whole answer on a kept-alive connection, one mid-head."""
    port = int(daemon.rsplit(":", 1)[1])
    for what in (b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"GET /heal"):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if what:
            sock.sendall(what)
        if what.endswith(b"\r\n\r\n"):
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        reset(sock)
    assert call(daemon + "/healthz")[0] == 200  # served by then: every reset handled
    log = (project / ".hippodrome" / "daemon.log").read_text()
    assert "Traceback" not in log and "ConnectionResetError" not in log, log[-3000:]


@pytest.mark.parametrize("path", ["/healthz", "/api/status", "/", "/api/services/web/logs"])
def test_head_answers_a_get_route_with_its_head_and_no_body(daemon: str, path: str) -> None:
    """HEAD was 405 on every GET route, so `curl -fI` and `wget --spider` (uptime
    monitors, many health checks) failed on a healthy daemon (adv26 h/4)."""
    port = int(daemon.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        request = f"{{}} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        sock.sendall(request.format("HEAD").encode() + request.format("GET").encode())
        answers = b""
        while answers.count(b"HTTP/1.1 ") < 2 or not answers.endswith(
                (b"}", b"</html>\n", b"</html>")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answers += chunk
    head, rest = answers.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 "), answers[:300]
    # No body after HEAD's head: the next bytes are the GET's status line.
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:200]
    assert b"\r\ncontent-length: " in head.lower(), head  # the GET's length, as HTTP asks


def test_head_is_refused_on_a_stream_and_a_post_route(daemon: str) -> None:
    for path, allow in (("/api/events", "GET"), ("/api/stack/restart", "POST")):
        req = urllib.request.Request(daemon + path, method="HEAD")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        assert info.value.code == 405 and info.value.headers["Allow"] == allow


def test_a_413_closes_at_once_and_is_not_invited(daemon: str) -> None:
    """A 413 said `Connection: close` and then held the connection for the 10 s read
    timeout waiting for a body the client never sent; with `Expect: 100-continue` (curl
    adds it past 1 MiB) the daemon first answered `100 Continue`, inviting the upload it
    then refused (adv35 y/3)."""
    port = int(daemon.rsplit(":", 1)[1])
    for path, size in (("/api/services/web/restart", 2_000_000), ("/mcp", 5_000_000)):
        for expect in (b"", b"Expect: 100-continue\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          b"application/json\r\nContent-Length: %d\r\n%s\r\n"
                          % (path.encode(), size, expect))
                out = b""
                while chunk := s.recv(65536):  # closed well within 5 s, or TimeoutError
                    out += chunk
            assert out.startswith(b"HTTP/1.1 413"), (path, expect, out[:200])
            assert b"100 Continue" not in out, out[:200]


def test_an_empty_line_before_a_request_is_passed_over(daemon: str) -> None:
    """RFC 9112 2.2: a client may send a CRLF after a POST body. The daemon took it for
    an empty request line and closed the connection unanswered, losing the request
    pipelined behind it (adv35 y/4)."""
    port = int(daemon.rsplit(":", 1)[1])
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"\r\nPOST /api/services/web/start HTTP/1.1\r\n" + host +
                  b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}\r\n"
                  b"GET /healthz HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.count(b"HTTP/1.1 200 OK") == 2 and out.endswith(b'{"status": "ok"}'), out


@pytest.mark.parametrize("opening", [b"\r\n" * 5, b" \r\n", b"\t\r\n"])
def test_more_empty_lines_than_are_passed_over_get_an_answer(daemon: str,
                                                             opening: bytes) -> None:
    """Five empty lines before a request: the connection was closed with no answer at
    all, where every malformed request gets a JSON error (adv41 I/6, 5/5); a line of
    spaces was then told of five empty lines (adv42 T/5)."""
    port = int(daemon.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(opening + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), out
    assert json.loads(body)["error"] == ("no request line: only empty or blank lines where "
                                         "it should be (up to 4 empty lines are passed over)")


@pytest.mark.parametrize("host", ["127.0.0.1:{port}@evil.example", "localhost:a b",
                                  "127.0.0.1:99999999", "127.0.0.1:-1", "localhost:８０"])
def test_a_host_whose_port_is_not_a_port_is_refused(daemon: str, host: str) -> None:
    """The Host check read the name before the last `:` and passed over the rest, so
    `127.0.0.1:PORT@evil.example` was let in as loopback (adv41 I/5)."""
    port = int(daemon.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /api/status HTTP/1.1\r\nHost: " + host.format(port=port).encode()
                  + b"\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 403 "), out
    assert b"is not this machine's loopback" in out
    for fine in (f"127.0.0.1:{port}", "localhost", "localhost:", f"[::1]:{port}"):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: " + fine.encode() +
                      b"\r\nConnection: close\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200 "), fine


def test_a_number_past_pythons_digit_limit_gets_a_sentence(daemon: str) -> None:
    """`{"cascade": 999...}` with 5,000 digits is valid JSON: it got `Invalid JSON:
    Exceeds the limit (4300 digits) ...; use sys.set_int_max_str_digits() to increase
    the limit`, advice for a Python programmer (adv35 y/5)."""
    status, said = call(daemon + "/api/services/web/restart", "POST",
                        b'{"cascade": ' + b"9" * 5000 + b"}")
    assert status == 400 and "sys." not in said["error"], said
    assert said["error"] == ("The request holds an integer of 5000 digits, over the 4300 "
                             "a number may have here; send it as a string"), said
