"""`python -m hippo_platform.services.ecom_indexer_service [--port 9018]`.

Environment: ECOM_INGEST_URL (default http://127.0.0.1:9019), MARQO_BASE_URL (the
cell, default http://127.0.0.1:9001), ECOM_INDEXER_POLL_INTERVAL (seconds between
polls when idle, default 0.1; at most 1), DEBUG.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from hippo_platform.services.common import App, Request, ServiceUnavailable, env_flag
from hippo_platform.services.common.client import JsonClient
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import main
from hippo_platform.services.ecom_indexer_service.drainer import Drainer

NAME = "ecom_indexer_service"
DEFAULT_PORT = 9018
POLL_ENV = "ECOM_INDEXER_POLL_INTERVAL"
EXIT_CONFIG = 78  # sysexits EX_CONFIG


def _config_error(message: str) -> SystemExit:
    log_error(f"{NAME}: {message}")
    return SystemExit(EXIT_CONFIG)


def build_app(drainer: Drainer, *, debug: bool = False) -> App:
    def health() -> dict[str, Any]:
        if not drainer.alive():
            raise ServiceUnavailable("the drain loop has stopped")
        return {"ingestUrl": drainer.ingest.base_url, "cellUrl": drainer.cell.base_url}

    app = App(NAME, debug=debug, health=health)
    app.start_hooks.append(lambda _url: drainer.start())
    app.close_hooks.append(drainer.stop)

    @app.router.get("/stats")
    def stats(_req: Request) -> dict[str, Any]:
        return {
            **drainer.stats.view(),
            "pollInterval": drainer.poll_interval,
            "ingestUrl": drainer.ingest.base_url,
            "cellUrl": drainer.cell.base_url,
        }

    return app


def make_app(_args: argparse.Namespace) -> App:
    ingest_url = os.environ.get("ECOM_INGEST_URL") or "http://127.0.0.1:9019"
    cell_url = os.environ.get("MARQO_BASE_URL") or "http://127.0.0.1:9001"
    raw_poll = os.environ.get(POLL_ENV) or "0.1"
    try:
        poll = float(raw_poll)
    except ValueError:
        raise _config_error(f"{POLL_ENV} must be a number of seconds, not {raw_poll!r}") from None
    if not 0 < poll <= 1:
        raise _config_error(f"{POLL_ENV} must be above 0 and at most 1 second, not {poll:g}")
    try:
        ingest = JsonClient(ingest_url, peer="ecom_ingest", timeout=10.0)
        cell = JsonClient(cell_url, peer="cell", timeout=30.0)
    except ValueError as exc:
        raise _config_error(f"ECOM_INGEST_URL / MARQO_BASE_URL: {exc}") from None
    log_line(f"{NAME}: draining {ingest_url} into the cell at {cell_url} every {poll:g}s")
    return build_app(Drainer(ingest, cell, poll_interval=poll), debug=env_flag("DEBUG"))


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
