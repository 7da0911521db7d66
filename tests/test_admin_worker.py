"""admin_worker on real processes: admin_server's /api/v1 routes through the worker
(settings, rules, an upload over SQS that becomes searchable) with the caller's
credentials; its errors passed through as they are; a down admin_server a 502 naming it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import moto_server
import pytest
import requests
from queue_stack import QueueStack, queue_stack
from service_process import ServiceStarter, free_port
from stackutil import wait_for

moto_server_url = moto_server.moto_server_url


@pytest.fixture(scope="module")
def stack(moto_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueStack]:
    yield from queue_stack(moto_server_url, tmp_path_factory.mktemp("worker"))


def call(stack: QueueStack, method: str, path: str, key: str | None = None,
         **kw: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {key or stack.key}"}
    return requests.request(method, f"{stack.url('worker')}/api/v1/indexes{path}",
                            headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


def test_settings_and_rules_through_the_worker(stack: QueueStack) -> None:
    put = call(stack, "PUT", "/shop/settings", json={"settings": {"typo": True}})
    assert put.status_code == 200, put.text
    direct = requests.get(f"{stack.url('admin')}/api/v1/indexes/shop/settings",
                          headers={"Authorization": f"Bearer {stack.key}"}).json()
    assert direct["settings"] == {"typo": True} == call(stack, "GET", "/shop/settings").json()[
        "settings"]
    rule = {"action": "pin", "documentId": "w1", "query": "lamp"}
    assert call(stack, "PUT", "/shop/merchandising/rules/r1", json=rule).status_code == 201
    assert call(stack, "GET", "/shop/merchandising/rules/r1").json()["documentId"] == "w1"
    assert [r["ruleId"] for r in call(stack, "GET", "/shop/merchandising/rules").json()[
        "rules"]] == ["r1"]
    assert call(stack, "DELETE", "/shop/merchandising/rules/r1").json()["deleted"] is True


def test_an_upload_through_the_worker_is_searchable(stack: QueueStack) -> None:
    answer = call(stack, "POST", "/shop/documents",
                  json={"documents": [{"_id": "w9", "title": "wicker chair"}]})
    assert answer.status_code == 202 and answer.json()["via"] == "sqs", answer.text
    wait_for(lambda: stack.search("wicker") == ["w9"], what="the document in the cell")


def test_admin_servers_errors_come_back_unchanged(stack: QueueStack) -> None:
    assert call(stack, "GET", "/shop/settings", key="hk_forged").status_code == 401
    bad = call(stack, "PUT", "/shop/settings", data=b"{oops")
    assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]
    assert call(stack, "GET", "/never/settings").status_code == 404
    assert call(stack, "POST", "/shop/settings").status_code == 405
    assert requests.get(f"{stack.url('worker')}/api/v2/other").status_code == 404


def test_a_down_admin_server_is_a_502_naming_it(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with ServiceStarter(tmp_path) as start:
        worker = start.start("admin_worker", env={"ADMIN_SERVER_URL": dead,
                                                  "INSPECTOR_PORT": "9231"})
        answer = requests.get(f"{worker.base_url}/api/v1/indexes/shop/settings")
        assert answer.status_code == 502
        assert "admin_server" in answer.json()["error"] and "ADMIN_SERVER_URL" in answer.json()[
            "error"]
        assert requests.get(f"{worker.base_url}/healthz").json()["inspectorPort"] == "9231"
        assert worker.terminate() == 0
