"""`python -m hippo_platform.services.global_worker [--port 9012]`.

Environment: MARQO_BASE_URL (the cell, default http://127.0.0.1:9001),
MERCHANDISING_TABLE (default: HIPPODROME_TABLE_PREFIX + MerchandisingTable),
AWS_ENDPOINT_URL (required: rules are read from the local moto server, never from a
real account), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
AWS_REGION / AWS_DEFAULT_REGION, GLOBAL_WORKER_RULES_TTL (seconds rules are cached,
default 1), DEBUG.

The rules scan goes through common.aws_lite, not boto3: one signed POST a second at
most does not justify boto3's 25 MB and 1.5 s of import.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from hippo_platform.services.common import App, Request, Unauthorized, env_flag, shapes
from hippo_platform.services.common.aws_lite import AwsClient, AwsConfig, AwsConfigError
from hippo_platform.services.common.client import JsonClient, segment
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import main
from hippo_platform.services.global_worker.merchandising import RulesCache, apply_rules

NAME = "global_worker"
DEFAULT_PORT = 9012
EXIT_CONFIG = 78  # sysexits EX_CONFIG


def _config_error(message: str) -> SystemExit:
    log_error(f"{NAME}: {message}")
    return SystemExit(EXIT_CONFIG)


def build_app(cell: JsonClient, rules: RulesCache, *, debug: bool = False) -> App:
    app = App(NAME, debug=debug, health=lambda: {"cellUrl": cell.base_url, "table": rules.table})
    app.close_hooks.append(rules.dynamo.close)

    @app.router.post("/indexes/{name}/search")
    def search(req: Request) -> dict[str, Any]:
        key = req.header("x-api-key")
        if not key:
            raise Unauthorized("missing x-api-key header")
        name = req.params["name"]
        body = req.json_object()
        q = shapes.optional_str(body, "q")
        headers = {"x-api-key": key}
        result: dict[str, Any] = cell.call(
            "POST", f"/indexes/{segment(name)}/search", body=body, headers=headers
        )
        if body.get("offset") not in (None, 0):
            return result  # rules shape the first page only
        index_rules, error = rules.rules(name)

        def fetch(doc_id: str) -> dict[str, Any] | None:
            path = f"/indexes/{segment(name)}/documents/{segment(doc_id)}"
            answer = cell.request("GET", path, headers=headers)
            return None if answer.status == 404 else dict(cell.check(answer))

        limit = int(result.get("limit") or body.get("limit") or 10)
        hits, applied = apply_rules(list(result.get("hits") or []), index_rules, q, limit, fetch)
        merchandising: dict[str, Any] = dict(applied)
        if error is not None:
            merchandising["error"] = f"rules unavailable, none applied from the table: {error}"
        return {**result, "hits": hits, "merchandising": merchandising}

    return app


def make_app(_args: argparse.Namespace) -> App:
    cell_url = os.environ.get("MARQO_BASE_URL") or "http://127.0.0.1:9001"
    table = os.environ.get("MERCHANDISING_TABLE") or ""
    prefix = os.environ.get("HIPPODROME_TABLE_PREFIX")
    if not table and prefix is not None:
        table = prefix + "MerchandisingTable"
    if not table:
        raise _config_error("MERCHANDISING_TABLE is not set (nor HIPPODROME_TABLE_PREFIX)")
    raw_ttl = os.environ.get("GLOBAL_WORKER_RULES_TTL") or "1"
    try:
        ttl = float(raw_ttl)
        if ttl < 0:
            raise ValueError
    except ValueError:
        raise _config_error(
            f"GLOBAL_WORKER_RULES_TTL must be seconds >= 0, not {raw_ttl!r}"
        ) from None
    try:
        # Two attempts: a search waits for the scan, and failures fall back to cached rules.
        dynamo = AwsClient(AwsConfig.from_env(), attempts=2, timeout=5.0)
        cell = JsonClient(cell_url, peer="cell", timeout=10.0)
    except (AwsConfigError, ValueError) as exc:
        raise _config_error(str(exc)) from None
    log_line(f"{NAME}: cell {cell_url}; rules from {table} at {dynamo.endpoint}, "
             f"cached {ttl:g}s")
    return build_app(cell, RulesCache(dynamo, table, ttl=ttl), debug=env_flag("DEBUG"))


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
