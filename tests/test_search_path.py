"""The ingest and search half of the stack, end to end on real processes:
admin_server upload -> ecom_ingest -> ecom_indexer_service -> fake_cell, and
search_proxy -> global_worker (rules from the table on a real moto) -> fake_cell.
Plus the merchandising rule itself and global_worker's SigV4 signature checked
against botocore's signer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import moto_server
import pytest
import requests
from service_process import ServiceProcess, ServiceStarter, free_port
from stackutil import wait_for
from test_admin_server import (
    aws_env,
    cell_account,
    provision_tables,
    start_together,
    stop_together,
    table_env,
)

from hippo_platform.services.common.aws_lite_sigv4 import Credentials, sign
from hippo_platform.services.global_worker.merchandising import Rule, apply_rules

moto_server_url = moto_server.moto_server_url

RULES_TTL = "0.2"
DOCS = [
    {"_id": "shoe-1", "title": "red running shoes"},
    {"_id": "shoe-2", "title": "red leather shoes shoes"},
    {"_id": "shoe-3", "title": "blue shoes"},
    {"_id": "sock-1", "title": "wool socks"},
]


@dataclass
class Stack:
    cell: ServiceProcess
    admin: ServiceProcess
    worker: ServiceProcess
    proxy: ServiceProcess
    key: str
    env: dict[str, str]
    upload_latency_s: float

    def admin_call(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}"}
        url = f"{self.admin.base_url}/api/v1/indexes/shop{path}"
        return requests.request(method, url, headers=headers, timeout=10, **kw)

    def search(self, q: str, base: str | None = None, **extra: Any) -> requests.Response:
        url = f"{base or self.proxy.base_url}/indexes/shop/search"
        body = {"q": q, **extra}
        return requests.post(url, json=body, headers={"x-api-key": self.key}, timeout=10)


def cell_ids(cell: ServiceProcess, key: str, q: str) -> list[str]:
    answer = requests.post(
        f"{cell.base_url}/indexes/shop/search", json={"q": q}, headers={"x-api-key": key}
    )
    return [h["_id"] for h in answer.json()["hits"]]


@pytest.fixture(scope="module")
def stack(moto_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("search")
    prefix = provision_tables(moto_server_url, folder)
    names = ("fake_cell", "ecom_ingest", "ecom_indexer_service", "admin_server")
    ports = {name: free_port() for name in (*names, "global_worker", "search_proxy")}
    env = {
        **aws_env(moto_server_url, folder),
        **table_env(prefix),
        "MARQO_BASE_URL": f"http://127.0.0.1:{ports['fake_cell']}",
        "ECOM_INGEST_URL": f"http://127.0.0.1:{ports['ecom_ingest']}",
        "GLOBAL_WORKER_URL": f"http://127.0.0.1:{ports['global_worker']}",
        "GLOBAL_WORKER_RULES_TTL": RULES_TTL,
    }
    cell_args = ["--state-dir", str(folder / "cell")]
    with ServiceStarter(folder) as start:
        try:
            cell, _, _, admin, worker, proxy = start_together(
                start,
                [
                    (name, port, env, cell_args if name == "fake_cell" else [])
                    for name, port in ports.items()
                ],
            )
            key = cell_account(cell.base_url, index="shop")
            started = time.monotonic()
            accepted = requests.post(
                f"{admin.base_url}/api/v1/indexes/shop/documents",
                json={"documents": DOCS},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert accepted.status_code == 202, accepted.text

            def in_cell() -> bool:
                return "sock-1" in cell_ids(cell, key, "wool")

            wait_for(in_cell, every=0.005, what="the upload in the cell")
            latency = time.monotonic() - started
            yield Stack(cell, admin, worker, proxy, key, env, latency)
        finally:
            stop_together(start)


def test_an_upload_through_admin_server_is_searchable_in_the_cell(stack: Stack) -> None:
    assert set(cell_ids(stack.cell, stack.key, "shoes")) == {"shoe-1", "shoe-2", "shoe-3"}
    print(f"admin_server upload -> searchable in fake_cell: {stack.upload_latency_s * 1000:.0f} ms")


def test_search_through_the_proxy_honours_pin_and_bury(stack: Stack) -> None:
    plain = stack.search("shoes").json()
    assert plain["hits"][0]["_id"] == "shoe-2" and plain["merchandising"]["pinned"] == []
    rules = {
        "p1": {"action": "pin", "documentId": "shoe-3", "query": "Shoes"},
        "p2": {"action": "pin", "documentId": "sock-1", "query": "shoes"},
        "b1": {"action": "bury", "documentId": "shoe-2", "query": "SHOES"},
        "other": {"action": "pin", "documentId": "shoe-1", "query": "boots"},
    }
    for rule_id, rule in rules.items():
        assert stack.admin_call("PUT", f"/merchandising/rules/{rule_id}", json=rule).ok

    def merchandised() -> list[str] | None:
        ids = [h["_id"] for h in stack.search(" shoes ").json()["hits"]]
        return ids if ids[:2] == ["shoe-3", "sock-1"] else None

    ids = wait_for(merchandised, what="the rules applied")
    assert ids == ["shoe-3", "sock-1", "shoe-1", "shoe-2"], "pins in rule-id order, bury last"
    answer = stack.search("shoes").json()
    assert answer["merchandising"] == {"pinned": ["shoe-3", "sock-1"], "buried": ["shoe-2"]}
    assert answer["hits"][1]["_score"] == 0.0, "a pinned document the search missed is fetched"
    assert stack.search("shoes", limit=2).json()["hits"][-1]["_id"] == "sock-1"
    page_two = stack.search("shoes", offset=1).json()
    assert "merchandising" not in page_two, "rules shape the first page only"

    assert stack.admin_call("DELETE", "/merchandising/rules/p1").ok
    wait_for(lambda: stack.search("shoes").json()["hits"][0]["_id"] == "sock-1", what="delete")
    for rule_id in ("p2", "b1", "other"):
        stack.admin_call("DELETE", f"/merchandising/rules/{rule_id}")


@pytest.mark.parametrize("service", ["search_proxy", "global_worker"])
def test_keys_bad_input_and_unknown_records_are_4xx(stack: Stack, service: str) -> None:
    base = (stack.proxy if service == "search_proxy" else stack.worker).base_url
    url = f"{base}/indexes/shop/search"
    missing = requests.post(url, json={"q": "x"})
    assert missing.status_code == 401 and "x-api-key" in missing.json()["error"]
    bad_key = requests.post(url, json={"q": "x"}, headers={"x-api-key": "hk_wrong"})
    assert bad_key.status_code == 401, "the cell's verdict comes through"
    unknown = requests.post(
        f"{base}/indexes/nope/search", json={}, headers={"x-api-key": stack.key}
    )
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    malformed = requests.post(url, data=b"{x", headers={"x-api-key": stack.key})
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]
    assert requests.get(f"{base}/elsewhere").status_code == 404
    assert requests.get(url).status_code == 405


def test_without_global_worker_the_proxy_answers_502_naming_it(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with ServiceStarter(tmp_path) as start:
        proxy = start.start("search_proxy", env={"GLOBAL_WORKER_URL": dead})
        answer = requests.post(
            f"{proxy.base_url}/indexes/shop/search", json={"q": "x"}, headers={"x-api-key": "k"}
        )
        assert answer.status_code == 502
        assert answer.json()["error"].startswith(f"Failed to fetch from global_worker ({dead}): ")
        assert proxy.terminate() == 0


def test_global_worker_searches_without_moto_and_says_why_no_rules(
    stack: Stack, tmp_path: Path
) -> None:
    env = {**stack.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    with ServiceStarter(tmp_path) as start:
        worker = start.start("global_worker", env=env)
        answer = stack.search("shoes", base=worker.base_url)
        assert answer.status_code == 200 and len(answer.json()["hits"]) == 3
        assert "cannot reach the AWS endpoint" in answer.json()["merchandising"]["error"]
        assert worker.terminate() == 0


def test_sigv4_signature_matches_botocore() -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "tok")
    payload = b'{"TableName": "t"}'
    headers = {
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": "DynamoDB_20120810.Scan",
        "x-amz-security-token": "tok",
    }
    ours = sign(creds, service="dynamodb", region="eu-west-1", method="POST",
                host="127.0.0.1:9003", headers=headers, payload=payload,
                amz_date="20240102T030405Z")["authorization"]
    request = AWSRequest(method="POST", url="http://127.0.0.1:9003/", data=payload)
    for name, value in headers.items():
        request.headers[name] = value
    request.headers["X-Amz-Date"] = "20240102T030405Z"
    request.context["timestamp"] = "20240102T030405Z"
    signer = SigV4Auth(
        BotoCredentials(creds.access_key, creds.secret_key, "tok"), "dynamodb", "eu-west-1"
    )
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    assert ours.endswith(f"Signature={signature}")
    assert f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(request))}," in ours


def test_rule_application_in_isolation() -> None:
    hits = [{"_id": i, "_score": s} for i, s in (("a", 3.0), ("b", 2.0), ("c", 1.0))]
    rules = [
        Rule("1", "ix", "pin", "c", "Q"),
        Rule("2", "ix", "pin", "zz", "q"),  # not in the cell: skipped
        Rule("3", "ix", "bury", "a", "q"),
        Rule("4", "ix", "pin", "x", "other"),
    ]
    fetched: list[str] = []

    def fetch(doc_id: str) -> dict[str, Any] | None:
        fetched.append(doc_id)
        return None

    page, applied = apply_rules(hits, rules, " q ", 3, fetch)
    assert [h["_id"] for h in page] == ["c", "b", "a"] and fetched == ["zz"]
    assert applied == {"pinned": ["c"], "buried": ["a"]}
    page, applied = apply_rules(hits, rules[2:3], "q", 2, fetch)
    assert [h["_id"] for h in page] == ["b", "c"] and applied == {"pinned": [], "buried": []}
    untouched, _ = apply_rules(hits, rules, "nothing", 3, fetch)
    assert untouched == hits
