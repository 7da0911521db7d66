"""The bundled stack end to end, started by the real `invoke up` on a free port block.

One ecom stack and one full stack per module (they take a few seconds to come up); each
flow of issue 4 is a test against the running services.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import _ROOTS, _sweep
from stackutil import alive, free_offset, hd, registry, wait_for


class Stack:
    def __init__(self, root: Path, offset: int) -> None:
        self.root = root
        self.offset = offset

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port + self.offset}"

    def call(self, method: str, port: int, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(port) + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode()

    def tenant(self, name: str) -> tuple[str, str]:
        code, acct = self.call("POST", 9002, "/api/v2/accounts", {"name": name})
        assert code == 201, acct
        return acct["accountId"], acct["apiKey"]


def start_stack(tmp_path_factory: pytest.TempPathFactory, profile: str) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp(f"stack-{profile}")
    _ROOTS.append(root)
    offset = free_offset()
    res = hd(root, "up", "--profile", profile, "--detach", "--no-seed",
             "--port-offset", str(offset), "--table-prefix", f"test-{profile}-", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    try:
        yield Stack(root, offset)
    finally:
        hd(root, "down", timeout=120)
        _sweep(root)


@pytest.fixture(scope="module")
def ecom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from start_stack(tmp_path_factory, "ecom")


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from start_stack(tmp_path_factory, "full")


def test_ecom_stack_is_up_with_every_service(ecom: Stack) -> None:
    st = json.loads(hd(ecom.root, "status", "--json", check=True).stdout)
    rows = {s["name"]: s for s in st["services"]}
    for name in ("fake_cell", "controller", "console", "moto", "fake_cognito", "admin_server",
                 "search_proxy", "ecom_ingest", "ecom_indexer_service",
                 "ecom_settings_exporter", "merchandising_exporter", "event_pipe"):
        assert rows[name]["state"] == "running", rows[name]
    assert rows["aws_provision"]["state"] == "stopped" and rows["aws_provision"]["exit_code"] == 0
    assert rows["global_worker"]["state"] == "external"
    assert rows["global_worker"]["healthy"] is False
    assert st["profile"] == "ecom" and st["table_prefix"] == "test-ecom-"


def test_account_and_index_through_controller_exist_in_cell(ecom: Stack) -> None:
    account, key = ecom.tenant("flow-one")
    code, _ = ecom.call("POST", 9002, "/api/v2/indexes", {"indexName": "shoes", "settings": {}},
                        {"x-api-key": key})
    assert code == 201
    code, idx = ecom.call("GET", 9001, "/indexes/shoes", headers={"x-api-key": key})
    assert code == 200, idx
    code, listed = ecom.call("GET", 9002, "/api/v2/indexes", headers={"x-api-key": key})
    assert code == 200 and any(i.get("indexName", i.get("name")) == "shoes"
                               for i in listed["results"])


def test_upload_through_admin_server_is_searchable(ecom: Stack) -> None:
    _, key = ecom.tenant("flow-upload")
    assert ecom.call("POST", 9002, "/api/v2/indexes", {"indexName": "hats", "settings": {}},
                     {"x-api-key": key})[0] == 201
    began = time.monotonic()
    code, body = ecom.call("POST", 9004, "/api/v1/indexes/hats/documents",
                           {"documents": [{"_id": "h1", "title": "red woollen beanie"}]},
                           {"Authorization": f"Bearer {key}"})
    assert code == 202 and body["count"] == 1

    def found() -> bool:
        c, res = ecom.call("POST", 9001, "/indexes/hats/search", {"q": "beanie"},
                           {"x-api-key": key})
        return c == 200 and any(h["_id"] == "h1" for h in res["hits"])

    wait_for(found, 10, 0.05, "the uploaded document to be searchable")
    print(f"upload -> searchable in {time.monotonic() - began:.2f}s")


def exports(stack: Stack, port: int) -> list[dict[str, Any]]:
    code, body = stack.call("GET", port, "/exports")
    assert code == 200
    return list(body["exports"])


def test_settings_change_reaches_the_exporter_and_s3(ecom: Stack) -> None:
    _, key = ecom.tenant("flow-settings")
    assert ecom.call("POST", 9002, "/api/v2/indexes", {"indexName": "coats", "settings": {}},
                     {"x-api-key": key})[0] == 201  # a key reaches its own indexes only
    began = time.monotonic()
    code, _ = ecom.call("PUT", 9004, "/api/v1/indexes/coats/settings",
                        {"settings": {"typoTolerance": False}},
                        {"Authorization": f"Bearer {key}"})
    assert code in (200, 201)
    got = wait_for(lambda: [e for e in exports(ecom, 9010) if "coats" in e["key"]], 15, 0.05,
                   "the settings export")
    assert got[0]["detailType"].startswith("EcomIndexSettings.")
    print(f"settings change -> export in {time.monotonic() - began:.2f}s")
    import boto3

    s3 = boto3.client("s3", endpoint_url=ecom.url(9003), region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    bucket = next(b for b in buckets if b.startswith("test-ecom"))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert got[0]["key"] in keys


def test_merchandising_rule_reaches_its_exporter(ecom: Stack) -> None:
    _, key = ecom.tenant("flow-merch")
    assert ecom.call("POST", 9002, "/api/v2/indexes", {"indexName": "coats", "settings": {}},
                     {"x-api-key": key})[0] == 201  # a key reaches its own indexes only
    code, _ = ecom.call("PUT", 9004, "/api/v1/indexes/coats/merchandising/rules/r1",
                        {"action": "pin", "documentId": "c1", "query": "coat"},
                        {"Authorization": f"Bearer {key}"})
    assert code in (200, 201)
    got = wait_for(lambda: [e for e in exports(ecom, 9011) if "r1" in e["key"]], 15, 0.05,
                   "the merchandising export")
    assert got[0]["detailType"].startswith("Merchandising.")


def test_search_proxy_without_global_worker_names_it(ecom: Stack) -> None:
    _, key = ecom.tenant("flow-502")
    code, body = ecom.call("POST", 9005, "/indexes/any/search", {"q": "x"}, {"x-api-key": key})
    assert code == 502 and "Failed to fetch from global_worker" in body["error"]


def test_fake_cell_keeps_state_across_restart_and_kill_9(ecom: Stack) -> None:
    _, key = ecom.tenant("flow-persist")
    assert ecom.call("POST", 9002, "/api/v2/indexes", {"indexName": "kept", "settings": {}},
                     {"x-api-key": key})[0] == 201
    assert ecom.call("POST", 9001, "/indexes/kept/documents",
                     {"documents": [{"_id": "k1", "title": "kept across restarts"}]},
                     {"x-api-key": key})[0] in (200, 201, 202)
    hd(ecom.root, "restart", "--service", "fake_cell", check=True)
    assert ecom.call("GET", 9001, "/indexes/kept/documents/k1", headers={"x-api-key": key})[0] \
        == 200
    pid = registry(ecom.root)["services"]["fake_cell"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 5)

    def back() -> bool:
        entry = registry(ecom.root)["services"]["fake_cell"]
        return entry["state"] == "running" and entry["pid"] != pid

    wait_for(back, 30, 0.1, "fake_cell restarted by the daemon")
    code, doc = ecom.call("GET", 9001, "/indexes/kept/documents/k1", headers={"x-api-key": key})
    assert code == 200, doc


def test_full_profile_search_honours_a_pin_rule(full: Stack) -> None:
    _, key = full.tenant("flow-pin")
    assert full.call("POST", 9002, "/api/v2/indexes", {"indexName": "boots", "settings": {}},
                     {"x-api-key": key})[0] == 201
    docs = [{"_id": "b1", "title": "boots boots boots leather"},
            {"_id": "b2", "title": "boots rubber"},
            {"_id": "b3", "title": "walking boots"}]
    assert full.call("POST", 9001, "/indexes/boots/documents", {"documents": docs},
                     {"x-api-key": key})[0] in (200, 201, 202)
    code, plain = full.call("POST", 9005, "/indexes/boots/search", {"q": "boots"},
                            {"x-api-key": key})
    assert code == 200 and plain["hits"][0]["_id"] == "b1"
    assert full.call("PUT", 9004, "/api/v1/indexes/boots/merchandising/rules/pin-b3",
                     {"action": "pin", "documentId": "b3", "query": "boots"},
                     {"Authorization": f"Bearer {key}"})[0] in (200, 201)

    def pinned() -> bool:
        c, res = full.call("POST", 9005, "/indexes/boots/search", {"q": "boots"},
                           {"x-api-key": key})
        return c == 200 and res["hits"][0]["_id"] == "b3"

    wait_for(pinned, 10, 0.1, "the pin rule to apply")
