"""`python -m hippo_platform.services.search_proxy [--port 9005]`.

Environment: GLOBAL_WORKER_URL (default http://127.0.0.1:9012), DEBUG.
"""

from __future__ import annotations

import argparse
import os
import sys

from hippo_platform.services.common import (
    App,
    BadGateway,
    Request,
    Response,
    Unauthorized,
    env_flag,
)
from hippo_platform.services.common.client import JsonClient, segment
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import main

NAME = "search_proxy"
DEFAULT_PORT = 9005
EXIT_CONFIG = 78  # sysexits EX_CONFIG


def build_app(worker: JsonClient, *, debug: bool = False) -> App:
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
        return Response(answer.status, answer.body)

    return app


def make_app(_args: argparse.Namespace) -> App:
    url = os.environ.get("GLOBAL_WORKER_URL") or "http://127.0.0.1:9012"
    try:
        worker = JsonClient(url, peer="global_worker", timeout=30.0)
    except ValueError as exc:
        log_error(f"{NAME}: GLOBAL_WORKER_URL: {exc}")
        raise SystemExit(EXIT_CONFIG) from None
    log_line(f"{NAME}: forwarding searches to global_worker at {url}")
    return build_app(worker, debug=env_flag("DEBUG"))


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
