"""ecom_ingest's routes: accept batches, list them for the indexer, settle them.

Shapes are checked here, before the store sees anything, so a bad upload is a 400
naming the field and the store only ever holds batches the indexer can send as they are.
"""

from __future__ import annotations

from typing import Any

from hippo_platform.services.common import (
    App,
    BadRequest,
    NotFound,
    Request,
    Response,
    ServiceUnavailable,
    created,
    shapes,
)
from hippo_platform.services.ecom_ingest.store import STATUSES, Batch, BatchStore, NewBatch

NAME = "ecom_ingest"
MAX_DOCUMENTS = 10_000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def check_documents(raw: list[Any]) -> list[dict[str, Any]]:
    """Objects with, when present, a non-empty string `_id`: what the cell accepts."""
    if not raw:
        raise BadRequest("field 'documents' must not be empty")
    if len(raw) > MAX_DOCUMENTS:
        raise BadRequest(f"a batch holds at most {MAX_DOCUMENTS} documents, got {len(raw)}")
    for n, doc in enumerate(raw):
        if not isinstance(doc, dict):
            raise BadRequest(f"documents[{n}] must be a JSON object")
        if "_id" in doc and (not isinstance(doc["_id"], str) or not doc["_id"]):
            raise BadRequest(f"documents[{n}]._id must be a non-empty string")
    return raw


def _limit(req: Request) -> int:
    raw = req.query.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be an integer, not {raw!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _status(req: Request) -> str | None:
    status = req.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    return status


def build_app(store: BatchStore, *, debug: bool = False) -> App:
    def health() -> dict[str, Any]:
        """Reports the store without failing on it: a restart cannot bring a database
        back, and liveness failures would only crash-loop this process meanwhile."""
        try:
            store.ping()
        except ServiceUnavailable as exc:
            return {"store": store.kind, "storeStatus": exc.message}
        return {"store": store.kind, "storeStatus": "ok"}

    app = App(NAME, debug=debug, health=health)
    app.close_hooks.append(store.close)
    r = app.router

    def found(batch: Batch | None, batch_id: str) -> dict[str, Any]:
        if batch is None:
            raise NotFound(f"batch '{batch_id}' not found")
        return batch.view()

    @r.post("/batches")
    def add(req: Request) -> Response:
        body = req.json_object()
        key = req.header("x-api-key")
        if not key:
            raise BadRequest(
                "x-api-key header is required: the indexer writes the batch to the cell with it"
            )
        batch = NewBatch(
            index=shapes.require_str(body, "index", max_len=128),
            account_id=shapes.require_str(body, "accountId", max_len=128),
            api_key=key,
            documents=check_documents(shapes.require_list(body, "documents")),
        )
        stored = store.add(batch)  # durable before the 201
        return created({"batchId": stored.batch_id, "count": stored.count})

    @r.get("/batches")
    def listing(req: Request) -> dict[str, Any]:
        return {"batches": [b.view() for b in store.list(_status(req), _limit(req))]}

    @r.get("/batches/{batch_id}")
    def get(req: Request) -> dict[str, Any]:
        return found(store.get(req.params["batch_id"]), req.params["batch_id"])

    @r.post("/batches/{batch_id}/ack")
    def ack(req: Request) -> dict[str, Any]:
        return found(store.ack(req.params["batch_id"]), req.params["batch_id"])

    @r.post("/batches/{batch_id}/fail")
    def fail(req: Request) -> dict[str, Any]:
        error = shapes.require_str(req.json_object(), "error", max_len=4000)
        return found(store.fail(req.params["batch_id"], error), req.params["batch_id"])

    @r.get("/stats")
    def stats(_req: Request) -> dict[str, Any]:
        return {"store": store.kind, **store.counts()}

    return app
