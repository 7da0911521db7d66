"""ecom_ingest as a real process: the batch API on the memory store, and on a real
PostgreSQL (a private cluster) where accepted batches survive SIGTERM and kill -9."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from service_process import ServiceProcess, ServiceStarter, free_port

pytest_plugins = ["postgres_server"]

KEY = {"x-api-key": "hk_test"}
STORE_ENV = "HIPPODROME_ECOM_INGEST_STORE"
URL_ENV = "HIPPODROME_ECOM_INGEST_DATABASE_URL"


def post_batch(base: str, docs: list[dict[str, Any]], index: str = "shop") -> requests.Response:
    body = {"index": index, "accountId": "acc_1", "documents": docs}
    return requests.post(f"{base}/batches", json=body, headers=KEY, timeout=10)


def pending(base: str, limit: int = 1000) -> list[dict[str, Any]]:
    answer = requests.get(f"{base}/batches?status=pending&limit={limit}")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["batches"])


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with ServiceStarter(tmp_path_factory.mktemp("ingest")) as start:
        yield start.start("ecom_ingest")


def test_a_batch_is_listed_pending_with_ids_and_key_then_acked(ingest: ServiceProcess) -> None:
    base = ingest.base_url
    made = post_batch(base, [{"title": "red shoe"}, {"_id": "d2", "title": "blue"}])
    assert made.status_code == 201, made.text
    batch_id = made.json()["batchId"]
    assert made.json()["count"] == 2
    listed = {b["batchId"]: b for b in pending(base)}[batch_id]
    assert listed["index"] == "shop" and listed["accountId"] == "acc_1"
    assert listed["apiKey"] == "hk_test" and listed["status"] == "pending"
    ids = [d["_id"] for d in listed["documents"]]
    assert ids[1] == "d2" and ids[0], "a document without _id gets one at acceptance"
    assert requests.get(f"{base}/batches/{batch_id}").json()["documents"][0]["_id"] == ids[0]
    acked = requests.post(f"{base}/batches/{batch_id}/ack")
    assert acked.status_code == 200 and acked.json()["status"] == "done"
    assert "documents" not in acked.json(), "done batches drop their documents"
    assert requests.post(f"{base}/batches/{batch_id}/ack").json()["status"] == "done"
    assert batch_id not in {b["batchId"] for b in pending(base)}
    done = requests.get(f"{base}/batches", params={"status": "done"}).json()["batches"]
    assert batch_id in {b["batchId"] for b in done}


def test_fail_marks_a_pending_batch_and_leaves_a_done_one(ingest: ServiceProcess) -> None:
    base = ingest.base_url
    first = post_batch(base, [{"a": 1}]).json()["batchId"]
    failed = requests.post(f"{base}/batches/{first}/fail", json={"error": "index gone"})
    assert failed.json()["status"] == "failed" and failed.json()["error"] == "index gone"
    second = post_batch(base, [{"a": 2}]).json()["batchId"]
    requests.post(f"{base}/batches/{second}/ack")
    kept = requests.post(f"{base}/batches/{second}/fail", json={"error": "late"}).json()
    assert kept["status"] == "done" and kept["error"] is None
    stats = requests.get(f"{base}/stats").json()
    assert stats["store"] == "memory" and stats["failed"] >= 1 and stats["done"] >= 1


def test_oldest_first_and_limit(ingest: ServiceProcess) -> None:
    base = ingest.base_url
    made = [post_batch(base, [{"n": n}], index="order").json()["batchId"] for n in range(3)]
    listed = [b["batchId"] for b in pending(base) if b["index"] == "order"]
    assert listed == made
    assert len(pending(base, limit=1)) == 1


@pytest.mark.parametrize(
    ("body", "headers", "needle"),
    [
        (b"{not json", KEY, "malformed JSON"),
        (b'{"index": "x", "accountId": "a", "documents": [{}]}', {}, "x-api-key"),
        (b'{"accountId": "a", "documents": [{}]}', KEY, "'index'"),
        (b'{"index": "x", "documents": [{}]}', KEY, "'accountId'"),
        (b'{"index": "x", "accountId": "a", "documents": {}}', KEY, "'documents'"),
        (b'{"index": "x", "accountId": "a", "documents": []}', KEY, "must not be empty"),
        (b'{"index": "x", "accountId": "a", "documents": [1]}', KEY, "documents[0]"),
        (b'{"index": "x", "accountId": "a", "documents": [{"_id": 5}]}', KEY, "_id"),
        (b"[1, 2]", KEY, "JSON object"),
    ],
)
def test_bad_uploads_are_400_naming_the_problem(
    ingest: ServiceProcess, body: bytes, headers: dict[str, str], needle: str
) -> None:
    answer = requests.post(f"{ingest.base_url}/batches", data=body, headers=headers)
    assert answer.status_code == 400 and needle in answer.json()["error"]


def test_a_lone_surrogate_is_refused_and_later_uploads_still_flow(ingest: ServiceProcess) -> None:
    """An upload holding `\\ud800` was taken (202), and then every `GET /batches` failed to
    encode it and closed unanswered: the indexer retried for ever and good uploads
    after it never reached the cell (adv28 k/3). A real pair (an emoji) is a character."""
    base = ingest.base_url
    bad = requests.post(f"{base}/batches", headers=KEY, data=(
        b'{"index": "sur", "accountId": "a", "documents": [{"title": "a\\ud800b"}]}'))
    assert bad.status_code == 400, bad.text
    assert "\\ud800 is half of a UTF-16 pair" in bad.json()["error"]
    good = requests.post(f"{base}/batches", headers=KEY, data=(
        b'{"index": "sur", "accountId": "a", "documents": [{"title": "ok \\ud83d\\ude00"}]}'))
    assert good.status_code == 201, good.text
    listed = [b for b in pending(base) if b["index"] == "sur"]
    assert [d["title"] for b in listed for d in b["documents"]] == ["ok \U0001f600"]


def test_unknown_records_routes_and_bad_queries(ingest: ServiceProcess) -> None:
    base = ingest.base_url
    for method, path in [("GET", "/batches/nope"), ("POST", "/batches/nope/ack")]:
        answer = requests.request(method, base + path)
        assert answer.status_code == 404 and "nope" in answer.json()["error"]
    missing = requests.post(f"{base}/batches/nope/fail", json={"error": "x"})
    assert missing.status_code == 404
    assert requests.get(f"{base}/nothing").status_code == 404
    assert requests.delete(f"{base}/batches").status_code == 405
    assert requests.get(f"{base}/batches", params={"status": "odd"}).status_code == 400
    assert requests.get(f"{base}/batches", params={"limit": "0"}).status_code == 400
    assert requests.get(f"{base}/batches", params={"limit": "x"}).status_code == 400


def test_sigterm_is_a_clean_exit(tmp_path: Path) -> None:
    with ServiceStarter(tmp_path) as start:
        svc = start.start("ecom_ingest")
        assert svc.terminate() == 0
        assert "ecom_ingest stopped" in svc.output()


# ---- PostgreSQL ------------------------------------------------------------------------


def start_pg_ingest(start: ServiceStarter, url: str, port: int | None = None) -> ServiceProcess:
    return start.start("ecom_ingest", env={STORE_ENV: "postgres", URL_ENV: url}, port=port)


def test_postgres_keeps_every_accepted_batch_across_sigterm_and_kill_9(
    tmp_path: Path, postgres_db: str
) -> None:
    with ServiceStarter(tmp_path) as start:
        svc = start_pg_ingest(start, postgres_db)  # the database does not exist yet
        assert "postgres store at" in svc.output() and "hippo-test-pg-password" not in svc.output()
        assert requests.get(f"{svc.base_url}/healthz").json()["store"] == "postgres"

        def upload(n: int) -> str:
            answer = post_batch(svc.base_url, [{"n": n, "price": n + 0.5}])
            assert answer.status_code == 201, answer.text
            return str(answer.json()["batchId"])

        with ThreadPoolExecutor(max_workers=20) as pool:
            accepted = set(pool.map(upload, range(60)))
        assert len(accepted) == 60
        assert svc.kill() == -signal.SIGKILL

        again = start_pg_ingest(start, postgres_db, port=svc.port)
        batches = {b["batchId"]: b for b in pending(again.base_url)}
        assert set(batches) == accepted
        sample = next(iter(batches.values()))
        assert sample["documents"][0]["_id"] and sample["apiKey"] == "hk_test"
        assert sample["documents"][0]["price"] == sample["documents"][0]["n"] + 0.5
        acked = sorted(accepted)[:10]
        for batch_id in acked:
            assert requests.post(f"{again.base_url}/batches/{batch_id}/ack").status_code == 200
        assert again.terminate() == 0

        third = start_pg_ingest(start, postgres_db, port=svc.port)
        stats = requests.get(f"{third.base_url}/stats").json()
        assert stats == {
            "store": "postgres",
            "pending": 50,
            "done": 10,
            "failed": 0,
            "pendingDocuments": 50,
        }
        assert {b["batchId"] for b in pending(third.base_url)} == accepted - set(acked)


def test_postgres_store_serves_the_same_api(tmp_path: Path, postgres_db: str) -> None:
    with ServiceStarter(tmp_path) as start:
        base = start_pg_ingest(start, postgres_db).base_url
        batch_id = post_batch(base, [{"a": 1}]).json()["batchId"]
        failed = requests.post(f"{base}/batches/{batch_id}/fail", json={"error": "gone"})
        assert failed.json()["status"] == "failed" and failed.json()["documents"] == [
            {"_id": failed.json()["documents"][0]["_id"], "a": 1}
        ]
        nul = post_batch(base, [{"t": "a\u0000b"}])
        assert nul.status_code == 400 and "database refused" in nul.json()["error"]
        assert requests.get(f"{base}/batches/unknown").status_code == 404
        assert requests.post(f"{base}/batches/unknown/ack").status_code == 404
        assert post_batch(base, []).status_code == 400
        listed = requests.get(f"{base}/batches", params={"status": "failed"}).json()["batches"]
        assert [b["batchId"] for b in listed] == [batch_id]


def test_postgres_restarting_under_a_running_ingest_is_503_then_back(tmp_path: Path) -> None:
    from postgres_server import start_cluster

    cluster = start_cluster()  # its own: the session's cluster must not go down
    try:
        with ServiceStarter(tmp_path) as start:
            svc = start_pg_ingest(start, cluster.url("ecom_ingest"))
            before = post_batch(svc.base_url, [{"n": 1}])
            assert before.status_code == 201
            cluster.proc.send_signal(signal.SIGINT)
            cluster.proc.wait(timeout=10)
            down = post_batch(svc.base_url, [{"n": 2}])
            assert down.status_code == 503 and "database unavailable" in down.json()["error"]
            health = requests.get(f"{svc.base_url}/healthz")
            assert health.status_code == 200 and "unavailable" in health.json()["storeStatus"]
            cluster.restart()
            after = post_batch(svc.base_url, [{"n": 3}])
            assert after.status_code == 201, after.text
            ids = {b["batchId"] for b in pending(svc.base_url)}
            assert ids == {before.json()["batchId"], after.json()["batchId"]}
            assert requests.get(f"{svc.base_url}/healthz").json()["storeStatus"] == "ok"
    finally:
        cluster.stop()


def spawn_and_wait(start: ServiceStarter, env: dict[str, str]) -> tuple[int, str]:
    svc = start.spawn("ecom_ingest", env=env, port=free_port())
    code = svc.wait_exit(timeout=20)
    return code, svc.output()


@pytest.mark.parametrize("form", ["userinfo", "query", "keywords"])
def test_unreachable_database_is_one_clear_line_not_a_traceback(tmp_path: Path,
                                                                form: str) -> None:
    """Every form psycopg takes a password in: `?password=` and libpq's `key=value`
    were printed whole, only `user:password@` was hidden."""
    port = free_port()
    url = {"userinfo": f"postgres://postgres:pw-not-shown@127.0.0.1:{port}/ecom_ingest"
                       "?sslmode=disable",
           "query": f"postgres://postgres@127.0.0.1:{port}/ecom_ingest?password=pw-not-shown",
           "keywords": f"host=127.0.0.1 port={port} user=postgres password=pw-not-shown "
                       "dbname=ecom_ingest"}[form]
    with ServiceStarter(tmp_path) as start:
        code, output = spawn_and_wait(start, {STORE_ENV: "postgres", URL_ENV: url})
    assert code == 69, output
    assert "cannot use the database" in output and URL_ENV in output
    assert f"postgresql://postgres@127.0.0.1:{port}/ecom_ingest (password hidden)" in output
    assert "Traceback" not in output and "pw-not-shown" not in output


@pytest.mark.parametrize("form", ["userinfo", "query", "keywords"])
def test_a_short_password_leaves_the_drivers_sentence_whole(tmp_path: Path, form: str) -> None:
    """The password was hidden by replacing its text everywhere in the driver's message:
    with the password `e` the reason read 'conn***ction fail***d', garbled, and the `***`
    pattern told any reader of the log what the password was."""
    port = free_port()
    url = {"userinfo": f"postgres://app:e@127.0.0.1:{port}/ecom_ingest",
           "query": f"postgres://app@127.0.0.1:{port}/ecom_ingest?password=e",
           "keywords": f"host=127.0.0.1 port={port} user=app password=e dbname=ecom_ingest"}[form]
    with ServiceStarter(tmp_path) as start:
        code, output = spawn_and_wait(start, {STORE_ENV: "postgres", URL_ENV: url})
    assert code == 69, output
    assert f"postgresql://app@127.0.0.1:{port}/ecom_ingest (password hidden)" in output
    assert "connection failed" in output and "Connection refused" in output, output
    assert "***" not in output, output


def test_a_password_with_an_unencoded_at_is_not_shown(tmp_path: Path) -> None:
    """`postgres://app:p@ssw0rdTopSecret@host/db`: libpq splits at the first '@', and the
    password's tail was shown as the host, in the URL and in the driver's sentence."""
    port = free_port()
    url = f"postgres://app:p@ssw0rdTopSecret@127.0.0.1:{port}/ecom_ingest"
    with ServiceStarter(tmp_path) as start:
        code, output = spawn_and_wait(start, {STORE_ENV: "postgres", URL_ENV: url})
    assert code == 69, output
    assert "ssw0rdTopSecret" not in output, output
    assert "write an '@' in a password as %40" in output, output


def test_the_password_is_hidden_where_it_stands_in_a_url_or_as_password_equals() -> None:
    """Where a driver's text does quote the connection string, the password is hidden in
    the places a password is written, and only there."""
    from hippo_platform.services.ecom_ingest.postgres import hide_passwords

    text = ("bad: postgres://app:s3cret@db:5432/x and postgresql://app:p%40ss@db/x?password=q "
            "and host=db password='a b\\'c' user=app; password authentication failed for 's'")
    assert hide_passwords(text) == (
        "bad: postgres://app:***@db:5432/x and postgresql://app:***@db/x?password=*** "
        "and host=db password=*** user=app; password authentication failed for 's'")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({STORE_ENV: "postgres"}, URL_ENV),
        ({STORE_ENV: "postgres", URL_ENV: " "}, URL_ENV),
        ({STORE_ENV: "redis"}, STORE_ENV),
    ],
)
def test_bad_store_configuration_names_the_variable(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    with ServiceStarter(tmp_path) as start:
        code, output = spawn_and_wait(start, env)
    assert code == 78, output
    assert needle in output and "Traceback" not in output
