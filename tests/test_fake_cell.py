"""fake_cell as a real process: routes and statuses, tenancy, relevance and filters,
persistence across SIGTERM and kill -9, bounded concurrency; BM25 pruning is checked
against a brute-force scorer."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from service_process import ROOT, ServiceProcess, ServiceStarter, free_port

from hippo_platform.services.fake_cell.journal import Journal
from hippo_platform.services.fake_cell.search import K1, B, SearchIndex, parse_filter, tokenize
from hippo_platform.services.fake_cell.store import Cell

DOCS = [
    {"_id": "both", "title": "red running shoes", "color": "red", "price": 80},
    {"_id": "shoes", "title": "blue shoes for walking", "color": "blue", "price": 60},
    {"_id": "red", "title": "red hat", "color": "red", "tags": ["sale", "summer"]},
    {"_id": "other", "title": "green scarf", "color": "dark green", "instock": True},
]


class CellClient:
    def __init__(self, base: str, key: str = "") -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["x-api-key"] = key

    def __call__(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=10, **kw)


def new_account(base: str, name: str = "acme") -> CellClient:
    response = requests.post(f"{base}/accounts", json={"name": name}, timeout=10)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["accountId"].startswith("acc_") and body["apiKey"]
    return CellClient(base, body["apiKey"])


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    folder = tmp_path_factory.mktemp("cell")
    with ServiceStarter(folder) as start:
        yield start.start("fake_cell", args=["--state-dir", str(folder / "state")])


@pytest.fixture(scope="module")
def api(cell: ServiceProcess) -> CellClient:
    client = new_account(cell.base_url)
    assert client("POST", "/indexes/products", json={"model": "lexical"}).status_code == 201
    added = client("POST", "/indexes/products/documents", json={"documents": DOCS})
    assert added.status_code == 200 and added.json()["errors"] is False
    return client


@pytest.fixture
def start(tmp_path: Path) -> Iterator[ServiceStarter]:
    with ServiceStarter(tmp_path) as starter:
        yield starter


def search(api: CellClient, q: str, **extra: Any) -> list[str]:
    response = api("POST", "/indexes/products/search", json={"q": q, **extra})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == q and isinstance(body["processingTimeMs"], float)
    return [hit["_id"] for hit in body["hits"]]


def test_index_listing_details_and_stats(api: CellClient) -> None:
    assert [ix["indexName"] for ix in api("GET", "/indexes").json()["results"]] == ["products"]
    detail = api("GET", "/indexes/products").json()
    assert detail["settings"] == {"model": "lexical"} and detail["numberOfDocuments"] == 4
    stats = api("GET", "/indexes/products/stats").json()
    assert stats["numberOfDocuments"] == 4


def test_relevance_more_matching_terms_rank_first(api: CellClient) -> None:
    ids = search(api, "red shoes")
    assert ids[0] == "both"
    assert set(ids) == {"both", "shoes", "red"}
    assert search(api, "RED shoes!", limit=1) == ["both"]
    assert search(api, "nothing matches this") == []


def test_filters(api: CellClient) -> None:
    assert search(api, "red shoes", filter="color:red") == ["both", "red"]
    assert search(api, "", filter='color:"dark green" AND instock:true') == ["other"]
    assert search(api, "*", filter="tags:sale") == ["red"]
    assert search(api, "shoes", filter="price:60.0") == ["shoes"]
    assert search(api, "", filter="color:Red") == []
    assert len(search(api, "")) == 4


@pytest.mark.parametrize(
    "body",
    [
        {"q": "x", "filter": "color red"},
        {"q": "x", "filter": "color:red OR color:blue"},
        {"q": "x", "limit": 0},
        {"q": "x", "limit": "ten"},
        {"q": 5},
    ],
)
def test_bad_search_requests_are_400(api: CellClient, body: dict[str, Any]) -> None:
    assert api("POST", "/indexes/products/search", json=body).status_code == 400


def test_documents_get_generated_ids_and_delete(api: CellClient) -> None:
    added = api("POST", "/indexes/products/documents", json={"documents": [{"title": "new"}]})
    new_id = added.json()["items"][0]["_id"]
    assert api("GET", f"/indexes/products/documents/{new_id}").json()["title"] == "new"
    assert api("DELETE", f"/indexes/products/documents/{new_id}").status_code == 200
    assert api("GET", f"/indexes/products/documents/{new_id}").status_code == 404
    assert api("DELETE", f"/indexes/products/documents/{new_id}").status_code == 404
    assert search(api, "new") == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/indexes/missing", None, 404),
        ("GET", "/indexes/missing/stats", None, 404),
        ("POST", "/indexes/missing/search", {"q": "x"}, 404),
        ("POST", "/indexes/missing/documents", {"documents": []}, 404),
        ("GET", "/indexes/products/documents/nope", None, 404),
        ("GET", "/accounts/acc_nope", None, 404),
        ("GET", "/accounts/acc_nope/indexes", None, 404),
        ("GET", "/no/such/route", None, 404),
        ("PUT", "/indexes/products", None, 405),
        ("GET", "/indexes/products/search", None, 405),
        ("POST", "/indexes/products", {}, 409),
        ("POST", "/indexes/bad name!", {}, 400),
        ("POST", "/indexes/products/documents", {"documents": "x"}, 400),
        ("POST", "/indexes/products/documents", {"documents": [1]}, 400),
        ("POST", "/indexes/products/documents", {"documents": [{"_id": 7}]}, 400),
        ("POST", "/indexes/products/documents", {"documents": [{"_x": 1}]}, 400),
        ("POST", "/accounts", {"nam": "x"}, 400),
    ],
)
def test_error_statuses(api: CellClient, method: str, path: str, body: Any, status: int) -> None:
    response = api(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]


def test_keys_scope_everything_to_one_account(cell: ServiceProcess, api: CellClient) -> None:
    assert CellClient(cell.base_url)("GET", "/indexes").status_code == 401
    assert CellClient(cell.base_url, "hk_bad")("GET", "/indexes/products").status_code == 401
    other = new_account(cell.base_url, "other")
    assert other("GET", "/indexes").json() == {"results": []}
    assert other("GET", "/indexes/products").status_code == 404
    assert other("POST", "/indexes/products", json={}).status_code == 201  # own namespace
    assert other("GET", "/account").json()["name"] == "other"
    accounts = requests.get(f"{cell.base_url}/accounts", timeout=5).json()["results"]
    assert {"acme", "other"} <= {a["name"] for a in accounts}
    assert all("apiKey" not in a for a in accounts)


def test_fifty_concurrent_clients_all_answered(cell: ServiceProcess, api: CellClient) -> None:
    failures: list[str] = []
    deadline = time.monotonic() + 30

    def client(n: int) -> None:
        session = requests.Session()
        session.headers["x-api-key"] = api.session.headers["x-api-key"]
        base = f"{cell.base_url}/indexes/products"
        for i in range(4):
            if time.monotonic() > deadline:
                failures.append(f"{n}: out of time")
                return
            try:
                if i == 1:
                    doc = {"_id": f"load-{n}", "title": f"load doc {n} shoes"}
                    r = session.post(f"{base}/documents", json={"documents": [doc]}, timeout=15)
                else:
                    r = session.post(f"{base}/search", json={"q": "red shoes"}, timeout=15)
                if r.status_code != 200:
                    failures.append(f"{n}/{i}: {r.status_code}")
            except requests.RequestException as exc:
                failures.append(f"{n}/{i}: {exc}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert not failures
    assert requests.get(f"{cell.base_url}/healthz", timeout=5).json()["status"] == "ok"
    assert api("GET", "/indexes/products/documents/load-49").status_code == 200
    for n in range(50):
        api("DELETE", f"/indexes/products/documents/load-{n}")


def _fill(base: str) -> tuple[CellClient, str]:
    client = new_account(base)
    client("POST", "/indexes/keep", json={"k": 1})
    client("POST", "/indexes/keep/documents", json={"documents": DOCS})
    client("DELETE", "/indexes/keep/documents/other")
    return client, client.session.headers["x-api-key"]


def _assert_restored(base: str, key: str) -> None:
    client = CellClient(base, key)
    assert client("GET", "/indexes/keep").json()["settings"] == {"k": 1}
    assert client("GET", "/indexes/keep/stats").json()["numberOfDocuments"] == 3
    hits = client("POST", "/indexes/keep/search", json={"q": "red shoes"}).json()["hits"]
    assert [h["_id"] for h in hits][0] == "both"
    assert client("GET", "/indexes/keep/documents/other").status_code == 404


def test_state_survives_sigterm_restart(start: ServiceStarter, tmp_path: Path) -> None:
    args = ["--state-dir", str(tmp_path / "state")]
    first = start.start("fake_cell", args=args)
    _, key = _fill(first.base_url)
    assert first.terminate() == 0
    assert (tmp_path / "state" / "snapshot.json").exists()
    second = start.start("fake_cell", args=args)
    _assert_restored(second.base_url, key)


def test_acknowledged_writes_survive_kill_9(start: ServiceStarter, tmp_path: Path) -> None:
    args = ["--state-dir", str(tmp_path / "state")]
    first = start.start("fake_cell", args=args)
    _, key = _fill(first.base_url)
    first.kill()  # no shutdown hook runs: only the journal can have kept the data
    with open(tmp_path / "state" / "journal.jsonl", "ab") as journal:
        journal.write(b'{"op":"docs.put","accountId":"acc_x","na')  # a torn last write
    second = start.start("fake_cell", args=args)
    _assert_restored(second.base_url, key)
    CellClient(second.base_url, key)("POST", "/indexes/after", json={})
    second.kill()
    third = start.start("fake_cell", args=args)
    assert CellClient(third.base_url, key)("GET", "/indexes/after").status_code == 200


def test_one_state_folder_one_cell(start: ServiceStarter, tmp_path: Path) -> None:
    args = ["--state-dir", str(tmp_path / "state")]
    start.start("fake_cell", args=args)
    rival = start.spawn("fake_cell", args=args, port=0)
    assert rival.wait_exit() == 2
    assert "in use by another process" in rival.output()


@pytest.mark.parametrize("planted", ["journal.jsonl", "snapshot.json", ".lock", "folder"])
def test_state_is_never_read_or_written_through_a_link(start: ServiceStarter, tmp_path: Path,
                                                       planted: str) -> None:
    """A link at journal.jsonl: fake_cell cut the file it led to to 0 bytes ("journal
    cut at byte 0") and wrote its journal there, keys and all (adv54 F7); at `.lock`, a
    traceback; the state folder a link: its files went wherever it led. Now it says
    which link, and does not start; the file led to is as it was."""
    state, victim = tmp_path / "state", tmp_path / "victim.txt"
    victim.write_bytes(b"VICTIM\n")
    if planted == "folder":
        (tmp_path / "elsewhere").mkdir()
        state.symlink_to(tmp_path / "elsewhere")
    else:
        state.mkdir()
        (state / planted).symlink_to(victim)
    rival = start.spawn("fake_cell", args=["--state-dir", str(state)], port=0)
    assert rival.wait_exit() == 1
    said = rival.output()
    assert "is a symbolic link" in said and "remove the link" in said, said
    assert "Traceback" not in said, said
    assert victim.read_bytes() == b"VICTIM\n"
    if planted == "folder":
        assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_named_pipe_for_the_journal_is_refused_not_waited_on(start: ServiceStarter,
                                                              tmp_path: Path) -> None:
    import os

    state = tmp_path / "state"
    state.mkdir()
    os.mkfifo(state / "journal.jsonl")
    rival = start.spawn("fake_cell", args=["--state-dir", str(state)], port=0)
    assert rival.wait_exit() == 1
    assert "is a named pipe (FIFO), where the service keeps a file" in rival.output()


def _brute_force(docs: dict[str, str], query: str) -> dict[str, float]:
    counts = {i: Counter(tokenize(text)) for i, text in docs.items()}
    n = len(docs)
    avg = sum(sum(c.values()) for c in counts.values()) / n
    scores: dict[str, float] = {}
    for term in set(tokenize(query)):
        holders = [i for i, c in counts.items() if term in c]
        idf = math.log(1 + (n - len(holders) + 0.5) / (len(holders) + 0.5))
        for i in holders:
            tf, length = counts[i][term], sum(counts[i].values())
            gain = idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avg))
            scores[i] = scores.get(i, 0.0) + gain
    return scores


def test_pruned_bm25_equals_brute_force() -> None:
    rng = random.Random(7)
    words = [f"w{i}" for i in range(60)]
    weights = [1 / (r + 1) for r in range(60)]
    docs = {
        f"d{i}": " ".join(rng.choices(words, weights, k=rng.randint(3, 30))) for i in range(400)
    }
    index = SearchIndex()
    for doc_id, text in docs.items():
        index.add(doc_id, {"text": text, "group": int(doc_id[-1])})  # numbers: not tokens
    allowed = index.filter_ids(parse_filter("group:3"))
    assert allowed == {d for d in docs if d.endswith("3")}
    for _ in range(60):
        query = " ".join(rng.choices(words, weights, k=rng.randint(1, 4)))
        expected = _brute_force(docs, query)
        for subset in (None, allowed):
            pool = {i: s for i, s in expected.items() if subset is None or i in subset}
            got = index.top(query, 10, subset)
            best = sorted(pool.values(), reverse=True)[:10]
            assert [round(s, 9) for _, s in got] == [round(s, 9) for s in best], query
            assert all(math.isclose(pool[i], s) for i, s in got)


WEDGED_CELL = """
import sys, threading, time
from hippo_platform.services.common.runner import serve
from hippo_platform.services.common.watchdog import Watchdog
from hippo_platform.services.fake_cell.api import build_app
from hippo_platform.services.fake_cell.store import Cell

cell = Cell()
app = build_app(cell, lock_timeout=0.3)

def wedge(base_url):
    Watchdog(base_url + "/healthz", interval=0.2, timeout=3.0, failures=2).start()
    threading.Timer(0.5, cell.lock.acquire).start()  # a store that never lets go

app.start_hooks.append(wedge)
sys.exit(serve(app, "127.0.0.1", int(sys.argv[1])))
"""


def test_watchdog_restarts_a_wedged_store(tmp_path: Path) -> None:
    """/healthz fails when the store lock is stuck, so the watchdog exits the process
    (code 70) for the orchestrator to restart, though the HTTP layer still answers."""
    log = tmp_path / "wedged.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", WEDGED_CELL, str(free_port())],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        assert proc.wait(timeout=20) == 70, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    out = log.read_text()
    assert "GET /healthz 503" in out and "exiting for a restart" in out


def _open_cell(folder: Path, compact_at: int = 1 << 22) -> Cell:
    journal = Journal(folder, fsync=False, compact_at=compact_at)
    snapshot, ops = journal.load()
    cell = Cell(journal)
    cell.restore(snapshot, ops)
    return cell


def test_journal_compacts_and_replays_nothing_twice(tmp_path: Path) -> None:
    cell = _open_cell(tmp_path, compact_at=2000)
    key = cell.create_account("a").api_key
    cell.create_index(key, "ix", {})
    for n in range(60):
        cell.put_documents(key, "ix", [{"_id": f"d{n}", "text": f"word{n} " * 5}])
    cell.delete_documents(key, "ix", ["d0"], must_exist=True)
    assert (tmp_path / "snapshot.json").exists()  # compacted along the way
    assert cell.journal is not None and cell.journal.journal_bytes < 2000
    # a crash between writing the snapshot and emptying the journal: both hold the ops
    journal_copy = (tmp_path / "journal.jsonl").read_bytes()
    cell.journal.compact(cell.snapshot())
    (tmp_path / "journal.jsonl").write_bytes(journal_copy)
    del cell
    snapshot, ops = Journal(tmp_path, fsync=False).load()
    assert journal_copy and ops == []  # every journalled op is already in the snapshot
    again = _open_cell(tmp_path)
    docs = again.indexes[(next(iter(again.accounts)), "ix")].docs
    assert len(docs) == 59 and "d0" not in docs
    assert again.search(key, "ix", "word59", [], 5, 0)[0]["_id"] == "d59"


def test_a_state_folder_deleted_under_the_cell_is_written_again(tmp_path: Path) -> None:
    """`rm -rf .hippodrome/state/fake_cell` (`git clean -xdf`) under a running cell:
    every change from then on was acknowledged into the deleted journal, and a kill -9
    lost them all, the account included (s/6). The next change writes the state again."""
    import shutil

    folder = tmp_path / "cell"
    cell = _open_cell(folder)
    key = cell.create_account("a").api_key
    cell.create_index(key, "ix", {})
    cell.put_documents(key, "ix", [{"_id": "before", "text": "one"}])
    shutil.rmtree(folder)
    cell.put_documents(key, "ix", [{"_id": "after", "text": "two"}])
    del cell  # as kill -9: nothing more is written
    again = _open_cell(folder)
    docs = again.indexes[(next(iter(again.accounts)), "ix")].docs
    assert {"before", "after"} <= set(docs)
