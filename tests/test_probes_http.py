"""The probes' error classification on real sockets: a closed port, a listener that never
answers, one that answers garbage, one that hangs up, real HTTP errors; and the fuzz
mode's ledger (breaker per service, error-code table) fed with those real outcomes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from scripted_http import raw_server
from stackutil import free_ports

from hippo_platform.seed.probe_breakers import Ledger
from hippo_platform.seed.probe_http import Outcome, call, code_of, is_infrastructure


def closed_port() -> int:
    """Nobody listens there: a port of this worker's share, checked free a moment ago."""
    return free_ports(1)[0]


@contextmanager
def http_server(status: int, body: bytes, content_type: str = "application/json"
                ) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_a_closed_port_is_connection_refused() -> None:
    got = call("GET", f"http://127.0.0.1:{closed_port()}/healthz", timeout=2)
    assert (got.error_type, got.status_code) == ("connection_refused", None)
    assert is_infrastructure(got) and code_of(got) == "connection_refused"


def test_a_listener_that_never_answers_is_a_timeout() -> None:
    with raw_server(lambda conn: None) as port:  # accepted, read never, answered never
        got = call("GET", f"http://127.0.0.1:{port}/healthz", timeout=0.3)
    assert got.error_type == "timeout" and "0.3 s" in got.detail
    assert is_infrastructure(got)


def test_garbage_instead_of_http_is_a_parse_error_and_a_real_failure() -> None:
    def garbage(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"SSH-2.0-OpenSSH_9.6 not http at all\r\n\r\n")
        conn.close()

    with raw_server(garbage) as port:
        got = call("GET", f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert got.error_type == "parse_error" and "not an HTTP answer" in got.detail
    assert not is_infrastructure(got)  # something answered, and answered wrong


def test_hanging_up_without_an_answer_is_a_transport_error() -> None:
    def hang_up(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.close()

    with raw_server(hang_up) as port:
        got = call("GET", f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert got.error_type == "transport_error" and is_infrastructure(got)


@pytest.mark.parametrize("status,infra", [(502, True), (503, True), (504, True),
                                          (500, False), (404, False), (409, False)])
def test_http_errors_carry_their_status_and_only_gateways_are_infrastructure(
    status: int, infra: bool
) -> None:
    with http_server(status, b'{"error": "boom"}') as port:
        got = call("GET", f"http://127.0.0.1:{port}/x", timeout=2)
    assert (got.error_type, got.status_code, got.detail) == ("http_error", status, "boom")
    assert is_infrastructure(got) is infra and code_of(got) == str(status)


def test_a_missing_table_is_infrastructure_but_another_500_is_not() -> None:
    missing = b'{"error": "ResourceNotFoundException: Requested resource not found"}'
    with http_server(500, missing) as port:
        assert is_infrastructure(call("GET", f"http://127.0.0.1:{port}/x", timeout=2))
    with http_server(500, b'{"error": "KeyError: accountId"}') as port:
        assert not is_infrastructure(call("GET", f"http://127.0.0.1:{port}/x", timeout=2))


def test_a_body_that_is_not_json_is_a_parse_error_unless_any_body_will_do() -> None:
    with http_server(200, b"<html>moto</html>", "text/html") as port:
        strict = call("GET", f"http://127.0.0.1:{port}/", timeout=2)
        lenient = call("GET", f"http://127.0.0.1:{port}/", timeout=2, json_body=False)
    assert (strict.error_type, strict.status_code) == ("parse_error", 200)
    assert lenient.ok and lenient.status_code == 200


def test_bad_urls_are_refused_before_any_socket() -> None:
    for url in ("ftp://127.0.0.1/x", "127.0.0.1:9000", "http:///nohost"):
        with pytest.raises(ValueError, match="not an http"):
            call("GET", url)


def refused() -> Outcome:
    return call("GET", f"http://127.0.0.1:{closed_port()}/", timeout=2)


def test_the_breaker_opens_after_n_infrastructure_errors_in_a_row_only() -> None:
    ledger = Ledger(threshold=3)
    with http_server(200, b"{}") as port:
        good = call("GET", f"http://127.0.0.1:{port}/", timeout=2)
    for _ in range(2):
        assert ledger.record("controller", refused()) is True
    assert ledger.record("controller", good) is False  # a good answer resets the count
    for _ in range(2):
        ledger.record("controller", refused())
    assert ledger.closed("controller")
    ledger.record("controller", refused())
    assert not ledger.closed("controller")
    assert "3 infrastructure errors in a row" in ledger.tripped["controller"]
    assert "connection_refused" in ledger.tripped["controller"]
    assert ledger.closed("fake_cell")
    table = "\n".join(ledger.table())
    assert "connection_refused" in table and "OPEN" in table and "200" in table
    assert ledger.as_json()["codes"] == {"controller 200": 1, "controller connection_refused": 5}


def test_a_real_failure_never_counts_toward_the_breaker() -> None:
    ledger = Ledger(threshold=1)
    with http_server(500, b'{"error": "bug"}') as port:
        assert ledger.record("fake_cell", call("GET", f"http://127.0.0.1:{port}/")) is False
    assert ledger.closed("fake_cell") and not ledger.infrastructure
