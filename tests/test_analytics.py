"""Search analytics at search_proxy, with real processes (search_proxy in front of a real
fake_cell standing where global_worker would): each search answers a queryId and is
counted; click/add_to_cart/purchase events against it are counted per index and per
tenant; a bad batch records nothing; counts survive a restart and a cut-short line."""

from __future__ import annotations

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


def up(start: ServiceStarter) -> tuple[ServiceProcess, ServiceProcess, dict[str, str]]:
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    proxy = start.start("search_proxy", env={"GLOBAL_WORKER_URL": cell.base_url,
                                             "HIPPODROME_STATE_DIR": str(start.folder)})
    made = requests.post(f"{cell.base_url}/accounts", json={"name": "a"}, timeout=10).json()
    key = {"x-api-key": made["apiKey"]}
    requests.post(f"{cell.base_url}/indexes/shop", headers=key, json={}, timeout=10)
    docs = [{"_id": f"s{i}", "title": f"sock {i}"} for i in range(3)]
    requests.post(f"{cell.base_url}/indexes/shop/documents", headers=key,
                  json={"documents": docs}, timeout=10)
    return cell, proxy, key


def search(proxy: ServiceProcess, key: dict[str, str], q: str) -> dict[str, Any]:
    got = requests.post(f"{proxy.base_url}/indexes/shop/search", headers=key,
                        json={"q": q}, timeout=10)
    assert got.status_code == 200, got.text
    return dict(got.json())


def summary(proxy: ServiceProcess, key: dict[str, str]) -> dict[str, Any]:
    got = requests.get(f"{proxy.base_url}/analytics/indexes/shop", headers=key, timeout=10)
    assert got.status_code == 200, got.text
    return dict(got.json())


def test_searches_and_actions_are_counted(start: ServiceStarter) -> None:
    _cell, proxy, key = up(start)
    first = search(proxy, key, "sock")
    search(proxy, key, "Sock")
    search(proxy, key, "hat")
    assert first["queryId"].startswith("q-") and len(first["hits"]) == 3
    events = [{"type": "click", "queryId": first["queryId"], "documentId": "s1"},
              {"type": "add_to_cart", "queryId": first["queryId"], "documentId": "s1"},
              {"type": "purchase", "queryId": first["queryId"], "documentId": "s1"}]
    got = requests.post(f"{proxy.base_url}/analytics/events", headers=key,
                        json={"events": events}, timeout=10)
    assert got.status_code == 200 and got.json() == {"recorded": 3}, got.text
    seen = summary(proxy, key)
    assert seen["searches"] == 3 and seen["clicks"] == 1 and seen["purchases"] == 1
    assert seen["topQueries"][0] == {"q": "sock", "count": 2}
    assert seen["zeroResultQueries"] == [{"q": "hat", "count": 1}]
    assert seen["clickThroughRate"] == round(1 / 3, 4)
    assert seen["topDocuments"][0] == {"documentId": "s1", "count": 3}


def test_bad_events_record_nothing(start: ServiceStarter) -> None:
    cell, proxy, key = up(start)
    qid = search(proxy, key, "sock")["queryId"]
    good = {"type": "click", "queryId": qid, "documentId": "s1"}
    url = f"{proxy.base_url}/analytics/events"
    cases: list[tuple[Any, dict[str, str], int, str]] = [
        ({"events": [good, {"type": "like", "queryId": qid, "documentId": "s1"}]}, key, 400,
         "events[1].type"),
        ({"events": [good, {"type": "click", "queryId": "q-nope", "documentId": "s"}]}, key,
         404, "query 'q-nope' not found"),
        ({"events": [good, {"type": "click", "queryId": qid}]}, key, 400, "documentId"),
        ({"events": [good, "x"]}, key, 400, "events[1]"),
        ({"events": []}, key, 400, "1 to 500"),
        ({"events": {}}, key, 400, "must be a list"),
        ({}, key, 400, "'events' is required"),
        ({"events": [good]}, {}, 401, "x-api-key"),
    ]
    for body, headers, status, text in cases:
        got = requests.post(url, headers=headers, json=body, timeout=10)
        assert got.status_code == status and text in got.json()["error"], (body, got.text)
    assert summary(proxy, key)["clicks"] == 0
    other = requests.post(f"{cell.base_url}/accounts", json={"name": "o"}, timeout=10).json()
    stranger = {"x-api-key": other["apiKey"]}
    foreign = requests.post(url, headers=stranger, json={"events": [good]}, timeout=10)
    assert foreign.status_code == 404  # another tenant's queryId is not theirs
    none = requests.get(f"{proxy.base_url}/analytics/indexes/shop", headers=stranger,
                        timeout=10)
    assert none.status_code == 404 and "no analytics" in none.json()["error"]


