"""`python -m hippo_platform.services.search_proxy [--port 9005]`.

Environment: GLOBAL_WORKER_URL (default http://127.0.0.1:9012), DEBUG.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from hippo_platform.services.common import (
    App,
    BadGateway,
    BadRequest,
    Request,
    Response,
    Unauthorized,
    env_flag,
)
from hippo_platform.services.common.client import JsonClient, peer_from_env, segment
from hippo_platform.services.common.log import log_line
from hippo_platform.services.common.runner import main
from hippo_platform.services.search_proxy.analytics import Analytics

NAME = "search_proxy"
DEFAULT_PORT = 9005


def build_app(
    worker: JsonClient, *, debug: bool = False, analytics: Analytics | None = None
) -> App:
    tracker = analytics if analytics is not None else Analytics(None)
    app = App(NAME, debug=debug, health=lambda: {"globalWorkerUrl": worker.base_url})

    @app.router.post("/indexes/{name}/search")
    def search(req: Request) -> Response:
        key = req.header("x-api-key")
        if not key:
            raise Unauthorized("missing x-api-key header")
        body = req.json_object()
        path = f"/indexes/{segment(req.params['name'])}/search"
        try:
            answer = worker.request("POST", path, body=body, headers={"x-api-key": key})
        except BadGateway as exc:
            reason = exc.message.partition(f"{worker.base_url}: ")[2] or exc.message
            raise BadGateway(
                f"Failed to fetch from global_worker ({worker.base_url}): {reason}",
                extra={"peer": "global_worker", "url": worker.base_url},
            ) from None
        if answer.ok and isinstance(answer.body, dict):
            hits = answer.body.get("hits")
            count = len(hits) if isinstance(hits, list) else 0
            query = str(body.get("q") or "")
            answer.body["queryId"] = tracker.record_search(key, req.params["name"], query, count)
        return Response(answer.status, answer.body)

    @app.router.post("/analytics/events")
    def events(req: Request) -> dict[str, Any]:
        key = req.header("x-api-key")
        if not key:
            raise Unauthorized("missing x-api-key header")
        raw = req.json_object().get("events")
        if not isinstance(raw, list):
            raise BadRequest("field 'events' is required and must be a list")
        return {"recorded": tracker.record_actions(key, raw)}

    @app.router.get("/analytics/indexes/{name}")
    def summary(req: Request) -> dict[str, Any]:
        key = req.header("x-api-key")
        if not key:
            raise Unauthorized("missing x-api-key header")
        return tracker.summary(key, req.params["name"])

    return app


def make_app(_args: argparse.Namespace) -> App:
    worker = peer_from_env(NAME, "GLOBAL_WORKER_URL", "http://127.0.0.1:9012", "global_worker")
    state = os.environ.get("HIPPODROME_STATE_DIR")
    path = Path(state) / NAME / "analytics.jsonl" if state else None
    analytics = Analytics(path)
    log_line(f"{NAME}: forwarding searches to global_worker at {worker.base_url}; analytics in "
             f"{path or 'memory'}" + (f" ({analytics.skipped} bad lines skipped)"
                                      if analytics.skipped else ""))
    return build_app(worker, debug=env_flag("DEBUG"), analytics=analytics)


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
