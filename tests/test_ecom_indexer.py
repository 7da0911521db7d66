"""ecom_indexer_service on real processes: batches in ecom_ingest end up searchable in
fake_cell under the uploader's key and are acknowledged; a refused batch is marked
failed without blocking the rest; a dead cell is retried with backoff until it is back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from service_process import ServiceProcess, ServiceStarter, free_port
from stackutil import wait_for

POLL_S = "0.05"


@dataclass
class Stack:
    start: ServiceStarter
    cell: ServiceProcess
    ingest: ServiceProcess
    indexer: ServiceProcess
    key: str
    state: Path


def start_cell(start: ServiceStarter, state: Path, port: int | None = None) -> ServiceProcess:
    return start.start("fake_cell", args=["--state-dir", str(state)], port=port)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("indexer")
    with ServiceStarter(folder) as start:
        cell = start_cell(start, folder / "cell")
        ingest = start.start("ecom_ingest")
        env = {
            "ECOM_INGEST_URL": ingest.base_url,
            "MARQO_BASE_URL": cell.base_url,
            "ECOM_INDEXER_POLL_INTERVAL": POLL_S,
        }
        indexer = start.start("ecom_indexer_service", env=env)
        account = requests.post(f"{cell.base_url}/accounts", json={"name": "shop"}).json()
        key = account["apiKey"]
        made = requests.post(f"{cell.base_url}/indexes/items", json={}, headers={"x-api-key": key})
        assert made.status_code == 201, made.text
        yield Stack(start, cell, ingest, indexer, key, folder / "cell")


def upload(stack: Stack, docs: list[dict[str, Any]], index: str = "items") -> str:
    body = {"index": index, "accountId": "acc", "documents": docs}
    answer = requests.post(
        f"{stack.ingest.base_url}/batches", json=body, headers={"x-api-key": stack.key}
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["batchId"])


def batch(stack: Stack, batch_id: str) -> dict[str, Any]:
    return dict(requests.get(f"{stack.ingest.base_url}/batches/{batch_id}").json())


def search(stack: Stack, q: str) -> list[dict[str, Any]]:
    answer = requests.post(
        f"{stack.cell.base_url}/indexes/items/search",
        json={"q": q},
        headers={"x-api-key": stack.key},
        timeout=5,
    )
    return list(answer.json().get("hits", []))


def stats(stack: Stack) -> dict[str, Any]:
    return dict(requests.get(f"{stack.indexer.base_url}/stats").json())


def test_a_pending_batch_becomes_searchable_and_is_acked(stack: Stack) -> None:
    started = time.monotonic()
    batch_id = upload(stack, [{"_id": "p1", "title": "velvet armchair"}])
    hits = wait_for(lambda: search(stack, "velvet"), what="the document in the cell")
    latency = time.monotonic() - started
    assert hits[0]["_id"] == "p1"
    wait_for(lambda: batch(stack, batch_id)["status"] == "done", what="the ack")
    figures = stats(stack)
    assert figures["drained"] >= 1 and figures["documents"] >= 1 and figures["lastDrainAt"]
    print(f"ingest -> searchable in the cell: {latency * 1000:.0f} ms")


def test_a_refused_batch_is_failed_and_does_not_block_the_next(stack: Stack) -> None:
    bad = upload(stack, [{"title": "orphan"}], index="no-such-index")
    good = upload(stack, [{"_id": "p2", "title": "walnut sideboard"}])
    failed = wait_for(lambda: batch(stack, bad)["status"] == "failed" and batch(stack, bad))
    assert "404" in failed["error"] and "no-such-index" in failed["error"]
    wait_for(lambda: batch(stack, good)["status"] == "done", what="the good batch")
    assert search(stack, "walnut")[0]["_id"] == "p2"
    assert stats(stack)["failed"] >= 1


def test_a_down_cell_is_retried_until_it_is_back(stack: Stack) -> None:
    port = stack.cell.port
    stack.cell.stop()
    batch_id = upload(stack, [{"_id": "p3", "title": "linen curtain"}])
    before = stats(stack)["retries"]
    wait_for(lambda: stats(stack)["retries"] >= before + 2, what="retries against the dead cell")
    figures = stats(stack)
    assert "cell" in figures["lastError"] and str(port) in figures["lastError"]
    assert batch(stack, batch_id)["status"] == "pending"
    assert requests.get(f"{stack.indexer.base_url}/healthz").status_code == 200
    stack.cell = start_cell(stack.start, stack.state, port=port)
    wait_for(lambda: batch(stack, batch_id)["status"] == "done", timeout=15, what="recovery")
    assert search(stack, "linen")[0]["_id"] == "p3"


def test_a_down_ingest_is_reported_and_the_loop_survives(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"ECOM_INGEST_URL": dead, "MARQO_BASE_URL": dead, "ECOM_INDEXER_POLL_INTERVAL": POLL_S}
    with ServiceStarter(tmp_path) as start:
        indexer = start.start("ecom_indexer_service", env=env)
        base = indexer.base_url

        def reported() -> bool:
            error = requests.get(f"{base}/stats").json()["lastError"]
            return bool(error) and "ecom_ingest" in error

        wait_for(reported, what="the ingest error in /stats")
        assert requests.get(f"{base}/healthz").status_code == 200
        assert requests.get(f"{base}/nope").status_code == 404
        assert indexer.terminate() == 0
        assert "ecom_indexer_service stopped" in indexer.output()


class _Garbled(BaseHTTPRequestHandler):
    """An ingest that answers 200 with batches missing their fields."""

    def do_GET(self) -> None:
        data = json.dumps({"batches": [{"unexpected": True}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_malformed_ingest_answer_is_reported_and_retried(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbled)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {
            "ECOM_INGEST_URL": f"http://127.0.0.1:{server.server_address[1]}",
            "MARQO_BASE_URL": f"http://127.0.0.1:{free_port()}",
            "ECOM_INDEXER_POLL_INTERVAL": POLL_S,
        }
        with ServiceStarter(tmp_path) as start:
            base = start.start("ecom_indexer_service", env=env).base_url

            def retried() -> bool:
                figures = requests.get(f"{base}/stats").json()
                return figures["retries"] >= 2 and "KeyError" in figures["lastError"]

            wait_for(retried, what="the malformed answer to be reported twice")
            assert requests.get(f"{base}/healthz").status_code == 200
    finally:
        server.shutdown()
        server.server_close()


def test_a_poll_interval_over_a_second_is_refused(tmp_path: Path) -> None:
    with ServiceStarter(tmp_path) as start:
        svc = start.spawn(
            "ecom_indexer_service", env={"ECOM_INDEXER_POLL_INTERVAL": "5"}, port=free_port()
        )
        assert svc.wait_exit(timeout=20) == 78
        assert "ECOM_INDEXER_POLL_INTERVAL" in svc.output()
