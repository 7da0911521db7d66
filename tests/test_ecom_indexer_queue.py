"""ecom_indexer (the SQS consumer; tests/test_ecom_indexer.py is ecom_indexer_service's)
on real processes and a real moto: an upload through admin_server travels over the
provisioned `{prefix}ecom-indexer` queue and becomes searchable in the cell; a refused
or malformed message is dropped and counted without blocking the rest; a dead cell
leaves the batch on the queue until the cell is back."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import moto_server
import pytest
import requests
from queue_stack import QueueStack, queue_stack
from service_process import ServiceStarter, free_port
from stackutil import wait_for

from hippo_platform.services.ecom_indexer.consumer import POISON_AFTER

moto_server_url = moto_server.moto_server_url
EXIT_CONFIG = 78


@pytest.fixture(scope="module")
def stack(moto_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueStack]:
    yield from queue_stack(moto_server_url, tmp_path_factory.mktemp("queue"))


def upload(stack: QueueStack, docs: object, index: str = "shop") -> requests.Response:
    return requests.post(f"{stack.url('admin')}/api/v1/indexes/{index}/documents",
                         json={"documents": docs},
                         headers={"Authorization": f"Bearer {stack.key}"}, timeout=10)


def test_an_upload_travels_over_sqs_into_the_cell(stack: QueueStack) -> None:
    answer = upload(stack, [{"_id": "q1", "title": "quartz table lamp"}, {"title": "quartz mug"}])
    assert answer.status_code == 202, answer.text
    assert answer.json()["via"] == "sqs" and answer.json()["count"] == 2
    found = wait_for(lambda: len(stack.search("quartz")) == 2 and stack.search("quartz"),
                     what="both documents in the cell")
    assert "q1" in found and all(found), "a document without _id got one before queueing"
    figures = wait_for(lambda: stack.stats()["delivered"] >= 1 and stack.stats(),
                       what="the delivery counted (after the cell write and the delete)")
    assert figures["documents"] >= 2
    ingest = requests.get(f"{stack.url('ingest')}/batches", timeout=5).json()["batches"]
    assert ingest == [], "the SQS path does not go through ecom_ingest"
    sqs = stack.client("sqs")
    url = sqs.get_queue_url(QueueName=f"{stack.prefix}ecom-indexer")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0", "a delivered batch is deleted"


def test_bad_uploads_are_refused_before_the_queue(stack: QueueStack) -> None:
    assert upload(stack, []).status_code == 400
    assert upload(stack, "docs").status_code == 400
    assert upload(stack, [{"_id": 7}]).status_code == 400
    assert upload(stack, [{"a": 1}], index="no-such-index").status_code == 404
    too_big = upload(stack, [{"_id": f"b{n}", "blob": "x" * 2000} for n in range(200)])
    assert too_big.status_code == 413 and "split it" in too_big.json()["error"]


def test_refused_and_malformed_messages_are_dropped_and_counted(stack: QueueStack) -> None:
    sqs = stack.client("sqs")
    url = sqs.get_queue_url(QueueName=f"{stack.prefix}ecom-indexer")["QueueUrl"]
    before = stack.stats()["failed"]
    sqs.send_message(QueueUrl=url, MessageBody="not json at all")
    # these two raised out of the whole receive, holding the good batch behind them for
    # the queue's 30 s and again (adv29 o/4)
    sqs.send_message(QueueUrl=url, MessageBody="[" * 50_000 + "]" * 50_000)
    sqs.send_message(QueueUrl=url, MessageBody='{"n": ' + "1" * 5000 + "}")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"index": "shop"}))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
        {"batchId": "gone", "index": "no-such-index", "apiKey": stack.key,
         "documents": [{"_id": "z1", "title": "zinc"}]}))
    assert upload(stack, [{"_id": "q9", "title": "onyx bowl"}]).status_code == 202
    wait_for(lambda: stack.search("onyx") == ["q9"], what="the good batch behind bad ones")
    wait_for(lambda: stack.stats()["failed"] >= before + 5, what="five dropped messages")
    error = stack.stats()["lastError"] or ""
    assert "no-such-index" in error or "not an upload batch" in error
    assert requests.get(f"{stack.url('indexer')}/healthz").status_code == 200


def test_a_dead_cell_leaves_the_batch_queued_until_it_is_back(stack: QueueStack,
                                                              tmp_path: Path) -> None:
    sqs = stack.client("sqs")
    name = f"{stack.prefix}retry-{uuid.uuid4().hex[:6]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]  # 30 s visibility, as provisioned
    cell_port = free_port()
    env = {**stack.env, "ECOM_INDEXER_QUEUE": name, "MARQO_BASE_URL":
           f"http://127.0.0.1:{cell_port}"}
    with ServiceStarter(tmp_path) as start:
        indexer = start.start("ecom_indexer", env=env)
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
            {"batchId": "b1", "index": "shop", "apiKey": stack.key,
             "documents": [{"_id": "r1", "title": "rattan basket"}]}))

        def stats() -> dict[str, object]:
            return dict(requests.get(f"{indexer.base_url}/stats", timeout=5).json())

        wait_for(lambda: int(str(stats()["retries"])) >= 2, what="retries on the dead cell")
        assert str(cell_port) in str(stats()["lastError"])
        assert stack.search("rattan") == []
        # the cell comes back on its port (a fresh one: the old batch's key is now
        # refused and dropped, the new batch goes in)
        start.start("fake_cell", args=["--state-dir", str(tmp_path / "cell2")], port=cell_port)
        cell2 = f"http://127.0.0.1:{cell_port}"
        key = requests.post(f"{cell2}/accounts", json={"name": "x"}).json()["apiKey"]
        assert requests.post(f"{cell2}/indexes/shop", json={}, headers={"x-api-key": key}).ok
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
            {"batchId": "b2", "index": "shop", "apiKey": key,
             "documents": [{"_id": "r2", "title": "rattan chair"}]}))
        # well within the 30 s visibility timeout: a failed batch is released at once
        wait_for(lambda: int(str(stats()["delivered"])) >= 1, timeout=15,
                 what="delivery once the cell is back")
        wait_for(lambda: int(str(stats()["failed"])) >= 1, timeout=15,
                 what="the first batch, released early and then refused by the new cell")
        hits = requests.post(f"{cell2}/indexes/shop/search", json={"q": "rattan"},
                             headers={"x-api-key": key}).json()["hits"]
        assert [h["_id"] for h in hits] == ["r2"]
        assert indexer.terminate() == 0


def test_a_missing_queue_is_reported_and_retried(stack: QueueStack, tmp_path: Path) -> None:
    env = {**stack.env, "ECOM_INDEXER_QUEUE": "never-provisioned"}
    with ServiceStarter(tmp_path) as start:
        indexer = start.start("ecom_indexer", env=env)
        wait_for(lambda: "aws_provision" in (requests.get(
            f"{indexer.base_url}/stats").json()["lastError"] or ""), what="the reason")
        assert requests.get(f"{indexer.base_url}/healthz").status_code == 200
        bare = {k: v for k, v in stack.env.items() if k != "HIPPODROME_TABLE_PREFIX"}
        refused = start.spawn("ecom_indexer", env=bare, port=free_port())
        assert refused.wait_exit() == EXIT_CONFIG
        assert "ECOM_INDEXER_QUEUE is not set" in refused.output()


class _PoisonCell:
    """The real cell behind a loopback proxy that answers 500 to any write holding
    `poison`: a batch the cell always fails on (its own bug, say) while it takes every
    other. The real cell has no such batch on demand; everything else is forwarded."""

    def __init__(self, cell: str) -> None:
        import http.server
        import threading
        import urllib.error
        import urllib.request

        self.outage = False
        """Every write answered `status`: the whole cell failing, not one batch."""
        self.status = 500
        self.slow = 0.0
        """Seconds each write waits before it is answered (a cell under load)."""
        self.blips: dict[bytes, int] = {}
        """Writes holding the key fail this many more times (a hiccup after an outage)."""
        proxy = self

        def blip(body: bytes) -> bool:
            key = next((k for k, n in proxy.blips.items() if n > 0 and k in body), None)
            if key is not None:
                proxy.blips[key] -= 1
            return key is not None

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                time.sleep(proxy.slow)
                if b"poison" in body or proxy.outage or blip(body):
                    status, data = proxy.status, b'{"error": "internal error (poisoned)"}'
                else:
                    req = urllib.request.Request(cell + self.path, data=body, method="POST",
                                                 headers=dict(self.headers.items()))
                    try:
                        with urllib.request.urlopen(req, timeout=10) as resp:
                            status, data = resp.status, resp.read()
                    except urllib.error.HTTPError as exc:
                        status, data = exc.code, exc.read()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_batch_the_cell_always_fails_on_does_not_hold_back_the_others(
        stack: QueueStack, tmp_path: Path) -> None:
    """A poison batch (5xx every time) received with good ones: the first 5xx ended the
    receive, the good ones stayed invisible for the queue's 30 s and came back behind
    it again (adv28 k/4). Each is now tried on its own; the poison one is retried, and
    it was retried for as long as the service ran, each time delaying what came behind:
    after POISON_AFTER 5xx answers, each after another batch went in, it is dropped and
    counted (good batches keep coming here, as on a live queue)."""
    sqs = stack.client("sqs")
    name = f"{stack.prefix}poison-{uuid.uuid4().hex[:6]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]  # 30 s visibility, as provisioned
    cell = _PoisonCell(stack.url("cell"))
    try:
        for n, title in enumerate(["poison pill", "garnet ring", "garnet vase", "garnet cup"]):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
                {"batchId": f"p{n}", "index": "shop", "apiKey": stack.key,
                 "documents": [{"_id": f"g{n}", "title": title}]}))
        env = {**stack.env, "ECOM_INDEXER_QUEUE": name, "MARQO_BASE_URL": cell.url}
        with ServiceStarter(tmp_path) as start:
            indexer = start.start("ecom_indexer", env=env)
            # well within the 30 s the good ones were held for
            found = wait_for(lambda: sorted(stack.search("garnet")) == ["g1", "g2", "g3"],
                             timeout=15, what="the good batches past the poison one")
            assert found

            def stats() -> dict[str, int]:
                return dict(requests.get(f"{indexer.base_url}/stats", timeout=5).json())

            # counted after the cell took them and the message was deleted: a moment later
            wait_for(lambda: stats()["delivered"] == 3, what="three deliveries counted")
            sent = 3

            def one_more_good_batch() -> bool:
                nonlocal sent
                if stats()["failed"] == 0 and stats()["delivered"] == sent:
                    sent += 1
                    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
                        {"batchId": f"p{sent}", "index": "shop", "apiKey": stack.key,
                         "documents": [{"_id": f"g{sent}", "title": "garnet more"}]}))
                return stats()["failed"] == 1

            wait_for(one_more_good_batch, timeout=90, what="the poison batch dropped")
            final = stats()
            assert final["retries"] >= POISON_AFTER - 1 and final["delivered"] >= 3 + \
                POISON_AFTER - 2, final
            assert "batch p0 for index 'shop' failed for good: cell answered 500" in \
                final["lastError"] and "it is this batch the cell fails on" in \
                final["lastError"], final
            # the good batch sent last may still be on its way in as the poison one goes
            wait_for(lambda: stats()["delivered"] == sent, what="every good batch in")

            def left() -> dict[str, str]:
                return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible"])["Attributes"])

            wait_for(lambda: set(left().values()) == {"0"}, what="the queue empty")
            assert stats()["failed"] == 1, stats()
            assert indexer.terminate() == 0
    finally:
        cell.close()


@pytest.mark.parametrize("status", [500, 429, 503])
def test_a_batch_that_waited_through_an_outage_is_delivered(stack: QueueStack, tmp_path: Path,
                                                           status: int) -> None:
    """The other side of dropping a poison batch: a cell answering every batch 5xx (an
    outage) takes none in, however often each is retried. The outage's answers counted
    against a batch, so one more after the cell came back dropped it (adv31 s/2); and
    five rate limits (429) called a good batch poison (adv31 s/5). Answers in a row with
    nothing going in between count once, and "not now" answers not at all: once the cell
    is back every batch goes in, one that hiccups twice more after the others included."""
    sqs = stack.client("sqs")
    name = f"{stack.prefix}allfail-{uuid.uuid4().hex[:6]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    cell = _PoisonCell(stack.url("cell"))
    cell.outage, cell.status = True, status
    try:
        for n in range(3):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
                {"batchId": f"a{n}", "index": "shop", "apiKey": stack.key,
                 "documents": [{"_id": f"a{n}", "title": f"amber {n}"}]}))
        env = {**stack.env, "ECOM_INDEXER_QUEUE": name, "MARQO_BASE_URL": cell.url}
        with ServiceStarter(tmp_path) as start:
            indexer = start.start("ecom_indexer", env=env)

            def stats() -> dict[str, int]:
                return dict(requests.get(f"{indexer.base_url}/stats", timeout=5).json())

            wait_for(lambda: stats()["retries"] >= 2 * POISON_AFTER, timeout=90,
                     what="every batch retried past the poison count")
            assert stats()["failed"] == 0 and stats()["delivered"] == 0, stats()
            cell.blips[b"amber 0"] = 2  # fails twice more, after the others went in
            cell.outage = False
            wait_for(lambda: sorted(stack.search("amber")) == ["a0", "a1", "a2"], timeout=60,
                     what="every batch in once the cell is back")
            assert stats()["failed"] == 0, stats()
            assert indexer.terminate() == 0
    finally:
        cell.close()


def test_a_stop_hands_back_the_batch_a_slow_cell_holds(stack: QueueStack,
                                                       tmp_path: Path) -> None:
    """SIGTERM while the cell takes its time with a batch: the service waited 5 s for its
    thread (killed at that same 5 s by `hd stop`) and the batch came back only after the
    queue's 30 s (adv31 s/4). It exits within a second or two and hands the batch back,
    visible again at once."""
    sqs = stack.client("sqs")
    name = f"{stack.prefix}slow-{uuid.uuid4().hex[:6]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]  # 30 s visibility, as provisioned
    cell = _PoisonCell(stack.url("cell"))
    cell.slow = 20.0
    try:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
            {"batchId": "s0", "index": "shop", "apiKey": stack.key,
             "documents": [{"_id": "s0", "title": "slate"}]}))
        env = {**stack.env, "ECOM_INDEXER_QUEUE": name, "MARQO_BASE_URL": cell.url}

        def counts() -> dict[str, str]:
            return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])[
                "Attributes"])

        with ServiceStarter(tmp_path) as start:
            indexer = start.start("ecom_indexer", env=env)
            wait_for(lambda: counts()["ApproximateNumberOfMessagesNotVisible"] == "1", 20,
                     what="the batch received and held by the slow cell")
            assert indexer.terminate(timeout=4.0) == 0
        wait_for(lambda: counts()["ApproximateNumberOfMessages"] == "1", 10,
                 what="the batch visible again, not after the queue's 30 s")
    finally:
        cell.slow = 0.0
        cell.close()
