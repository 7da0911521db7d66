"""`python -m hippo_platform.services.ecom_indexer_trigger [--port 9017]`.

The reference's ecom_indexer_trigger was a Lambda that turned a documents file landing
in S3 into indexing work. Locally: `POST /trigger {"bucket", "key", "index"}` with the
index's `x-api-key` reads the object from S3 on moto (a JSON list of documents,
`{"documents": [...]}`, or one JSON object per line), splits it into batches that fit
an SQS message, and puts them on the `{prefix}ecom-indexer` queue, where ecom_indexer
writes them into the cell: 202 `{"batches", "count", "queue"}`.

A missing object or bucket is a 404 naming it; a file that is not documents a 400
saying which line or item; a missing queue a 503 saying aws_provision makes it.

Environment: ECOM_INDEXER_QUEUE (default `{HIPPODROME_TABLE_PREFIX}ecom-indexer`),
AWS_ENDPOINT_URL (required: moto) and dummy credentials, DEBUG.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

from hippo_platform.services.common import (
    App,
    BadGateway,
    BadRequest,
    NotFound,
    Request,
    Response,
    ServiceUnavailable,
    Unauthorized,
    env_flag,
    shapes,
)
from hippo_platform.services.common.aws_lite import AwsClient, AwsConfigError, AwsError
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.messages import NotJson, strict_json, text_lines
from hippo_platform.services.common.runner import main
from hippo_platform.services.common.sqs import Queue, QueueMissing, queue_name
from hippo_platform.services.ecom_ingest.api import check_documents

NAME = "ecom_indexer_trigger"
DEFAULT_PORT = 9017
EXIT_CONFIG = 78  # sysexits EX_CONFIG
BATCH_DOCS = 100
BATCH_BYTES = 200 * 1024  # under SQS's 256 KiB, with room for the envelope


def parse_documents(data: bytes) -> list[Any]:
    try:
        text = data.decode("utf-8-sig")  # a BOM (Windows editors) is read past, as in bodies
    except UnicodeDecodeError:
        raise BadRequest("the object is not UTF-8 text") from None
    try:
        whole = strict_json(text)
    except NotJson:
        whole = None
        docs = []
        for n, line in enumerate(text_lines(text), 1):
            if line.strip():
                try:
                    docs.append(strict_json(line))
                except NotJson as exc:
                    raise BadRequest(f"line {n} of the object is not JSON: {exc}") from None
        return docs
    if isinstance(whole, dict):
        return shapes.require_list(whole, "documents")
    if isinstance(whole, list):
        return whole
    raise BadRequest("the object must hold a JSON list of documents, {\"documents\": [...]}, "
                     "or one JSON object per line")


def batches(docs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for doc in docs:
        doc_size = len(json.dumps(doc, separators=(",", ":")).encode("utf-8"))
        if doc_size > BATCH_BYTES:
            raise BadRequest(f"document {doc.get('_id')!r} is {doc_size} bytes, over the "
                             f"{BATCH_BYTES}-byte limit of one queued batch")
        if out[-1] and (len(out[-1]) >= BATCH_DOCS or size + doc_size > BATCH_BYTES):
            out.append([])
            size = 0
        out[-1].append(doc if doc.get("_id") else {**doc, "_id": uuid.uuid4().hex})
        size += doc_size
    return out


def build_app(aws: AwsClient, queue: Queue, *, debug: bool = False) -> App:
    app = App(NAME, debug=debug, health=lambda: {"queue": queue.name})

    @app.router.post("/trigger")
    def trigger(req: Request) -> Response:
        key = req.header("x-api-key")
        if not key:
            raise Unauthorized("missing x-api-key header (the index's API key)")
        body = req.json_object()
        bucket = shapes.require_str(body, "bucket", max_len=63)
        obj = shapes.require_str(body, "key", max_len=1024)
        index = shapes.require_str(body, "index", max_len=128)
        try:
            data = aws.get_object(bucket, obj)
        except AwsError as exc:
            if exc.status == 404:
                raise NotFound(f"s3://{bucket}/{obj}: {exc.code}") from None
            raise BadGateway(exc.sentence, extra={"peer": "s3"}) from None
        docs = check_documents(parse_documents(data))
        groups = batches(docs)
        try:
            for group in groups:
                queue.send({"batchId": uuid.uuid4().hex, "index": index, "apiKey": key,
                            "documents": group, "source": f"s3://{bucket}/{obj}"})
        except (AwsError, QueueMissing) as exc:
            raise ServiceUnavailable(f"could not queue the batches: {exc}",
                                     headers={"Retry-After": "1"}) from None
        log_line(f"s3://{bucket}/{obj}: {len(docs)} docs in {len(groups)} batches for '{index}'")
        return Response(202, {"batches": len(groups), "count": len(docs), "queue": queue.name})

    return app


def make_app(_args: argparse.Namespace) -> App:
    name = queue_name(os.environ)
    if not name:
        log_error(f"{NAME}: ECOM_INDEXER_QUEUE is not set (nor HIPPODROME_TABLE_PREFIX)")
        raise SystemExit(EXIT_CONFIG)
    try:
        aws = AwsClient.from_env(attempts=3, timeout=10.0)
    except AwsConfigError as exc:
        log_error(f"{NAME}: {exc}")
        raise SystemExit(EXIT_CONFIG) from None
    log_line(f"{NAME}: S3 documents files -> SQS queue {name} at {aws.endpoint}")
    app = build_app(aws, Queue(aws, name), debug=env_flag("DEBUG"))
    app.close_hooks.append(aws.close)
    return app


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
