"""Index export to S3 on moto and import back, through real fake_cell, controller and moto
processes: the round trip keeps settings and every document; a bad file is refused with
its line number and writes nothing; missing files and indexes are 404 JSON; without
moto the routes say what to start."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto_server import running_moto
from service_process import ServiceStarter

from hippo_platform.provision import bucket_name

DOCS = [{"_id": f"p{i}", "title": f"lamp {i}", "tags": ["home"], "price": i} for i in range(40)]
PREFIX = "ie-"


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from running_moto(tmp_path_factory.mktemp("moto") / "moto.log")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[ServiceStarter]:
    with ServiceStarter(tmp_path) as starter:
        yield starter


def s3(moto_url: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def up(start: ServiceStarter, moto_url: str) -> tuple[str, str, dict[str, str]]:
    client = s3(moto_url)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket_name(PREFIX))
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    ctl = start.start("controller", env={
        "CONTROL_PLANE_URL_OVERRIDE": cell.base_url, "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "HIPPODROME_TABLE_PREFIX": PREFIX, "HIPPODROME_PROFILE": "core"})
    made = requests.post(f"{ctl.base_url}/api/v2/accounts", json={"name": "a"}, timeout=10)
    key = {"x-api-key": made.json()["apiKey"]}
    requests.post(f"{ctl.base_url}/api/v2/indexes", headers=key, timeout=10,
                  json={"indexName": "src", "settings": {"model": "lexical", "x": [1]}})
    requests.post(f"{cell.base_url}/indexes/src/documents", headers=key,
                  json={"documents": DOCS}, timeout=10)
    return cell.base_url, ctl.base_url, key


def docs_of(cell: str, key: dict[str, str], index: str) -> list[dict[str, Any]]:
    got = requests.get(f"{cell}/indexes/{index}/export", headers=key, timeout=10)
    assert got.status_code == 200, got.text
    return list(got.json()["documents"])


def test_export_then_import_round_trips(start: ServiceStarter, moto_url: str) -> None:
    cell, ctl, key = up(start, moto_url)
    out = requests.post(f"{ctl}/api/v2/indexes/src/export", headers=key, timeout=10)
    assert out.status_code == 201, out.text
    made = out.json()
    assert made["numberOfDocuments"] == 40 and made["bucket"] == bucket_name(PREFIX)
    body = s3(moto_url).get_object(Bucket=made["bucket"], Key=made["key"])["Body"].read()
    lines = body.decode().splitlines()
    assert json.loads(lines[0])["settings"] == {"model": "lexical", "x": [1]}
    assert [json.loads(line) for line in lines[1:]] == DOCS
    back = requests.post(f"{ctl}/api/v2/indexes/restored/import", headers=key, timeout=10,
                         json={"key": made["key"]})
    assert back.status_code == 200 and back.json()["created"] is True, back.text
    assert docs_of(cell, key, "restored") == DOCS
    info = requests.get(f"{ctl}/api/v2/indexes/restored", headers=key, timeout=10).json()
    assert info["settings"] == {"model": "lexical", "x": [1]}
    again = requests.post(f"{ctl}/api/v2/indexes/restored/import", headers=key, timeout=10,
                          json={"key": made["key"]})
    assert again.json()["created"] is False and docs_of(cell, key, "restored") == DOCS
    # the same file saved again by a Windows editor (a byte-order mark first) was refused
    s3(moto_url).put_object(Bucket=made["bucket"], Key="bom.jsonl", Body=b"\xef\xbb\xbf" + body)
    bom = requests.post(f"{ctl}/api/v2/indexes/from-bom/import", headers=key, timeout=10,
                        json={"key": "bom.jsonl"})
    assert bom.status_code == 200, bom.text
    assert docs_of(cell, key, "from-bom") == DOCS
    # a blank line first (and a BOM): the header became a document, and the settings were
    # lost (adv32 u/4)
    s3(moto_url).put_object(Bucket=made["bucket"], Key="blank-first.jsonl",
                            Body=b"\xef\xbb\xbf\n  \r\n" + body)
    blank = requests.post(f"{ctl}/api/v2/indexes/blank-first/import", headers=key,
                          timeout=10, json={"key": "blank-first.jsonl"})
    assert blank.status_code == 200 and blank.json()["numberOfDocuments"] == 40, blank.text
    assert docs_of(cell, key, "blank-first") == DOCS
    info = requests.get(f"{ctl}/api/v2/indexes/blank-first", headers=key, timeout=10).json()
    assert info["settings"] == {"model": "lexical", "x": [1]}
    # a document holding U+2028 raw, as json.dumps(ensure_ascii=False) writes it (s/3)
    raw = [{"_id": "r1", "title": "line\u2028separator"}, {"_id": "r2", "title": "nel\x85"}]
    s3(moto_url).put_object(Bucket=made["bucket"], Key="raw.jsonl", Body="\n".join(
        json.dumps(d, ensure_ascii=False) for d in raw).encode())
    got = requests.post(f"{ctl}/api/v2/indexes/raw-seps/import", headers=key, timeout=10,
                        json={"key": "raw.jsonl"})
    assert got.status_code == 200, got.text
    assert docs_of(cell, key, "raw-seps") == raw


def test_bad_files_and_missing_records(start: ServiceStarter, moto_url: str) -> None:
    cell, ctl, key = up(start, moto_url)
    client = s3(moto_url)
    bucket = bucket_name(PREFIX)
    client.put_object(Bucket=bucket, Key="bad.jsonl", Body=b'{"_id": "a"}\n{"_id": "b"\n')
    client.put_object(Bucket=bucket, Key="list.jsonl", Body=b'{"_id": "a"}\n[1]\n')
    client.put_object(Bucket=bucket, Key="id.jsonl", Body=b'{"_id": 5}\n')
    client.put_object(Bucket=bucket, Key="bin.jsonl", Body=b"\xff\xfe")
    # a 500 with the parser's RecursionError words (adv28 k/1)
    client.put_object(Bucket=bucket, Key="deep.jsonl",
                      Body=b'{"_id": "a"}\n' + b"[" * 5000 + b"]" * 5000 + b"\n")
    # NaN and half a UTF-16 pair made the index, then the cell's 400 blamed "the body";
    # 5,000 digits were a 500 (adv29 o/1, o/2)
    client.put_object(Bucket=bucket, Key="nan.jsonl", Body=b'{"_id": "a"}\n{"n": NaN}\n')
    client.put_object(Bucket=bucket, Key="half.jsonl", Body=b'{"_id": "a"}\n{"t": "\\ud800"}\n')
    client.put_object(Bucket=bucket, Key="digits.jsonl",
                      Body=b'{"_id": "a"}\n{"n": ' + b"1" * 5000 + b"}\n")
    # made an empty index, 200 (adv31 s's notes): a wrong key or a truncated upload
    client.put_object(Bucket=bucket, Key="empty.jsonl", Body=b"")
    client.put_object(Bucket=bucket, Key="blank.jsonl", Body=b"\xef\xbb\xbf\n \n")
    header = b'{"hippodromeExport": 1, "indexName": "src", "settings": {"x": 1}}\n'
    client.put_object(Bucket=bucket, Key="joined.jsonl",
                      Body=header + b'{"_id": "a"}\n' + header + b'{"_id": "b"}\n')
    url = f"{ctl}/api/v2/indexes/dst/import"
    for name, text in (("empty", "is empty (no export header, no documents)"),
                       ("joined", "line 3: a second export header"),
                       ("blank", "is empty"), ("bad", "line 2: not JSON"),
                       ("list", "line 2: a document must be"),
                       ("id", "line 1: _id must be"), ("bin", "not UTF-8"),
                       ("deep", "line 2: not JSON (nested too deeply (more than 512 levels))"),
                       ("nan", "line 2: not JSON (NaN is not JSON"),
                       ("half", "line 2: not JSON (\\ud800 is half of a UTF-16 pair"),
                       ("digits", "line 2: not JSON (a number of over 4300 digits")):
        got = requests.post(url, headers=key, json={"key": f"{name}.jsonl"}, timeout=10)
        assert got.status_code == 400 and text in got.json()["error"], got.text
    assert requests.get(f"{cell}/indexes/dst", headers=key, timeout=10).status_code == 404
    for body, status in (({}, 400), ({"key": 3}, 400), ({"key": "k", "bucket": ""}, 400),
                         ({"key": "nosuch.jsonl"}, 404),
                         ({"key": "k", "bucket": "no-such-bucket"}, 404)):
        got = requests.post(url, headers=key, json=body, timeout=10)
        assert got.status_code == status, (body, got.text)
        assert isinstance(got.json()["error"], str)
    missing = requests.post(f"{ctl}/api/v2/indexes/nosuch/export", headers=key, timeout=10)
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
    nokey = requests.post(f"{ctl}/api/v2/indexes/src/export", timeout=10)
    assert nokey.status_code == 401
    plain = b'{"_id": "x", "t": "plain"}\n\n{"t": "no id"}\n'
    client.put_object(Bucket=bucket, Key="plain.jsonl", Body=plain)
    got = requests.post(url, headers=key, json={"key": "plain.jsonl"}, timeout=10)
    assert got.status_code == 200 and got.json()["numberOfDocuments"] == 2, got.text


def test_without_moto_the_routes_say_what_to_start(start: ServiceStarter) -> None:
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    ctl = start.start("controller", env={"CONTROL_PLANE_URL_OVERRIDE": cell.base_url,
                                         "AWS_ENDPOINT_URL": ""})
    made = requests.post(f"{ctl.base_url}/api/v2/accounts", json={"name": "a"}, timeout=10)
    key = {"x-api-key": made.json()["apiKey"]}
    got = requests.post(f"{ctl.base_url}/api/v2/indexes/src/export", headers=key, timeout=10)
    assert got.status_code == 503 and "--profile ecom" in got.json()["error"], got.text
