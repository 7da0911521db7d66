"""A fuzz of the control API over raw sockets, as thorough as the webhook's.

Malformed request lines, methods, paths, headers, lengths and bodies go to a real
daemon; every answer must be a JSON error (or the page, or nothing at all when the
request could not be read), never a 500, and afterwards the daemon still serves
`/healthz` and `/api/status` with its service untouched. Bounded: a fixed number of
examples, each a few milliseconds; the client half-closes after sending, so a body
shorter than its `Content-Length` ends at once instead of waiting out the read timeout.
Paths that would change the stack (a real service's actions, the stack's, shutdown)
are left out: they are what the fuzz must not be able to reach by accident.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawhttp import parse
from stackutil import free_ports, hd, stack_header, toy_service, write_stack

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

EXAMPLES = 400
PER_REQUEST_S = 5.0


@dataclass
class Daemon:
    port: int
    pid: int


def get_json(port: int, path: str) -> tuple[int, object]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("apifuzz") / "proj"
    dash, port = free_ports(2)
    write_stack(root, stack_header(dash) + toy_service("web", port))
    try:
        hd(root, "up", "--detach", check=True)
        _, status = get_json(dash, "/api/status")
        assert isinstance(status, dict)
        yield Daemon(dash, status["services"][0]["pid"])
    finally:
        hd(root, "down")
        force_down(Registry(root))


METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
                           "TRACE", "CONNECT", "get", "G\x00T", "", "POST POST"]) | st.text(
    st.characters(min_codepoint=33, max_codepoint=126), max_size=12)
PATHS = st.sampled_from([
    "/healthz", "/api/status", "/api/services/web/logs", "/api/services/web/logs?lines=abc",
    "/api/services/web/logs?lines=-1&after=x", "/api/services/nope/logs",
    "/api/services/nope/restart", "/api/services/nope/start", "/api/services/nope/stop",
    "/api/services/../restart", "/api/stack/explode", "/api/webhook/deliveries",
    "/webhook/eventbridge", "/", "/no/such/route", "*", "", "//", "/%ff%fe", "/\x00",
    "http://127.0.0.1/healthz", "/api/services/" + "a" * 70 + "/logs", "/" + "a" * 9000,
]) | st.text(max_size=40).map(lambda t: "/" + t)
VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1", "HTTP/1.1.1",
                            "http/1.1", "HTTP/9.9", "", "HTTP/1.1 extra"])
LENGTHS = st.sampled_from(["abc", "-1", "-0", "+4", "1e3", " 7 ", "0x10", "9" * 30, "",
                           "4, 4", "١٢"]) | st.integers(0, 3000).map(str)
HEADERS = st.lists(st.one_of(
    st.tuples(st.just("Content-Length"), LENGTHS),
    st.tuples(st.just("Transfer-Encoding"), st.sampled_from(["chunked", "identity", "gzip",
                                                             "chunked, chunked"])),
    st.tuples(st.just("Content-Type"), st.sampled_from(["application/json", "text/plain",
                                                        "", "multipart/form-data"])),
    st.tuples(st.just("Origin"), st.sampled_from(["null", "http://evil.example", ""])),
    st.tuples(st.just("Connection"), st.sampled_from(["close", "keep-alive", "upgrade"])),
    st.tuples(st.just("Expect"), st.sampled_from(["100-continue", "nonsense"])),
    st.tuples(st.text(max_size=20), st.text(max_size=60)),
), max_size=8)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10).map(lambda v: json.dumps(v).encode())
BODIES = st.one_of(st.binary(max_size=3000), JSONISH,
                   st.sampled_from([b"[" * 5000, b"{" * 5000, b'{"a": NaN}', b"\xff\xfe",
                                    b"2\r\n{}\r\n0\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"]))
HOSTS = st.sampled_from(["127.0.0.1:{port}", "localhost", "[::1]:{port}", None,
                         "evil.example", "", "127.0.0.1:{port}\r\nHost: evil.example"])


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def build(method: str, path: str, version: str, host: str | None,
          headers: list[tuple[str, str]], body: bytes, port: int) -> bytes:
    line = " ".join(p for p in (method, path, version) if p)
    head = [line] + ([f"Host: {host.format(port=port)}"] if host is not None else [])
    head += [f"{k}: {v}" for k, v in headers]
    return encode("\r\n".join(head) + "\r\n\r\n") + body


def exchange(port: int, data: bytes) -> bytes:
    """Send, half-close (so a short body ends now), read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=PER_REQUEST_S) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered and closed before reading everything; read what it said
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def check_answers(out: bytes, method: str) -> None:
    """Every answer on the connection is well-formed JSON (or the page), never a 500."""
    if not out.startswith(b"HTTP/"):
        # Nothing (the request could not be read), or an HTTP/0.9 answer: a bare body.
        assert out == b"" or json.loads(out) or out.startswith(b"<!doctype"), out[:200]
        return
    while out:
        if not out.startswith(b"HTTP/"):
            raise AssertionError(f"not an HTTP answer after the first: {out[:200]!r}")
        answer = parse(out)
        head_len = out.index(b"\r\n\r\n") + 4
        length = int(answer.headers.get("content-length", len(out) - head_len))
        body = out[head_len:head_len + length]
        if method == "HEAD" and (body.startswith(b"HTTP/") or not body):
            body = b""  # an answer to HEAD has no body (unless HEAD was never parsed)
        method = ""  # any later answer is to what followed the first request's head
        out = out[head_len + len(body):]
        if answer.status == 100:  # `Expect: 100-continue` was honoured; the answer follows
            continue
        assert answer.status != 500 and 200 <= answer.status < 600, (answer, body[:300])
        ctype = answer.headers.get("content-type", "")
        if ctype.startswith("text/html"):
            assert answer.status == 200
            continue
        assert ctype == "application/json", answer
        if body:
            payload = json.loads(body)
            if answer.status >= 400:
                assert isinstance(payload["error"], str) and payload["error"], payload


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(method=METHODS, path=PATHS, version=VERSIONS, host=HOSTS, headers=HEADERS,
       body=BODIES)
def test_fuzz_requests_get_json_answers_never_500(
        daemon: Daemon, method: str, path: str, version: str, host: str | None,
        headers: list[tuple[str, str]], body: bytes) -> None:
    out = exchange(daemon.port, build(method, path, version, host, headers, body,
                                      daemon.port))
    check_answers(out, method)


@pytest.mark.parametrize("data", [
    b"\r\n\r\n", b"GET\r\n\r\n", b"GET /healthz\r\n\r\n", b"GET /healthz HTTP/1.1\r\n",
    b"GET /healthz HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
    b"GET /healthz HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n Folded: header\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS hello
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface
    b"POST /api/services/nope/restart HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Length: 10\r\n\r\n{}",  # a body shorter than it said, then EOF
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 50,  # pipelined
])
def test_malformed_framing_gets_json_or_a_close(daemon: Daemon, data: bytes) -> None:
    check_answers(exchange(daemon.port, data), "GET")


def test_after_the_fuzz_the_daemon_still_serves(daemon: Daemon) -> None:
    began = time.monotonic()
    assert get_json(daemon.port, "/healthz") == (200, {"status": "ok"})
    code, status = get_json(daemon.port, "/api/status")
    assert code == 200 and isinstance(status, dict)
    [web] = status["services"]
    assert web["name"] == "web" and web["state"] == "running" and web["pid"] == daemon.pid
    assert web["restarts"] == 0
    assert time.monotonic() - began < 2.0
