"""`python -m hippo_platform.services.admin_lambda [--port 9006]`.

The reference's admin_lambda (FastAPI behind Mangum) read the ecom tables directly, and
its users saw `ResourceNotFoundException` in its first seconds: the port was open, the
tables on moto not made yet. Here that story cannot reach a caller as a bare 500:

- `/healthz` answers 503 (`{"error": "... ResourceNotFoundException ...", "retryAfter": 1}`,
  `Retry-After: 1`) until both tables exist, so the orchestrator only calls it ready
  (and starts its dependants) once they do; after that it answers 200 without asking
  DynamoDB again.
- a request that still meets a missing table (a table deleted under it) is a 503 with
  `Retry-After: 1` and a sentence saying what to wait for, never a 500.

Routes (read-only; writes go through admin_server):
    GET /api/v1/indexes/{index}/settings
    GET /api/v1/indexes/{index}/merchandising/rules

Environment: ECOM_INDEX_SETTINGS_TABLE, MERCHANDISING_TABLE (default: suffixes after
HIPPODROME_TABLE_PREFIX), AWS_ENDPOINT_URL (required: moto) and dummy credentials, DEBUG.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from hippo_platform.services.admin_server.records import Records
from hippo_platform.services.common import (
    App,
    BadRequest,
    NotFound,
    Request,
    ServiceUnavailable,
    env_flag,
)
from hippo_platform.services.common.aws_lite import AwsClient, AwsConfigError
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import main

NAME = "admin_lambda"
DEFAULT_PORT = 9006
EXIT_CONFIG = 78  # sysexits EX_CONFIG
RETRY_AFTER_S = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")  # admin_server's index names


def _index(req: Request) -> str:
    """Checked here rather than imported from admin_server.api, which would pull in its
    auth and upload modules: 2 MB of a 25 MB budget."""
    value = req.params["index"]
    if not _NAME.match(value):
        raise BadRequest(f"bad index name {value!r}: 1-128 letters, digits, '_', '-', '.', "
                         "':', starting with a letter or digit")
    return value


def _retry(message: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"ResourceNotFoundException: {message} (the tables are made by aws_provision "
        f"right after moto starts: retry in {RETRY_AFTER_S} s)",
        extra={"retryAfter": RETRY_AFTER_S}, headers={"Retry-After": str(RETRY_AFTER_S)})


def _reading(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ServiceUnavailable as exc:  # records.py: a missing table
        raise _retry(exc.message) from None


def build_app(records: Records, *, debug: bool = False) -> App:
    ready = threading.Event()

    def health() -> dict[str, Any]:
        if not ready.is_set():
            problems = records.check_tables()
            if problems:
                raise _retry("; ".join(problems))
            ready.set()
            log_line(f"{NAME}: tables {records.settings_table}, {records.rules_table} found")
        return {"tables": [records.settings_table, records.rules_table]}

    app = App(NAME, debug=debug, health=health)
    base = "/api/v1/indexes/{index}"

    @app.router.get(base + "/settings")
    def settings(req: Request) -> dict[str, Any]:
        index = _index(req)
        found = _reading(lambda: records.get_settings(index))
        if found is None:
            raise NotFound(f"no settings stored for index '{index}'")
        return dict(found)

    @app.router.get(base + "/merchandising/rules")
    def rules(req: Request) -> dict[str, Any]:
        index = _index(req)
        return {"rules": _reading(lambda: records.list_rules(index))}

    return app


def _table(variable: str, suffix: str) -> str:
    name = os.environ.get(variable) or ""
    prefix = os.environ.get("HIPPODROME_TABLE_PREFIX")
    if not name and prefix is None:
        log_error(f"{NAME}: {variable} is not set (nor HIPPODROME_TABLE_PREFIX)")
        raise SystemExit(EXIT_CONFIG)
    return name or f"{prefix}{suffix}"


def make_app(_args: argparse.Namespace) -> App:
    settings_table = _table("ECOM_INDEX_SETTINGS_TABLE", "EcomIndexSettingsTable")
    rules_table = _table("MERCHANDISING_TABLE", "MerchandisingTable")
    try:
        ddb = AwsClient.from_env(attempts=3, timeout=10.0)
    except AwsConfigError as exc:
        log_error(f"{NAME}: {exc}")
        raise SystemExit(EXIT_CONFIG) from None
    log_line(f"{NAME}: reading {settings_table}, {rules_table} at {ddb.endpoint}")
    app = build_app(Records(ddb, settings_table, rules_table), debug=env_flag("DEBUG"))
    app.close_hooks.append(ddb.close)
    return app



if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
