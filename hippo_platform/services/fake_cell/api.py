"""fake_cell's HTTP routes: a thin layer from JSON requests to `Cell` calls.

Admin routes (`/accounts...`) carry no key: they are the controller's side of the
cell and, like every bundled service, listen on loopback only. Everything under
`/indexes` and `/account` is scoped to the account that owns the `x-api-key`.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from hippo_platform.services.common import (
    App,
    BadRequest,
    Request,
    Response,
    ServiceUnavailable,
    created,
    shapes,
)
from hippo_platform.services.fake_cell.search import parse_filter
from hippo_platform.services.fake_cell.store import Cell

MAX_LIMIT = 1000
MAX_OFFSET = 10_000


def _key(req: Request) -> str | None:
    return req.header("x-api-key")


def _check_documents(raw: list[Any]) -> list[dict[str, Any]]:
    for n, doc in enumerate(raw):
        if not isinstance(doc, dict):
            raise BadRequest(f"documents[{n}] must be a JSON object")
        if "_id" in doc and (not isinstance(doc["_id"], str) or not doc["_id"]):
            raise BadRequest(f"documents[{n}]._id must be a non-empty string")
        reserved = [k for k in doc if k.startswith("_") and k != "_id"]
        if reserved:
            raise BadRequest(f"documents[{n}]: field names starting with '_' are reserved")
    return raw


def _ids(raw: list[Any]) -> list[str]:
    if not all(isinstance(i, str) and i for i in raw):
        raise BadRequest("documentIds must be non-empty strings")
    return raw


def build_app(cell: Cell, *, debug: bool = False, lock_timeout: float = 2.0) -> App:
    """`lock_timeout`: how long /healthz waits for the store lock before failing."""
    app = App("fake_cell", debug=debug, health=lambda: _health(cell, lock_timeout))
    r = app.router

    @r.post("/accounts")
    def create_account(req: Request) -> Response:
        name = shapes.require_str(req.json_object(), "name", max_len=200)
        account = cell.create_account(name)
        return created({**account.public(), "apiKey": account.api_key})

    @r.get("/accounts")
    def list_accounts(_req: Request) -> dict[str, Any]:
        return {"results": cell.list_accounts()}

    @r.get("/accounts/{account_id}")
    def get_account(req: Request) -> dict[str, Any]:
        return cell.describe_account(req.params["account_id"])

    @r.get("/accounts/{account_id}/indexes")
    def get_account_indexes(req: Request) -> dict[str, Any]:
        return {"results": cell.account_indexes(req.params["account_id"])}

    @r.post("/accounts/{account_id}/indexes/{name}/fork")
    def fork_for_account(req: Request) -> Response:
        return _fork(cell, req.params["account_id"], req)

    @r.get("/account")
    def whoami(req: Request) -> dict[str, Any]:
        return cell.whoami(_key(req))

    @r.get("/indexes")
    def list_indexes(req: Request) -> dict[str, Any]:
        return {"results": cell.list_indexes(_key(req))}

    @r.post("/indexes/{name}")
    def create_index(req: Request) -> Response:
        name = req.params["name"]
        index = cell.create_index(_key(req), name, req.json_object())
        return created({"acknowledged": True, "index": name, "createdAt": index.created_at})

    @r.get("/indexes/{name}")
    def get_index(req: Request) -> dict[str, Any]:
        return cell.describe_index(_key(req), req.params["name"])

    @r.get("/indexes/{name}/settings")
    def get_settings(req: Request) -> Any:
        return cell.describe_index(_key(req), req.params["name"])["settings"]

    @r.get("/aliases")
    def list_aliases(req: Request) -> dict[str, Any]:
        return {"results": cell.list_aliases(_key(req))}

    @r.put("/aliases/{alias}")
    def put_alias(req: Request) -> Response:
        index = shapes.require_str(req.json_object(), "index", max_len=128)
        view, made = cell.put_alias(_key(req), req.params["alias"], index)
        return Response(201 if made else 200, view)

    @r.get("/aliases/{alias}")
    def get_alias(req: Request) -> dict[str, Any]:
        return cell.get_alias(_key(req), req.params["alias"])

    @r.delete("/aliases/{alias}")
    def delete_alias(req: Request) -> dict[str, Any]:
        cell.delete_alias(_key(req), req.params["alias"])
        return {"alias": req.params["alias"], "deleted": True}

    @r.get("/indexes/{name}/export")
    def export(req: Request) -> dict[str, Any]:
        return cell.export_index(_key(req), req.params["name"])

    @r.post("/indexes/{name}/fork")
    def fork(req: Request) -> Response:
        return _fork(cell, cell.account_of(_key(req)), req)

    @r.delete("/indexes/{name}")
    def delete_index(req: Request) -> dict[str, Any]:
        cell.delete_index(_key(req), req.params["name"])
        return {"acknowledged": True, "index": req.params["name"]}

    @r.get("/indexes/{name}/stats")
    def stats(req: Request) -> dict[str, Any]:
        return cell.index_stats(_key(req), req.params["name"])

    @r.post("/indexes/{name}/documents")
    def add_documents(req: Request) -> dict[str, Any]:
        started = time.perf_counter()
        docs = _check_documents(shapes.require_list(req.json_object(), "documents"))
        ids = cell.put_documents(_key(req), req.params["name"], docs)
        return {
            "errors": False,
            "index_name": req.params["name"],
            "items": [{"_id": i, "status": 200} for i in ids],
            "processingTimeMs": _ms(started),
        }

    @r.post("/indexes/{name}/documents/delete-batch")
    def delete_batch(req: Request) -> dict[str, Any]:
        ids = _ids(shapes.require_list(req.json_object(), "documentIds"))
        deleted = cell.delete_documents(_key(req), req.params["name"], ids, must_exist=False)
        return {"index_name": req.params["name"], "deleted": deleted}

    @r.get("/indexes/{name}/documents/{doc_id}")
    def get_document(req: Request) -> dict[str, Any]:
        return cell.get_document(_key(req), req.params["name"], req.params["doc_id"])

    @r.delete("/indexes/{name}/documents/{doc_id}")
    def delete_document(req: Request) -> dict[str, Any]:
        doc_id = req.params["doc_id"]
        cell.delete_documents(_key(req), req.params["name"], [doc_id], must_exist=True)
        return {"_id": doc_id, "deleted": True}

    @r.post("/indexes/{name}/search")
    def search(req: Request) -> dict[str, Any]:
        started = time.perf_counter()
        body = req.json_object()
        query = shapes.optional_str(body, "q")
        limit = shapes.optional_int(body, "limit", 10, low=1, high=MAX_LIMIT)
        offset = shapes.optional_int(body, "offset", 0, low=0, high=MAX_OFFSET)
        clauses = parse_filter(shapes.optional_str(body, "filter"))
        hits = cell.search(_key(req), req.params["name"], query, clauses, limit, offset)
        return {
            "hits": hits,
            "query": query,
            "limit": limit,
            "offset": offset,
            "processingTimeMs": _ms(started),
        }

    return app


def _fork(cell: Cell, account_id: str, req: Request) -> Response:
    """201 for a new fork, 200 when this forkId already made it (a retried step)."""
    body = req.json_object()
    target = shapes.require_str(body, "target", max_len=128)
    fork_id = shapes.optional_str(body, "forkId") or "fork-" + secrets.token_hex(8)
    result, made = cell.fork_index(account_id, req.params["name"], target, fork_id)
    return Response(201 if made else 200, result)


def _health(cell: Cell, lock_timeout: float) -> dict[str, Any]:
    """Also proves the store lock can be taken: a deadlocked store fails /healthz,
    so the watchdog restarts it, even though the HTTP layer still answers."""
    if not cell.lock.acquire(timeout=lock_timeout):
        raise ServiceUnavailable(f"the store lock has been held for more than {lock_timeout}s")
    try:
        return cell.counts()
    finally:
        cell.lock.release()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
