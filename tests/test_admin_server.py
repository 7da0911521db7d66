"""admin_server on real processes: tables provisioned on a real moto server, keys checked
by a real fake_cell, tokens issued by a real fake_cognito, uploads into a real ecom_ingest.
Also the bounded load test: 50 concurrent clients on the settings route."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import moto_server
import pytest
import requests
from moto_server import DUMMY_CREDENTIALS, isolate_aws_env
from service_process import ServiceProcess, ServiceStarter, free_port, get_status

from hippo_platform.provision import provision
from hippo_tasks.events import aws

moto_server_url = moto_server.moto_server_url

COGNITO_SECRET = "admin-test-cognito-secret"


def aws_env(endpoint: str, home: Path) -> dict[str, str]:
    """What the stack's [env] gives a service for AWS, hermetic (no user config)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        **DUMMY_CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def provision_tables(endpoint: str, home: Path) -> str:
    """A fresh table prefix with everything aws_provision makes, on the module's moto."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    with pytest.MonkeyPatch.context() as patch:
        isolate_aws_env(patch, home)
        for name, value in aws_env(endpoint, home).items():
            patch.setenv(name, value)
        provision(prefix, endpoint)
    return prefix


def table_env(prefix: str) -> dict[str, str]:
    return {
        "HIPPODROME_TABLE_PREFIX": prefix,
        "ECOM_INDEX_SETTINGS_TABLE": f"{prefix}EcomIndexSettingsTable",
        "MERCHANDISING_TABLE": f"{prefix}MerchandisingTable",
    }


def start_together(
    start: ServiceStarter,
    specs: Sequence[tuple[str, int, Mapping[str, str], Sequence[str]]],
    timeout: float = 30.0,
) -> list[ServiceProcess]:
    """Spawn services at once (name, port, env, args) and wait until all are healthy:
    each takes about half a second to import and bind, so doing them one by one
    would cost that many half seconds."""
    procs = [start.spawn(name, args=args, env=env, port=port) for name, port, env, args in specs]
    deadline = time.monotonic() + timeout
    for svc in procs:
        while get_status(svc.port) != 200:
            if not svc.running() or time.monotonic() > deadline:
                raise AssertionError(f"{svc.name} did not become healthy:\n{svc.output()}")
            time.sleep(0.02)
    return procs


def stop_together(start: ServiceStarter) -> None:
    """SIGTERM every service at once; the starter then only waits for the exits."""
    for svc in start.started:
        svc.signal(signal.SIGTERM)


def cell_account(cell_url: str, index: str | None = None) -> str:
    """A new account's API key, with `index` created in the cell."""
    key = str(requests.post(f"{cell_url}/accounts", json={"name": "shop"}).json()["apiKey"])
    if index is not None:
        made = requests.post(f"{cell_url}/indexes/{index}", json={}, headers={"x-api-key": key})
        assert made.status_code == 201, made.text
    return key


@dataclass
class Stack:
    admin: ServiceProcess
    cell: ServiceProcess
    ingest: ServiceProcess
    prefix: str
    endpoint: str
    key: str
    token: str
    home: Path

    def call(
        self, method: str, path: str, bearer: str | None = None, **kw: Any
    ) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        url = f"{self.admin.base_url}/api/v1/indexes{path}"
        return requests.request(method, url, headers=headers, timeout=15, **kw)

    def ddb(self) -> Any:
        with pytest.MonkeyPatch.context() as patch:
            isolate_aws_env(patch, self.home)
            for name, value in aws_env(self.endpoint, self.home).items():
                patch.setenv(name, value)
            return aws.client("dynamodb", endpoint_url=self.endpoint)


