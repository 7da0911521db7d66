"""The init containers' waiter against real peers on loopback: an HTTP service that
becomes ready, a TCP port that opens, and an API server answering for a Job."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted_http import running
from stackutil import free_ports

from hippo_tasks.export import wait
from hippo_tasks.export.yamlout import dump, dump_all


class Peer(BaseHTTPRequestHandler):
    """/healthz answers 503 until `ready_after` requests were made; /apis/... answers a
    Job's status for the bearer token `good`."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server: Any = self.server
        server.hits.append((self.path, self.headers.get("Authorization")))
        if self.path == "/healthz":
            code = 200 if len(server.hits) > server.ready_after else 503
            body = b"{}"
        elif self.path.startswith("/apis/batch/v1/namespaces/ns1/jobs/"):
            if self.headers.get("Authorization") != "Bearer good":
                code, body = 401, b"{}"
            else:
                code, body = 200, json.dumps({"status": server.job}).encode()
        else:
            code, body = 404, b"{}"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def peer() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Peer)
    server.hits, server.ready_after, server.job = [], 2, {}
    with running(server):
        yield server


def test_http_waits_until_ready(peer: Any) -> None:
    url = f"http://127.0.0.1:{peer.server_address[1]}/healthz"
    said: list[str] = []
    assert wait.wait_all([url], timeout=30, say=said.append, interval=0.01)
    assert len(peer.hits) == 3 and said[-1].startswith("ready:")


def test_tcp_waits_for_the_port_and_gives_up_at_the_timeout() -> None:
    (port,) = free_ports(1)  # nobody listens there
    said: list[str] = []
    assert not wait.wait_all([f"tcp://127.0.0.1:{port}"], timeout=0.2, say=said.append,
                             interval=0.02)
    assert "gave up waiting for tcp://127.0.0.1" in said[-1]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert wait.wait_all([f"tcp://127.0.0.1:{port}"], timeout=5, say=said.append)


def test_job_waits_for_success_through_the_api(peer: Any, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("good\n")
    (tmp_path / "namespace").write_text("ns1")
    monkeypatch.setattr(wait, "ACCOUNT", tmp_path)
    monkeypatch.setenv("HIPPODROME_K8S_API", f"http://127.0.0.1:{peer.server_address[1]}")
    peer.job = {"active": 1}
    assert wait.job_ready("seed") == "job seed has not finished"
    peer.job = {"failed": 1}
    assert wait.job_ready("seed") == "job seed failed (kubectl logs job/seed)"
    peer.job = {"succeeded": 1}
    assert wait.job_ready("seed") is None
    assert peer.hits[-1] == ("/apis/batch/v1/namespaces/ns1/jobs/seed", "Bearer good")
    (tmp_path / "token").write_text("bad")
    assert wait.job_ready("seed") == "API server answered 401 for job seed"
    (tmp_path / "token").unlink()
    assert "no service account token" in (wait.job_ready("seed") or "")


def test_bad_target_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert wait.main(["redis://x:1"]) == 2
    assert "http://..., tcp://host:port or job/NAME" in capsys.readouterr().err


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                      lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(TEXT, inner, max_size=3), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(TEXT, VALUES, max_size=4))
def test_yaml_reads_back_what_was_written(doc: dict[str, Any]) -> None:
    assert yaml.safe_load(dump(doc)) == (doc or {})
    assert list(yaml.safe_load_all(dump_all([doc, doc], "a\nb"))) == [doc, doc]


def test_yaml_quotes_a_trailing_newline() -> None:
    """Found by the property above in CI: a key or value ending in a newline."""
    doc = {"A\n": "b\n", "c": None}
    assert yaml.safe_load(dump(doc)) == doc


def test_yaml_refuses_what_it_cannot_write() -> None:
    with pytest.raises(TypeError):
        dump({"a": object()})
    with pytest.raises(TypeError):
        dump({"a": {1: "x"}})
