"""The exporter's routes: `POST /events` mirrors one table change into S3; `GET /exports`.

An INSERT or MODIFY writes the item's new image (plain JSON, with its keys and the
event it came from) to a key derived from the item's keys; a REMOVE deletes that key.
So after any sequence of events the bucket holds exactly the items that exist, which
is what a test wants to assert on.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from hippo_platform.services.common import App, BadRequest, Request
from hippo_platform.services.exporter.events import object_key, parse_event
from hippo_platform.services.exporter.store import RECENT_KEPT, ExportStore, now_iso

MAX_EVENT_BYTES = 1024 * 1024  # EventBridge's own limit is 256 KiB


class Kind(NamedTuple):
    name: str  # settings | merchandising
    service: str  # the stack's name for this instance
    detail_type_prefix: str
    folder: str  # top folder of its objects in the bucket


KINDS = {
    "settings": Kind("settings", "ecom_settings_exporter", "EcomIndexSettings.", "settings"),
    "merchandising": Kind(
        "merchandising", "merchandising_exporter", "Merchandising.", "merchandising"
    ),
}


def build_app(kind: Kind, store: ExportStore, *, debug: bool = False) -> App:
    app = App(
        kind.service,
        debug=debug,
        max_body=MAX_EVENT_BYTES,
        health=lambda: {
            "kind": kind.name,
            "bucket": store.bucket,
            "endpoint": store.endpoint_url,
            "exports": store.count,
        },
    )
    r = app.router

    @r.post("/events")
    def receive(req: Request) -> dict[str, Any]:
        try:
            body = req.json()
        except RecursionError:  # json.loads on thousands of '[': bad input, not a 500
            raise BadRequest("malformed JSON body: nested too deeply") from None
        event = parse_event(body, kind.detail_type_prefix)
        key = object_key(kind.folder, event.keys)
        at = now_iso()
        result: dict[str, Any] = {"bucket": store.bucket, "key": key}
        if event.event_name == "REMOVE":
            store.delete(key)
            result["action"] = "deleted"
        else:
            document = {
                "kind": kind.name,
                "eventName": event.event_name,
                "detailType": event.detail_type,
                "tableName": event.table_name,
                "eventId": event.event_id,
                "keys": event.keys,
                "item": event.new_item,
                "previous": event.old_item,
                "exportedAt": at,
            }
            result["action"] = "written"
            result["bytes"] = store.put(key, document)
        store.remember(
            {
                "key": key,
                "eventName": event.event_name,
                "detailType": event.detail_type,
                "action": result["action"],
                "at": at,
            }
        )
        return {"status": "success", "result": {**result, "eventName": event.event_name}}

    @r.get("/exports")
    def exports(req: Request) -> dict[str, Any]:
        return {"exports": store.recent(_limit(req)), "bucket": store.bucket}

    return app


def _limit(req: Request) -> int:
    raw = req.query.get("limit", str(RECENT_KEPT))
    if not raw.isdigit() or not 1 <= int(raw) <= RECENT_KEPT:
        raise BadRequest(f"query 'limit' must be an integer from 1 to {RECENT_KEPT}")
    return int(raw)