@pytest.fixture(scope="module")
def stack(moto_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("admin")
    prefix = provision_tables(moto_server_url, folder)
    ports = {name: free_port() for name in ("cell", "cognito", "ingest", "admin")}
    secret = {"FAKE_COGNITO_SECRET": COGNITO_SECRET}
    env = {
        **aws_env(moto_server_url, folder),
        **table_env(prefix),
        **secret,
        "MARQO_BASE_URL": f"http://127.0.0.1:{ports['cell']}",
        "ECOM_INGEST_URL": f"http://127.0.0.1:{ports['ingest']}",
    }
    with ServiceStarter(folder) as start:
        try:
            cell, cognito, ingest, admin = start_together(
                start,
                [
                    ("fake_cell", ports["cell"], {}, ["--state-dir", str(folder / "cell")]),
                    ("fake_cognito", ports["cognito"], secret, []),
                    ("ecom_ingest", ports["ingest"], {}, []),
                    ("admin_server", ports["admin"], env, []),
                ],
            )
            issued = requests.post(f"{cognito.base_url}/oauth2/token", json={"client_id": "merch"})
            token = issued.json()["access_token"]
            key = cell_account(cell.base_url, index="shop")
            yield Stack(admin, cell, ingest, prefix, moto_server_url, key, token, folder)
        finally:
            stop_together(start)


def test_no_bad_or_forged_credentials_are_401(stack: Stack) -> None:
    forged = stack.token[:-4] + ("AAAA" if not stack.token.endswith("AAAA") else "BBBB")
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer hk_not_a_key"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": "Bearer a.b.c"},
    ):
        answer = stack.call("GET", "/shop/settings", headers=headers)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.json()["error"]
    upload = stack.call("POST", "/shop/documents", json={"documents": [{"a": 1}]})
    assert upload.status_code == 401


def test_settings_round_trip_into_the_table(stack: Stack) -> None:
    settings = {"searchableAttributes": ["title"], "boost": 1.5, "size": 3, "on": True}
    put = stack.call("PUT", "/shop/settings", stack.key, json=settings)
    assert put.status_code == 200, put.text
    got = stack.call("GET", "/shop/settings", stack.key).json()
    assert got["settings"] == settings and got["indexName"] == "shop" and got["updatedBy"]
    item = stack.ddb().get_item(
        TableName=f"{stack.prefix}EcomIndexSettingsTable",
        Key={"pk": {"S": "INDEX#shop"}, "sk": {"S": "SETTINGS"}},
    )["Item"]
    assert item["indexName"] == {"S": "shop"} and item["settings"]["M"]["boost"] == {"N": "1.5"}
    wrapped = stack.call("PUT", "/shop/settings", stack.key, json={"settings": {"typo": False}})
    assert wrapped.json()["settings"] == {"typo": False}, "GET's own shape is accepted too"
    assert stack.call("GET", "/shop/settings", stack.key).json()["settings"] == {"typo": False}
    bad = stack.call("PUT", "/shop/settings", stack.key, json={"settings": [1]})
    assert bad.status_code == 400 and "'settings'" in bad.json()["error"]


def test_a_cognito_token_works_and_is_recorded_as_the_writer(stack: Stack) -> None:
    put = stack.call("PUT", "/catalog/settings", stack.token, json={"x": 1})
    assert put.status_code == 200, put.text
    assert stack.call("GET", "/catalog/settings", stack.token).json()["updatedBy"] == "merch"


def test_missing_records_and_bad_shapes(stack: Stack) -> None:
    missing = stack.call("GET", "/never-set/settings", stack.key)
    assert missing.status_code == 404 and "never-set" in missing.json()["error"]
    bad_json = stack.call("PUT", "/shop/settings", stack.key, data=b"{oops")
    assert bad_json.status_code == 400 and "malformed JSON" in bad_json.json()["error"]
    not_object = stack.call("PUT", "/shop/settings", stack.key, json=[1])
    assert not_object.status_code == 400
    bad_name = stack.call("PUT", "/-bad/settings", stack.key, json={})
    assert bad_name.status_code == 400
    assert stack.call("GET", "/shop/nothing", stack.key).status_code == 404
    assert stack.call("POST", "/shop/settings", stack.key).status_code == 405


