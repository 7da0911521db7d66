"""Index export to and import from S3 on moto, as the reference's import/export flow.

An export is one JSON Lines object in the stack's exports bucket: a header line
(`{"hippodromeExport": 1, "indexName", "settings", "numberOfDocuments", "exportedAt"}`)
then one document per line, taken from one consistent read of the cell. An import reads
such an object (or any JSON Lines file of documents, header optional), checks every
line before writing anything (a bad line is a 400 naming its number), creates the index
with the file's settings when it does not exist, and writes all documents in one cell
call, which the cell journals as one op: an import is whole or absent.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hippo_platform.resource_names import bucket_name
from hippo_platform.services.common.aws_lite import AwsClient, AwsConfigError, AwsError
from hippo_platform.services.common.client import JsonClient, segment
from hippo_platform.services.common.errors import BadRequest, NotFound, ServiceUnavailable
from hippo_platform.services.common.messages import NotJson, strict_json, text_lines

PREFIX = "index-exports"


class Transfers:
    def __init__(self, cell: JsonClient, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.cell = cell
        self.bucket = bucket_name(env.get("HIPPODROME_TABLE_PREFIX", ""))
        try:
            self.aws: AwsClient | None = AwsClient.from_env(env)
        except AwsConfigError:
            self.aws = None

    def _client(self) -> AwsClient:
        if self.aws is None:
            raise ServiceUnavailable("import/export keeps files in S3 on moto: start the stack "
                                     "with --profile ecom or full (AWS_ENDPOINT_URL is not set)")
        return self.aws

    def export(self, headers: dict[str, str], name: str) -> dict[str, Any]:
        aws = self._client()
        account = self.cell.call("GET", "/account", headers=headers)["accountId"]
        dump = self.cell.call("GET", f"/indexes/{segment(name)}/export", headers=headers)
        docs = dump["documents"]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        export_id = f"{stamp}-{secrets.token_hex(4)}"
        key = f"{PREFIX}/{account}/{dump['indexName']}/{export_id}.jsonl"
        head = {"hippodromeExport": 1, "indexName": dump["indexName"],
                "settings": dump["settings"], "numberOfDocuments": len(docs),
                "exportedAt": stamp}
        lines = [json.dumps(head)] + [json.dumps(d, separators=(",", ":")) for d in docs]
        try:
            aws.put_object(self.bucket, key, ("\n".join(lines) + "\n").encode(),
                           "application/x-ndjson")
        except AwsError as exc:
            raise ServiceUnavailable(f"cannot write the export: {exc.sentence}") from None
        return {"exportId": export_id, "indexName": dump["indexName"], "bucket": self.bucket,
                "key": key, "numberOfDocuments": len(docs)}

    def import_(self, headers: dict[str, str], name: str, body: dict[str, Any]) -> dict[str, Any]:
        key = body.get("key")
        if not isinstance(key, str) or not key.strip():
            raise BadRequest("field 'key' is required: the S3 key of a JSON Lines file in the "
                             f"exports bucket {self.bucket} (an export's 'key')")
        bucket = body.get("bucket", self.bucket)
        if not isinstance(bucket, str) or not bucket:
            raise BadRequest("field 'bucket' must be a non-empty string")
        aws = self._client()
        try:
            raw = aws.get_object(bucket, key)
        except AwsError as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "404"):
                raise NotFound(f"no file at s3://{bucket}/{key}") from None
            raise ServiceUnavailable(f"cannot read the import file: {exc.sentence}") from None
        settings, docs = parse_lines(raw, f"s3://{bucket}/{key}")
        exists = self.cell.request("GET", "/indexes/" + segment(name), headers=headers)
        if exists.status == 404:
            self.cell.call("POST", "/indexes/" + segment(name), body=settings, headers=headers)
        else:
            self.cell.check(exists)
        if docs:
            self.cell.call("POST", f"/indexes/{segment(name)}/documents",
                           body={"documents": docs}, headers=headers)
        return {"indexName": name, "numberOfDocuments": len(docs),
                "created": exists.status == 404, "source": f"s3://{bucket}/{key}"}


def parse_lines(raw: bytes, where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(settings, documents); every line checked before anything is written."""
    try:
        text = raw.decode("utf-8-sig")  # a BOM (Windows editors) is read past, as in bodies
    except UnicodeDecodeError:
        raise BadRequest(f"{where} is not UTF-8 text") from None
    settings: dict[str, Any] = {}
    docs: list[dict[str, Any]] = []
    header = False
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        try:  # every line checked before anything is made (a NaN reached the cell)
            value = strict_json(line)
        except NotJson as exc:
            raise BadRequest(f"{where} line {number}: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise BadRequest(f"{where} line {number}: a document must be a JSON object")
        if "hippodromeExport" in value:
            # The first line that is not blank: after a blank line the header was kept as
            # a document and the index made without its settings, 200 (adv32 u/4)
            if docs or header:
                raise BadRequest(f"{where} line {number}: a second export header (two "
                                 "exports joined into one file?): import each on its own")
            found = value.get("settings", {})
            settings = found if isinstance(found, dict) else {}
            header = True
            continue
        if "_id" in value and (not isinstance(value["_id"], str) or not value["_id"]):
            raise BadRequest(f"{where} line {number}: _id must be a non-empty string")
        docs.append(value)
    if not docs and not header:
        # An export of an empty index has its header line; nothing at all is a wrong
        # key or a cut upload, and it made an empty index, 200 (adv31 s's notes).
        raise BadRequest(f"{where} is empty (no export header, no documents): nothing was "
                         "imported; check the key (an export's 'key' names its file)")
    return settings, docs
