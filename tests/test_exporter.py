"""The exporters as real processes against a real moto server: what an event does to the
exports bucket, what /exports remembers, and that bad input is a 400, never a 500."""

from __future__ import annotations

import decimal
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import moto_server
import pytest
import requests
from moto_server import DUMMY_CREDENTIALS
from service_process import ServiceProcess, ServiceStarter, free_port, get_status
from stackutil import wait_for

from hippo_platform.provision import bucket_name

moto_server_url = moto_server.moto_server_url
PREFIX = "exp-test-"
BUCKET = bucket_name(PREFIX)


def aws_env(endpoint: str) -> dict[str, str]:
    return {**DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
            "HIPPODROME_TABLE_PREFIX": PREFIX, "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "NO_PROXY": "127.0.0.1"}


@pytest.fixture(scope="module")
def s3(moto_server_url: str) -> Any:
    env = aws_env(moto_server_url)
    return boto3.client("s3", endpoint_url=moto_server_url, region_name="us-east-1",
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module")
def exporters(
    moto_server_url: str, s3: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    s3.create_bucket(Bucket=BUCKET)
    folder = tmp_path_factory.mktemp("exporters")
    with ServiceStarter(folder) as start:
        env = aws_env(moto_server_url)
        # Spawned together, then awaited: each pays about 0.8 s of boto3 import.
        procs = {kind: start.spawn("exporter", args=["--kind", kind], env=env, port=free_port())
                 for kind in ("settings", "merchandising")}
        for svc in procs.values():
            wait_for(partial(settled, svc), timeout=15, what=f"{svc.name} healthy")
            assert svc.running(), svc.output()
        yield procs


def settled(svc: ServiceProcess) -> bool:
    return get_status(svc.port) == 200 or not svc.running()


def event(detail_type: str, name: str, keys: dict[str, Any], new: Any = None,
          old: Any = None) -> dict[str, Any]:
    return {"source": "marqo.dynamodb", "detail-type": f"{detail_type}.{name}",
            "detail": {"eventName": name, "tableName": f"{PREFIX}EcomIndexSettingsTable",
                       "keys": keys, "newImage": new, "oldImage": old}}


SETTINGS_KEYS = {"pk": {"S": "INDEX#abc"}, "sk": {"S": "SETTINGS"}}


def post(svc: ServiceProcess, body: Any) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{svc.base_url}/events", data=data, timeout=10,
                         headers={"Content-Type": "application/json"})


def read(s3: Any, key: str) -> dict[str, Any]:
    return dict(json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def test_insert_modify_remove_mirror_the_item_in_s3(
    exporters: dict[str, ServiceProcess], s3: Any
) -> None:
    svc = exporters["settings"]
    new = {**SETTINGS_KEYS, "facets": {"L": [{"S": "color"}]}, "limit": {"N": "20"},
           "boost": {"N": "1.5"}, "live": {"BOOL": True}, "note": {"NULL": True}}
    made = post(svc, event("EcomIndexSettings", "INSERT", SETTINGS_KEYS, new))
    assert made.status_code == 200, made.text
    result = made.json()["result"]
    assert made.json()["status"] == "success"
    assert result["key"] == "settings/INDEX#abc/SETTINGS.json" and result["action"] == "written"
    exported = read(s3, result["key"])
    assert exported["item"] == {"pk": "INDEX#abc", "sk": "SETTINGS", "facets": ["color"],
                                "limit": 20, "boost": 1.5, "live": True, "note": None}
    assert exported["keys"] == {"pk": "INDEX#abc", "sk": "SETTINGS"}
    assert exported["eventName"] == "INSERT" and exported["previous"] is None

    changed = {**new, "limit": {"N": "50"}}
    assert post(svc, event("EcomIndexSettings", "MODIFY", SETTINGS_KEYS, changed, new)).ok
    exported = read(s3, result["key"])
    assert exported["item"]["limit"] == 50 and exported["previous"]["limit"] == 20

    gone = post(svc, event("EcomIndexSettings", "REMOVE", SETTINGS_KEYS, None, changed))
    assert gone.status_code == 200 and gone.json()["result"]["action"] == "deleted"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="settings/INDEX#abc/").get("Contents", [])
    assert listed == []

    recent = requests.get(f"{svc.base_url}/exports", timeout=10).json()["exports"]
    assert [(e["eventName"], e["detailType"]) for e in recent[:3]] == [
        ("REMOVE", "EcomIndexSettings.REMOVE"),
        ("MODIFY", "EcomIndexSettings.MODIFY"),
        ("INSERT", "EcomIndexSettings.INSERT"),
    ]
    assert {e["key"] for e in recent[:3]} == {result["key"]}
    assert recent[0]["at"] >= recent[1]["at"] >= recent[2]["at"]
    limited = requests.get(f"{svc.base_url}/exports?limit=1", timeout=10).json()["exports"]
    assert len(limited) == 1


def test_numbers_are_exported_with_every_digit_dynamodb_keeps(
    exporters: dict[str, ServiceProcess], s3: Any
) -> None:
    """`1e400` was written to S3 as `Infinity`, which no JSON reader takes, and a
    38-digit number (DynamoDB keeps them exactly) was rounded through a float."""
    exact = "0.12345678901234567890123456789012345678"
    new = {**SETTINGS_KEYS, "exact": {"N": exact}, "big": {"N": "9.9E+125"},
           "tiny": {"N": "1E-130"}, "half": {"N": "0.5"}, "count": {"N": "12"},
           "many": {"NS": [exact, "3"]}}
    made = post(exporters["settings"], event("EcomIndexSettings", "INSERT", SETTINGS_KEYS, new))
    assert made.status_code == 200, made.text
    raw = s3.get_object(Bucket=BUCKET, Key=made.json()["result"]["key"])["Body"].read()
    item = json.loads(raw, parse_float=decimal.Decimal,
                      parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))["item"]
    assert item["exact"] == decimal.Decimal(exact) and item["many"][0] == decimal.Decimal(exact)
    assert item["big"] == decimal.Decimal("9.9E+125") and item["tiny"] == decimal.Decimal("1E-130")
    assert item["half"] == decimal.Decimal("0.5") and item["count"] == 12


def test_merchandising_keys_and_escaping(exporters: dict[str, ServiceProcess], s3: Any) -> None:
    svc = exporters["merchandising"]
    rule = {"pk": {"S": "RULE#123"}}
    answer = post(svc, event("Merchandising", "INSERT", rule, {**rule, "action": {"S": "pin"}}))
    assert answer.json()["result"]["key"] == "merchandising/RULE#123.json"
    assert read(s3, "merchandising/RULE#123.json")["item"]["action"] == "pin"
    slashed = {"pk": {"S": "RULE#a/b"}, "sk": {"N": "7"}}
    answer = post(svc, event("Merchandising", "MODIFY", slashed, slashed))
    assert answer.json()["result"]["key"] == "merchandising/RULE#a%2Fb/7.json"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "malformed JSON"),
        (b"[" * 100_000, "nested too deeply"),
        ([1, 2], "JSON object"),
        ({}, "Missing 'detail-type'"),
        ({"detail-type": 7, "detail": {}}, "Missing 'detail-type'"),
        ({"detail-type": "Merchandising.INSERT", "detail": {}}, "EcomIndexSettings.*"),
        ({"detail-type": "EcomIndexSettings.INSERT"}, "'detail'"),
        ({"detail-type": "EcomIndexSettings.INSERT", "detail": "x"}, "'detail'"),
        ({"detail-type": "EcomIndexSettings.X", "detail": {"eventName": "X"}}, "eventName"),
        (event("EcomIndexSettings", "INSERT", {}), "detail.keys"),
        (event("EcomIndexSettings", "INSERT", {"pk": "INDEX#a"}), "detail.keys.pk"),
        (event("EcomIndexSettings", "INSERT", {"pk": {"N": "abc"}}), "not a number"),
        (event("EcomIndexSettings", "INSERT", {"pk": {"N": "1e400"}}),
         "detail.keys.pk: '1e400' is not a number DynamoDB holds"),
        (event("EcomIndexSettings", "INSERT", SETTINGS_KEYS, {"x": {"N": "1e-400"}}),
         "detail.newImage.x: '1e-400' is not a number DynamoDB holds"),
        (event("EcomIndexSettings", "INSERT", SETTINGS_KEYS, {"x": {"N": "1" * 39}}),
         "at most 38 significant digits"),
        (event("EcomIndexSettings", "INSERT", {"pk": {"BOOL": True}}), "string, number"),
        (event("EcomIndexSettings", "INSERT", SETTINGS_KEYS, {"a": {"Q": "1"}}),
         "detail.newImage.a"),
        (event("EcomIndexSettings", "INSERT", SETTINGS_KEYS, [1]), "detail.newImage"),
        (event("EcomIndexSettings", "INSERT", SETTINGS_KEYS, {"a": {"S": 1}}), "S must hold"),
        ({**event("EcomIndexSettings", "INSERT", SETTINGS_KEYS),
          "detail": {**event("EcomIndexSettings", "INSERT", SETTINGS_KEYS)["detail"],
                     "tableName": 5}}, "tableName"),
    ],
)
def test_malformed_events_are_400s_naming_the_problem(
    exporters: dict[str, ServiceProcess], body: Any, needle: str
) -> None:
    answer = post(exporters["settings"], body)
    assert answer.status_code == 400, answer.text
    assert needle in answer.json()["error"]


