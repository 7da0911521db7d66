"""Index aliases through real fake_cell and controller processes: an alias reads and
writes its index, moves in one step (readers racing the move see the old or the new
index, never an error), never dangles, survives kill -9 and SIGTERM, and bad input is a
4xx JSON naming the problem."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from service_process import ServiceProcess, ServiceStarter


@pytest.fixture
def start(tmp_path: Path) -> Iterator[ServiceStarter]:
    with ServiceStarter(tmp_path) as starter:
        yield starter


def stack(start: ServiceStarter) -> tuple[ServiceProcess, str, dict[str, str]]:
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    ctl = start.start("controller", env={"CONTROL_PLANE_URL_OVERRIDE": cell.base_url})
    made = requests.post(f"{ctl.base_url}/api/v2/accounts", json={"name": "a"}, timeout=10)
    key = {"x-api-key": made.json()["apiKey"]}
    for name, color in (("v1", "red"), ("v2", "blue")):
        assert requests.post(f"{ctl.base_url}/api/v2/indexes", headers=key, timeout=10,
                             json={"indexName": name}).status_code == 201
        docs = [{"_id": f"{name}-{i}", "title": f"shoe {color}"} for i in range(5)]
        assert requests.post(f"{cell.base_url}/indexes/{name}/documents", headers=key,
                             json={"documents": docs}, timeout=10).status_code == 200
    return cell, ctl.base_url, key


def ids(base: str, key: dict[str, str], index: str) -> set[str]:
    got = requests.post(f"{base}/indexes/{index}/search", headers=key, timeout=10,
                        json={"q": "shoe", "limit": 100})
    assert got.status_code == 200, got.text
    return {h["_id"] for h in got.json()["hits"]}


def test_an_alias_reads_writes_and_moves(start: ServiceStarter) -> None:
    cell, ctl, key = stack(start)
    made = requests.put(f"{ctl}/api/v2/aliases/live", headers=key, json={"index": "v1"},
                        timeout=10)
    assert made.status_code == 201 and made.json()["previousIndex"] is None, made.text
    assert ids(cell.base_url, key, "live") == ids(cell.base_url, key, "v1")
    added = requests.post(f"{cell.base_url}/indexes/live/documents", headers=key, timeout=10,
                          json={"documents": [{"_id": "new", "title": "shoe new"}]})
    assert added.status_code == 200
    assert "new" in ids(cell.base_url, key, "v1")
    info = requests.get(f"{ctl}/api/v2/indexes/live", headers=key, timeout=10).json()
    assert info["indexName"] == "v1" and info["numberOfDocuments"] == 6
    moved = requests.put(f"{ctl}/api/v2/aliases/live", headers=key, json={"index": "v2"},
                         timeout=10)
    assert moved.status_code == 200 and moved.json()["previousIndex"] == "v1"
    assert ids(cell.base_url, key, "live") == ids(cell.base_url, key, "v2")
    forked = requests.post(f"{ctl}/api/v2/indexes/live/fork", headers=key, timeout=10,
                           json={"target": "snap"})  # a fork of an alias copies its index
    assert forked.status_code == 201 and forked.json()["source"] == "live", forked.text
    info = requests.get(f"{cell.base_url}/indexes/snap", headers=key, timeout=10).json()
    assert info["forkedFrom"]["source"] == "v2"
    assert ids(cell.base_url, key, "snap") == ids(cell.base_url, key, "v2")
    again = requests.post(f"{cell.base_url}/indexes/live/fork", headers=key, timeout=10,
                          json={"target": "snap", "forkId": info["forkedFrom"]["forkId"]})
    assert again.status_code == 200, again.text  # a retried step finds its copy
    listed = requests.get(f"{ctl}/api/v2/aliases", headers=key, timeout=10).json()
    assert listed["results"] == [{"alias": "live", "index": "v2"}]
    assert requests.delete(f"{ctl}/api/v2/indexes/v1", headers=key,
                           timeout=10).status_code == 200  # no alias holds it any more
    gone = requests.delete(f"{ctl}/api/v2/aliases/live", headers=key, timeout=10)
    assert gone.status_code == 200
    assert requests.get(f"{ctl}/api/v2/aliases/live", headers=key,
                        timeout=10).status_code == 404


def test_readers_racing_a_move_see_one_index_or_the_other(start: ServiceStarter) -> None:
    cell, ctl, key = stack(start)
    requests.put(f"{ctl}/api/v2/aliases/live", headers=key, json={"index": "v1"}, timeout=10)
    v1, v2 = ids(cell.base_url, key, "v1"), ids(cell.base_url, key, "v2")
    seen: list[set[str]] = []
    stop = threading.Event()

    def read() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                got = session.post(f"{cell.base_url}/indexes/live/search", headers=key,
                                   json={"q": "shoe", "limit": 100}, timeout=10)
                seen.append({h["_id"] for h in got.json()["hits"]} if got.ok else {got.text})

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for n in range(30):
            target = "v2" if n % 2 == 0 else "v1"
            assert requests.put(f"{ctl}/api/v2/aliases/live", headers=key, timeout=10,
                                json={"index": target}).status_code == 200
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert seen and all(s in (v1, v2) for s in seen), [s for s in seen if s not in (v1, v2)]


def test_bad_alias_requests_are_4xx_json(start: ServiceStarter) -> None:
    cell, ctl, key = stack(start)
    requests.put(f"{ctl}/api/v2/aliases/live", headers=key, json={"index": "v1"}, timeout=10)
    url = f"{ctl}/api/v2/aliases"
    cases: list[tuple[str, str, dict[str, str], Any, int, str]] = [
        ("PUT", "/x", key, {"index": "nosuch"}, 404, "not found"),
        ("PUT", "/x", key, {"index": "live"}, 404, "not at other aliases"),
        ("PUT", "/v2", key, {"index": "v1"}, 409, "is an index"),
        ("PUT", "/bad%20name", key, {"index": "v1"}, 400, "bad alias name"),
        ("PUT", "/x", key, {"index": 3}, 400, "index"),
        ("PUT", "/x", key, ["v1"], 400, ""),
        ("PUT", "/x", {}, {"index": "v1"}, 401, "x-api-key"),
        ("GET", "/nosuch", key, None, 404, "alias 'nosuch' not found"),
        ("DELETE", "/nosuch", key, None, 404, "alias 'nosuch' not found"),
    ]
    for method, path, headers, body, status, text in cases:
        got = requests.request(method, url + path, headers=headers, json=body, timeout=10)
        assert got.status_code == status, (method, path, got.text)
        assert text in got.json()["error"], (path, got.text)
    held = requests.delete(f"{ctl}/api/v2/indexes/v1", headers=key, timeout=10)
    assert held.status_code == 409 and "live" in held.json()["error"]
    by_alias = requests.delete(f"{ctl}/api/v2/indexes/live", headers=key, timeout=10)
    assert by_alias.status_code == 400 and "is an alias" in by_alias.json()["error"]
    clash = requests.post(f"{ctl}/api/v2/indexes", headers=key, json={"indexName": "live"},
                          timeout=10)
    assert clash.status_code == 409 and "is an alias" in clash.json()["error"]
    other = requests.post(f"{ctl}/api/v2/accounts", json={"name": "o"}, timeout=10).json()
    stranger = {"x-api-key": other["apiKey"]}
    assert requests.get(f"{url}/live", headers=stranger, timeout=10).status_code == 404
    assert requests.post(f"{cell.base_url}/indexes/live/search", headers=stranger,
                         json={"q": "shoe"}, timeout=10).status_code == 404


def test_aliases_survive_kill_and_sigterm(start: ServiceStarter) -> None:
    cell, ctl, key = stack(start)
    requests.put(f"{ctl}/api/v2/aliases/live", headers=key, json={"index": "v1"}, timeout=10)
    requests.put(f"{ctl}/api/v2/aliases/live", headers=key, json={"index": "v2"}, timeout=10)
    requests.put(f"{ctl}/api/v2/aliases/old", headers=key, json={"index": "v1"}, timeout=10)
    requests.delete(f"{ctl}/api/v2/aliases/old", headers=key, timeout=10)
    want = ids(cell.base_url, key, "v2")
    state = str(start.folder / "cell")
    cell.kill()
    again = start.start("fake_cell", args=["--state-dir", state])
    assert ids(again.base_url, key, "live") == want
    assert again.terminate() == 0  # a snapshot now holds the alias
    third = start.start("fake_cell", args=["--state-dir", state])
    got = requests.get(f"{third.base_url}/aliases", headers=key, timeout=10).json()
    assert got["results"] == [{"alias": "live", "index": "v2"}]