def test_counts_survive_restart_and_a_cut_short_line(start: ServiceStarter) -> None:
    cell, proxy, key = up(start)
    qid = search(proxy, key, "sock")["queryId"]
    requests.post(f"{proxy.base_url}/analytics/events", headers=key, timeout=10,
                  json={"events": [{"type": "click", "queryId": qid, "documentId": "s2"}]})
    proxy.kill()
    with (start.folder / "search_proxy" / "analytics.jsonl").open("a") as log:
        log.write('{"type": "click", "sco')  # a write cut short by kill -9
    again = start.start("search_proxy", env={"GLOBAL_WORKER_URL": cell.base_url,
                                             "HIPPODROME_STATE_DIR": str(start.folder)})
    seen = summary(again, key)
    assert seen["searches"] == 1 and seen["clicks"] == 1
    assert "1 bad lines skipped" in again.output()
    late = requests.post(f"{again.base_url}/analytics/events", headers=key, timeout=10,
                         json={"events": [{"type": "click", "queryId": qid, "documentId": "s2"}]})
    assert late.status_code == 200 and summary(again, key)["clicks"] == 2
    assert again.terminate() == 0
    third = start.start("search_proxy", env={"GLOBAL_WORKER_URL": cell.base_url,
                                             "HIPPODROME_STATE_DIR": str(start.folder)})
    assert summary(third, key)["clicks"] == 2  # the event after the cut line was kept


def removed_state_folder(start: ServiceStarter) -> Path:
    """search_proxy's state folder, deleted under it as `git clean -xdf` does."""
    folder = start.folder / "search_proxy"
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    return folder


def test_searches_go_on_after_the_state_folder_is_deleted(start: ServiceStarter) -> None:
    """`rm -rf .hippodrome` (`git clean -xdf`) under a running stack: every search
    through search_proxy answered 500 for the rest of the run, while its health probe
    passed (q/11). Its analytics start again in a new file, which a restart reads."""
    cell, proxy, key = up(start)
    search(proxy, key, "sock")
    removed_state_folder(start)
    qid = search(proxy, key, "sock")["queryId"]
    assert summary(proxy, key)["searches"] == 2
    assert "was deleted: analytics start again in a new file there" in proxy.output()
    assert proxy.terminate() == 0
    again = start.start("search_proxy", env={"GLOBAL_WORKER_URL": cell.base_url,
                                             "HIPPODROME_STATE_DIR": str(start.folder)})
    late = requests.post(f"{again.base_url}/analytics/events", headers=key, timeout=10,
                         json={"events": [{"type": "click", "queryId": qid, "documentId": "s1"}]})
    assert late.status_code == 200, late.text


def test_a_file_where_the_analytics_folder_was_is_a_sentence(start: ServiceStarter) -> None:
    """A file put where search_proxy's state folder was: every search answered `500
    internal error (NotADirectoryError)` with a traceback in its log (s/7)."""
    _cell, proxy, key = up(start)
    search(proxy, key, "sock")
    folder = removed_state_folder(start)
    folder.write_text("in the way\n")
    got = requests.post(f"{proxy.base_url}/indexes/shop/search", headers=key,
                        json={"q": "sock"}, timeout=10)
    assert got.status_code == 503, got.text
    said = got.json()["error"]
    assert said.startswith(f"cannot write {folder}/analytics.jsonl") and \
        "a file stands where a folder of its path belongs: move that file away" in said, said
    assert "Traceback" not in proxy.output()


def test_analytics_through_a_link_are_refused_and_the_target_left_alone(tmp_path: Path) -> None:
    """analytics.jsonl as a link: search_proxy read the file it led to and wrote a line
    break into it, then answered every search 500 (adv54 F8). It now does not start,
    and says which link."""
    from hippo_platform.services.common.state import StateFileError
    from hippo_platform.services.search_proxy.analytics import Analytics

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"no line break at the end")
    (tmp_path / "search_proxy").mkdir()
    (tmp_path / "search_proxy" / "analytics.jsonl").symlink_to(victim)
    with pytest.raises(StateFileError, match="is a symbolic link .*remove the link"):
        Analytics(tmp_path / "search_proxy" / "analytics.jsonl")
    assert victim.read_bytes() == b"no line break at the end"