def test_settings_nested_past_dynamodbs_32_levels_are_a_400_at_any_depth(
        stack: Stack) -> None:
    """500 levels was a 500 with a RecursionError traceback, 300 a 502 blamed on
    DynamoDB (moto's own 500), 100 stored though DynamoDB refuses it (adv28 k/1)."""
    def nested(levels: int) -> bytes:  # the settings map is level 1; its list the rest
        return (b'{"facets": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}")

    fits = stack.call("PUT", "/shop/settings", stack.key, data=nested(32))
    assert fits.status_code == 200, fits.text
    got = stack.call("GET", "/shop/settings", stack.key).json()["settings"]
    assert json.dumps(got).count("[") == 31
    for levels in (33, 100, 300, 500):
        answer = stack.call("PUT", "/shop/settings", stack.key, data=nested(levels))
        assert answer.status_code == 400, (levels, answer.text)
        assert "nested more than 32 levels deep" in answer.json()["error"], answer.text
    for number in ("1e200", "1e-200"):  # said to have over 38 digits (adv29 o/9)
        huge = stack.call("PUT", "/shop/settings", stack.key, data=b'{"n": ' + number.encode()
                          + b"}")
        assert huge.status_code == 400 and "outside the numbers DynamoDB stores" in \
            huge.json()["error"], huge.text
    beyond = stack.call("PUT", "/shop/settings", stack.key, data=nested(5000))
    assert beyond.status_code == 400 and "nested too deeply" in beyond.json()["error"]
    assert stack.call("GET", "/shop/settings", stack.key).json()["settings"] == got


def test_rules_put_list_get_delete(stack: Stack) -> None:
    for index in ("other", "empty"):  # the key's own, beside shop
        requests.post(f"{stack.cell.base_url}/indexes/{index}", json={},
                      headers={"x-api-key": stack.key}, timeout=10)
    rule = {"action": "pin", "documentId": "d1", "query": "Red Shoes"}
    first = stack.call("PUT", "/shop/merchandising/rules/r1", stack.key, json=rule)
    assert first.status_code == 201, first.text
    again = stack.call("PUT", "/shop/merchandising/rules/r1", stack.key, json=rule)
    assert again.status_code == 200
    bury = {"action": "bury", "documentId": "d9", "query": "red shoes"}
    assert stack.call("PUT", "/shop/merchandising/rules/r0", stack.key, json=bury).ok
    other = stack.call("PUT", "/other/merchandising/rules/r1", stack.key, json=bury)
    assert other.status_code == 201, "the same rule id under another index is another rule"
    listed = stack.call("GET", "/shop/merchandising/rules", stack.key).json()["rules"]
    assert [(r["ruleId"], r["action"]) for r in listed] == [("r0", "bury"), ("r1", "pin")]
    one = stack.call("GET", "/shop/merchandising/rules/r1", stack.key).json()
    assert one["documentId"] == "d1" and one["query"] == "Red Shoes"
    item = stack.ddb().get_item(
        TableName=f"{stack.prefix}MerchandisingTable",
        Key={"pk": {"S": "RULE#r1"}, "sk": {"S": "INDEX#shop"}},
    )["Item"]
    assert item["action"] == {"S": "pin"} and item["indexName"] == {"S": "shop"}
    gone = stack.call("DELETE", "/shop/merchandising/rules/r1", stack.key)
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    for method in ("DELETE", "GET"):
        answer = stack.call(method, "/shop/merchandising/rules/r1", stack.key)
        assert answer.status_code == 404 and "r1" in answer.json()["error"]
    assert stack.call("GET", "/empty/merchandising/rules", stack.key).json() == {"rules": []}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"action": "boost", "documentId": "d", "query": "q"}, "'action'"),
        ({"documentId": "d", "query": "q"}, "'action'"),
        ({"action": "pin", "query": "q"}, "'documentId'"),
        ({"action": "bury", "documentId": "d"}, "'query'"),
        ({"action": "pin", "documentId": 5, "query": "q"}, "'documentId'"),
    ],
)
def test_bad_rules_are_400(stack: Stack, body: dict[str, Any], needle: str) -> None:
    answer = stack.call("PUT", "/shop/merchandising/rules/rx", stack.key, json=body)
    assert answer.status_code == 400 and needle in answer.json()["error"]


def test_upload_is_accepted_into_ingest_with_the_key(stack: Stack) -> None:
    docs = {"documents": [{"_id": "u1", "title": "oak table"}, {"title": "pine chair"}]}
    answer = stack.call("POST", "/shop/documents", stack.key, json=docs)
    assert answer.status_code == 202, answer.text
    batch = requests.get(f"{stack.ingest.base_url}/batches/{answer.json()['batchId']}").json()
    assert answer.json()["count"] == 2 and batch["apiKey"] == stack.key
    account = requests.get(f"{stack.cell.base_url}/account", headers={"x-api-key": stack.key})
    assert batch["accountId"] == account.json()["accountId"] and batch["index"] == "shop"


def test_upload_errors(stack: Stack) -> None:
    unknown = stack.call("POST", "/nowhere/documents", stack.key, json={"documents": [{}]})
    assert unknown.status_code == 404 and "nowhere" in unknown.json()["error"]
    assert (
        stack.call("POST", "/shop/documents", stack.key, json={"documents": []}).status_code == 400
    )
    assert stack.call("POST", "/shop/documents", stack.key, json={"docs": [{}]}).status_code == 400
    with_token = stack.call("POST", "/shop/documents", stack.token, json={"documents": [{}]})
    assert with_token.status_code == 401 and "x-api-key" in with_token.json()["error"]
    both = stack.call(
        "POST",
        "/shop/documents",
        stack.token,
        json={"documents": [{"a": 1}]},
        headers={"x-api-key": stack.key},
    )
    assert both.status_code == 202, both.text


