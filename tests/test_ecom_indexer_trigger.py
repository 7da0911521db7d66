"""ecom_indexer_trigger on real processes and a real moto: a documents file in S3
(a JSON list, {"documents": [...]}, or JSON lines) becomes batches on the provisioned
queue that ecom_indexer writes into the cell; bad files and missing objects are 4xx."""

from __future__ import annotations

import json
from collections.abc import Iterator

import moto_server
import pytest
import requests
from queue_stack import QueueStack, queue_stack
from stackutil import wait_for

from hippo_platform.provision import bucket_name

moto_server_url = moto_server.moto_server_url


@pytest.fixture(scope="module")
def stack(moto_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueStack]:
    yield from queue_stack(moto_server_url, tmp_path_factory.mktemp("trigger"))


def put(stack: QueueStack, key: str, data: bytes) -> str:
    bucket = bucket_name(stack.prefix)
    stack.client("s3").put_object(Bucket=bucket, Key=key, Body=data)
    return bucket


def trigger(stack: QueueStack, body: object, key: str | None = "") -> requests.Response:
    headers = {"x-api-key": key or stack.key} if key is not None else {}
    return requests.post(f"{stack.url('trigger')}/trigger", json=body, headers=headers,
                         timeout=10)


def test_each_file_shape_becomes_searchable(stack: QueueStack) -> None:
    files = {
        "list.json": json.dumps([{"_id": "t1", "title": "teak stool"}]).encode(),
        "wrapped.json": json.dumps({"documents": [{"_id": "t2", "title": "teak shelf"}]}).encode(),
        "lines.jsonl": b'{"_id": "t3", "title": "teak bench"}\n\n{"title": "teak tray"}\n',
        # saved by a Windows editor: a UTF-8 byte-order mark first, and CRLF line ends
        "bom.jsonl": b'\xef\xbb\xbf{"_id": "t4", "title": "teak desk"}\r\n'
                     b'{"_id": "t6", "title": "teak chair"}\r\n',
        "bom.json": b'\xef\xbb\xbf' + json.dumps([{"_id": "t5", "title": "teak lamp"}]).encode(),
        # U+2028 and U+0085 raw in a string, as json.dumps(ensure_ascii=False) writes them:
        # str.splitlines broke the line there, "not JSON" (adv31 s/3)
        "raw.jsonl": "\n".join(json.dumps(d, ensure_ascii=False) for d in [
            {"_id": "t7", "title": "teak\u2028shelf"},
            {"_id": "t8", "title": "teak\x85bowl"}]).encode(),
    }
    for name, data in files.items():
        bucket = put(stack, f"imports/{name}", data)
        answer = trigger(stack, {"bucket": bucket, "key": f"imports/{name}", "index": "shop"})
        assert answer.status_code == 202, answer.text
        assert answer.json()["queue"] == f"{stack.prefix}ecom-indexer"
    found = wait_for(lambda: len(stack.search("teak")) == 9 and stack.search("teak"),
                     what="nine documents from six files")
    assert {"t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"} <= set(found)


def test_a_large_file_is_split_into_batches_that_fit_sqs(stack: QueueStack) -> None:
    docs = [{"_id": f"big{n}", "title": f"granite slab {n}", "pad": "y" * 3000}
            for n in range(150)]
    bucket = put(stack, "imports/big.json", json.dumps(docs).encode())
    answer = trigger(stack, {"bucket": bucket, "key": "imports/big.json", "index": "shop"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["count"] == 150 and answer.json()["batches"] >= 3
    wait_for(lambda: len(stack.search("granite")) >= 10, what="the split batches in the cell")


def test_bad_requests_and_bad_files_are_4xx(stack: QueueStack) -> None:
    bucket = put(stack, "imports/bad.jsonl", b'{"_id": "x"}\nnot json\n')
    put(stack, "imports/scalar.json", b"42")
    put(stack, "imports/items.json", b'[1, 2]')
    put(stack, "imports/latin1.json", "[{\"t\": \"caf\xe9\"}]".encode("latin-1"))
    put(stack, "imports/deep.json", b"[" * 5000 + b"]" * 5000)  # was a 500 (adv28 k/1)
    put(stack, "imports/deep.jsonl", b'{"_id": "x"}\n' + b"[" * 5000 + b"]" * 5000 + b"\n")
    cases: list[tuple[object, str | None, int, str]] = [
        ({"bucket": bucket, "key": "imports/bad.jsonl", "index": "shop"}, "", 400, "line 2"),
        ({"bucket": bucket, "key": "imports/scalar.json", "index": "shop"}, "", 400,
         "JSON list"),
        ({"bucket": bucket, "key": "imports/items.json", "index": "shop"}, "", 400,
         "documents[0]"),
        ({"bucket": bucket, "key": "imports/latin1.json", "index": "shop"}, "", 400, "UTF-8"),
        ({"bucket": bucket, "key": "imports/deep.json", "index": "shop"}, "", 400,
         "nested too deeply"),
        ({"bucket": bucket, "key": "imports/deep.jsonl", "index": "shop"}, "", 400,
         "line 2 of the object is not JSON: nested too deeply"),
        ({"bucket": bucket, "key": "imports/none.json", "index": "shop"}, "", 404, "none.json"),
        ({"bucket": "no-such-bucket", "key": "k", "index": "shop"}, "", 404, "no-such-bucket"),
        ({"bucket": bucket, "index": "shop"}, "", 400, "'key'"),
        ([1], "", 400, "JSON object"),
        ({"bucket": bucket, "key": "imports/list.json", "index": "shop"}, None, 401,
         "x-api-key"),
    ]
    for body, key, status, words in cases:
        answer = trigger(stack, body, key)
        assert answer.status_code == status, (body, answer.text)
        assert words in answer.json()["error"], (body, answer.text)
    assert requests.get(f"{stack.url('trigger')}/trigger").status_code == 405