def test_deeply_nested_image_is_a_400(exporters: dict[str, ServiceProcess]) -> None:
    value: dict[str, Any] = {"S": "x"}
    for _ in range(40):
        value = {"M": {"a": value}}
    answer = post(exporters["settings"],
                  event("EcomIndexSettings", "INSERT", SETTINGS_KEYS, {"deep": value}))
    assert answer.status_code == 400 and "deeper" in answer.json()["error"]
    assert requests.get(f"{exporters['settings'].base_url}/exports?limit=0",
                        timeout=5).status_code == 400


def test_missing_bucket_is_503_and_dead_moto_is_502(moto_server_url: str, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with ServiceStarter(tmp_path) as start:
        no_bucket = start.start("exporter", args=["--kind", "settings", "--bucket", "nope-bucket"],
                                env=aws_env(moto_server_url))
        answer = post(no_bucket, event("EcomIndexSettings", "INSERT", SETTINGS_KEYS))
        assert answer.status_code == 503 and "nope-bucket" in answer.json()["error"]
        no_moto = start.start("exporter", args=["--kind", "settings"], env=aws_env(dead))
        answer = post(no_moto, event("EcomIndexSettings", "REMOVE", SETTINGS_KEYS))
        assert answer.status_code == 502 and dead in answer.json()["error"]
        assert no_moto.terminate() == 0


def test_refuses_to_start_without_an_endpoint(tmp_path: Path) -> None:
    with ServiceStarter(tmp_path) as start:
        env = {**aws_env(""), "AWS_ENDPOINT_URL": ""}
        svc = start.spawn("exporter", args=["--kind", "merchandising"], env=env, port=free_port())
        assert svc.wait_exit() == 3
        assert "AWS_ENDPOINT_URL is not set" in svc.output()
