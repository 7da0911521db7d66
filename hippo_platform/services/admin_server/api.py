"""admin_server's `/api/v1` routes: index settings, merchandising rules, uploads.

Every route authenticates first (401 before anything else is looked at), then checks
the body's shape (400 naming the field), then touches storage, so a bad request never
reaches DynamoDB or the cell.

Uploads are not written to the cell here: they are handed to ecom_ingest, which answers
as soon as the batch is stored, and ecom_indexer_service writes them to the cell. The
202 says exactly that: accepted, searchable shortly. The index is checked in the cell
first, so an upload to an index that does not exist is a 404 now rather than a batch
that fails later where nobody is looking.

With `ADMIN_UPLOADS=sqs` the batch travels as the reference's did: one message on the
`{prefix}ecom-indexer` queue on moto, consumed by ecom_indexer. Documents without an
`_id` get one first, so a message delivered twice overwrites itself in the cell.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from hippo_platform.services.admin_server import text_feed
from hippo_platform.services.admin_server.auth import Authenticator
from hippo_platform.services.admin_server.records import Records
from hippo_platform.services.common import (
    App,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    Request,
    Response,
    ServiceUnavailable,
    shapes,
)
from hippo_platform.services.common.aws_lite import AwsError
from hippo_platform.services.common.client import PASS_THROUGH, JsonClient, segment
from hippo_platform.services.common.sqs import Queue, QueueMissing
from hippo_platform.services.ecom_ingest.api import check_documents

NAME = "admin_server"
ACTIONS = ("pin", "bury")
SQS_MAX_BYTES = 256 * 1024  # SQS's limit on one message
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


def _name(req: Request, param: str, what: str) -> str:
    value = req.params[param]
    if not _NAME.match(value):
        raise BadRequest(
            f"bad {what} {value!r}: 1-128 letters, digits, '_', '-', '.', ':', "
            "starting with a letter or digit"
        )
    return value


def _index(req: Request) -> str:
    return _name(req, "index", "index name")


def _rule_ref(req: Request) -> tuple[str, str]:
    return _index(req), _name(req, "rule_id", "rule id")


def _no_rule(index: str, rule_id: str) -> NotFound:
    return NotFound(f"rule '{rule_id}' not found for index '{index}'")


def _settings_body(body: dict[str, Any]) -> dict[str, Any]:
    """`{"settings": {...}}`, the shape GET answers with, or the bare settings object."""
    return shapes.optional_object(body, "settings") if "settings" in body else body


def _rule_body(body: dict[str, Any]) -> dict[str, str]:
    action = body.get("action")
    if action not in ACTIONS:
        raise BadRequest(f"field 'action' must be one of {', '.join(ACTIONS)}, not {action!r}")
    return {
        "action": str(action),
        "documentId": shapes.require_str(body, "documentId", max_len=512),
        "query": shapes.require_str(body, "query", max_len=1024),
    }


def build_app(
    auth: Authenticator,
    records: Records,
    ingest: JsonClient,
    *,
    uploads: Queue | None = None,
    debug: bool = False,
) -> App:
    app = App(NAME, debug=debug)
    cell = auth.cell
    r = app.router
    base = "/api/v1/indexes/{index}"

    def allowed(req: Request) -> Any:
        """The caller, once allowed at this index. An account's API key reaches only the
        account's own indexes (as uploads do): any key read and replaced another
        account's settings and buried its products. A token names a person of the
        organisation (a merchandiser), who manages every index, as before."""
        who = auth.principal(req)
        if who.api_key is not None:
            cell.call("GET", "/indexes/" + segment(_index(req)),  # 404 when not its own
                      headers={"x-api-key": str(who.api_key)})
        return who

    @r.put(base + "/settings")
    def put_settings(req: Request) -> dict[str, Any]:
        who = allowed(req)
        index = _index(req)
        return records.put_settings(index, _settings_body(req.json_object()), who.subject)

    @r.get(base + "/settings")
    def get_settings(req: Request) -> dict[str, Any]:
        allowed(req)
        index = _index(req)
        found = records.get_settings(index)
        if found is None:
            raise NotFound(f"no settings stored for index '{index}'")
        return found

    @r.get(base + "/merchandising/rules")
    def list_rules(req: Request) -> dict[str, Any]:
        allowed(req)
        return {"rules": records.list_rules(_index(req))}

    @r.put(base + "/merchandising/rules/{rule_id}")
    def put_rule(req: Request) -> Response:
        who = allowed(req)
        index, rule_id = _rule_ref(req)
        rule, new = records.put_rule(index, rule_id, _rule_body(req.json_object()), who.subject)
        return Response(201 if new else 200, rule)

    @r.get(base + "/merchandising/rules/{rule_id}")
    def get_rule(req: Request) -> dict[str, Any]:
        allowed(req)
        index, rule_id = _rule_ref(req)
        found = records.get_rule(index, rule_id)
        if found is None:
            raise _no_rule(index, rule_id)
        return found

    @r.delete(base + "/merchandising/rules/{rule_id}")
    def delete_rule(req: Request) -> dict[str, Any]:
        allowed(req)
        index, rule_id = _rule_ref(req)
        if not records.delete_rule(index, rule_id):
            raise _no_rule(index, rule_id)
        return {"ruleId": rule_id, "indexName": index, "deleted": True}

    @r.post(base + "/documents")
    def upload(req: Request) -> Response:
        who = auth.uploader(req, auth.principal(req))
        documents = check_documents(shapes.require_list(req.json_object(), "documents"))
        return accept(req, who, documents)

    @r.post(base + "/documents/text")
    def upload_text(req: Request) -> Response:
        """Text onboarding (text_feed.py): a CSV or one-product-per-line feed."""
        who = auth.uploader(req, auth.principal(req))
        documents = check_documents(text_feed.documents_from(*text_feed.read_feed(req)))
        return accept(req, who, documents)

    def accept(req: Request, who: Any, documents: list[dict[str, Any]]) -> Response:
        index = _index(req)
        key = {"x-api-key": str(who.api_key)}
        cell.call("GET", "/indexes/" + segment(index), headers=key)  # 404 for an unknown index
        if uploads is not None:
            return Response(202, _enqueue(uploads, index, who.account_id, str(who.api_key),
                                          documents))
        batch = ingest.call(
            "POST",
            "/batches",
            body={"index": index, "accountId": who.account_id, "documents": documents},
            headers=key,
            passthrough=PASS_THROUGH | {503},  # a database hiccup: the client may retry
        )
        return Response(202, {"batchId": batch["batchId"], "count": batch["count"]})

    return app


def _enqueue(queue: Queue, index: str, account: Any, api_key: str,
             documents: list[dict[str, Any]]) -> dict[str, Any]:
    docs = [d if d.get("_id") else {**d, "_id": uuid.uuid4().hex} for d in documents]
    batch_id = uuid.uuid4().hex
    message = {"batchId": batch_id, "index": index, "accountId": account, "apiKey": api_key,
               "documents": docs}
    size = len(json.dumps(message, separators=(",", ":")).encode("utf-8"))
    if size > SQS_MAX_BYTES:
        raise PayloadTooLarge(
            f"this batch is {size} bytes as an SQS message, over SQS's {SQS_MAX_BYTES}-byte "
            "limit: split it into smaller uploads")
    try:
        queue.send(message)
    except (AwsError, QueueMissing) as exc:
        raise ServiceUnavailable(
            f"could not queue the upload on SQS ({exc}): nothing was accepted; retry the "
            "upload", extra={"queue": queue.name}, headers={"Retry-After": "1"}) from None
    return {"batchId": batch_id, "count": len(docs), "via": "sqs"}