def test_an_accounts_key_reaches_only_its_own_indexes(stack: Stack) -> None:
    """Any account's key read and replaced another account's settings, and added a
    bury rule to its index, while the same key's upload there was a 404."""
    intruder = cell_account(stack.cell.base_url)  # an account that owns no index
    before = stack.call("GET", "/shop/settings", stack.key)
    for method, path, body in [("GET", "/shop/settings", None),
                               ("PUT", "/shop/settings", {"settings": {"owned": "by me"}}),
                               ("GET", "/shop/merchandising/rules", None),
                               ("PUT", "/shop/merchandising/rules/evil",
                                {"action": "bury", "documentId": "d1"}),
                               ("DELETE", "/shop/merchandising/rules/evil", None),
                               ("PUT", "/nowhere/settings", {"settings": {}})]:
        answer = stack.call(method, path, intruder, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
    assert stack.call("GET", "/shop/settings", stack.key).json() == before.json()
    assert stack.call("GET", "/shop/merchandising/rules/evil", stack.key).status_code == 404


def test_fifty_concurrent_clients_on_the_settings_route(stack: Stack) -> None:
    for n in range(5):  # the key's own indexes
        requests.post(f"{stack.cell.base_url}/indexes/load{n}", json={},
                      headers={"x-api-key": stack.key}, timeout=10)

    def client(n: int) -> list[int]:
        statuses = []
        with requests.Session() as session:
            headers = {"Authorization": f"Bearer {stack.key}"}
            for i in range(10):
                url = f"{stack.admin.base_url}/api/v1/indexes/load{n % 5}/settings"
                if i % 2 == 0:
                    answer = session.put(url, json={"n": n, "i": i}, headers=headers, timeout=30)
                else:
                    answer = session.get(url, headers=headers, timeout=30)
                statuses.append(answer.status_code)
        return statuses

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = [s for statuses in pool.map(client, range(50)) for s in statuses]
    elapsed = time.monotonic() - started
    assert len(results) == 500 and set(results) == {200}, sorted(set(results))
    assert requests.get(f"{stack.admin.base_url}/healthz", timeout=5).status_code == 200
    print(f"admin_server settings: 500 requests from 50 clients in {elapsed:.2f}s")


def test_a_dead_cell_is_a_502_for_keys_while_tokens_still_work(
    stack: Stack, tmp_path: Path
) -> None:
    env = {
        **aws_env(stack.endpoint, tmp_path),
        **table_env(stack.prefix),
        "MARQO_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "ECOM_INGEST_URL": stack.ingest.base_url,
        "FAKE_COGNITO_SECRET": COGNITO_SECRET,
    }
    with ServiceStarter(tmp_path) as start:
        admin = start.start("admin_server", env=env)
        url = f"{admin.base_url}/api/v1/indexes/shop/settings"
        by_key = requests.get(url, headers={"Authorization": f"Bearer {stack.key}"})
        assert by_key.status_code == 502 and "cell" in by_key.json()["error"]
        by_token = requests.get(url, headers={"Authorization": f"Bearer {stack.token}"})
        assert by_token.status_code == 200
        assert admin.terminate() == 0
        assert "admin_server stopped" in admin.output()


def test_missing_tables_are_503_and_a_missing_endpoint_stops_start_up(
    stack: Stack, tmp_path: Path
) -> None:
    env = {
        **aws_env(stack.endpoint, tmp_path),
        **table_env("never-provisioned-"),
        "MARQO_BASE_URL": stack.cell.base_url,
        "FAKE_COGNITO_SECRET": COGNITO_SECRET,
    }
    with ServiceStarter(tmp_path) as start:
        admin = start.start("admin_server", env=env)
        answer = requests.get(
            f"{admin.base_url}/api/v1/indexes/shop/settings",
            headers={"Authorization": f"Bearer {stack.token}"},
        )
        assert answer.status_code == 503 and "aws_provision" in answer.json()["error"]
        assert "warning" in admin.output() and "never-provisioned-" in admin.output()
        no_endpoint = {**env, "AWS_ENDPOINT_URL": ""}
        svc = start.spawn("admin_server", env=no_endpoint, port=free_port())
        assert svc.wait_exit(timeout=30) == 78
        assert "AWS_ENDPOINT_URL" in svc.output() and "Traceback" not in svc.output()
