"""The controller's `/api/v2` routes, each a translation to one or a few cell calls.

The cell's 400/401/404/409 answers are passed through as they are (an unknown account
stays a 404, a bad key a 401); the cell being down or failing is a 502 naming its URL.
"""

from __future__ import annotations

from typing import Any

from hippo_platform.services.common import App, Request, Response, Unauthorized, created, shapes
from hippo_platform.services.common.client import JsonClient, segment
from hippo_platform.services.controller.forks import Forks
from hippo_platform.services.controller.transfer import Transfers

NAME = "controller"


def _key_headers(req: Request) -> dict[str, str]:
    key = req.header("x-api-key")
    if not key:
        raise Unauthorized("missing x-api-key header")
    return {"x-api-key": key}


def build_app(
    cell: JsonClient,
    cell_name: str,
    *,
    debug: bool = False,
    forks: Forks | None = None,
    transfers: Transfers | None = None,
) -> App:
    forks = forks if forks is not None else Forks(cell, {})
    transfers = transfers if transfers is not None else Transfers(cell, {})
    health = {"cell": cell_name, "cellUrl": cell.base_url, "forkWorkflow": forks.mode}
    app = App(NAME, debug=debug, health=lambda: health)
    r = app.router

    def index_view(summary: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
        return {
            "indexName": summary["indexName"],
            "createdAt": summary.get("createdAt"),
            "numberOfDocuments": stats.get("numberOfDocuments", 0),
            "status": "READY",
            "cell": cell_name,
        }

    @r.post("/api/v2/accounts")
    def create_account(req: Request) -> Response:
        name = shapes.require_str(req.json_object(), "name", max_len=200)
        account = cell.call("POST", "/accounts", body={"name": name})
        return created({**account, "cell": cell_name})

    @r.get("/api/v2/accounts")
    def list_accounts(_req: Request) -> dict[str, Any]:
        results = cell.call("GET", "/accounts")["results"]
        return {"results": [{**a, "cell": cell_name} for a in results]}

    @r.get("/api/v2/accounts/{account_id}")
    def get_account(req: Request) -> dict[str, Any]:
        account = cell.call("GET", "/accounts/" + segment(req.params["account_id"]))
        return {**account, "cell": cell_name}

    @r.get("/api/v2/accounts/{account_id}/indexes")
    def account_indexes(req: Request) -> dict[str, Any]:
        path = f"/accounts/{segment(req.params['account_id'])}/indexes"
        results = cell.call("GET", path)["results"]
        return {"results": [index_view(ix, ix) for ix in results]}

    @r.post("/api/v2/indexes")
    def create_index(req: Request) -> Response:
        headers = _key_headers(req)
        body = req.json_object()
        name = shapes.require_str(body, "indexName", max_len=128)
        settings = shapes.optional_object(body, "settings")
        made = cell.call("POST", "/indexes/" + segment(name), body=settings, headers=headers)
        return created(
            {
                "indexName": name,
                "settings": settings,
                "createdAt": made.get("createdAt"),
                "status": "READY",
                "cell": cell_name,
            }
        )

    @r.get("/api/v2/indexes")
    def list_indexes(req: Request) -> dict[str, Any]:
        headers = _key_headers(req)
        results = []
        for summary in cell.call("GET", "/indexes", headers=headers)["results"]:
            path = f"/indexes/{segment(summary['indexName'])}/stats"
            stats = cell.request("GET", path, headers=headers)
            if stats.status == 404:
                continue  # deleted since the listing
            results.append(index_view(summary, cell.check(stats)))
        return {"results": results}

    @r.get("/api/v2/indexes/{name}")
    def get_index(req: Request) -> dict[str, Any]:
        headers = _key_headers(req)
        path = "/indexes/" + segment(req.params["name"])
        summary = cell.call("GET", path, headers=headers)
        stats = cell.call("GET", path + "/stats", headers=headers)
        return {**index_view(summary, stats), "settings": summary.get("settings", {})}

    @r.post("/api/v2/indexes/{name}/export")
    def export_index(req: Request) -> Response:
        return created(transfers.export(_key_headers(req), req.params["name"]))

    @r.post("/api/v2/indexes/{name}/import")
    def import_index(req: Request) -> dict[str, Any]:
        return transfers.import_(_key_headers(req), req.params["name"], req.json_object())

    @r.get("/api/v2/aliases")
    def list_aliases(req: Request) -> Any:
        return cell.call("GET", "/aliases", headers=_key_headers(req))

    @r.put("/api/v2/aliases/{alias}")
    def put_alias(req: Request) -> Response:
        index = shapes.require_str(req.json_object(), "index", max_len=128)
        path = "/aliases/" + segment(req.params["alias"])
        answer = cell.request("PUT", path, body={"index": index}, headers=_key_headers(req))
        return Response(answer.status, cell.check(answer))

    @r.get("/api/v2/aliases/{alias}")
    def get_alias(req: Request) -> Any:
        path = "/aliases/" + segment(req.params["alias"])
        return cell.call("GET", path, headers=_key_headers(req))

    @r.delete("/api/v2/aliases/{alias}")
    def delete_alias(req: Request) -> Any:
        path = "/aliases/" + segment(req.params["alias"])
        return cell.call("DELETE", path, headers=_key_headers(req))

    @r.post("/api/v2/indexes/{name}/fork")
    def fork_index(req: Request) -> Response:
        target = shapes.require_str(req.json_object(), "target", max_len=128)
        view = forks.start(_key_headers(req), req.params["name"], target)
        return Response(201 if view["status"] == "SUCCEEDED" else 202, view)

    @r.get("/api/v2/forks/{fork_id}")
    def get_fork(req: Request) -> dict[str, Any]:
        return forks.get(_key_headers(req), req.params["fork_id"])

    @r.delete("/api/v2/indexes/{name}")
    def delete_index(req: Request) -> dict[str, Any]:
        headers = _key_headers(req)
        cell.call("DELETE", "/indexes/" + segment(req.params["name"]), headers=headers)
        return {"indexName": req.params["name"], "deleted": True}

    return app
