"""`python -m hippo_platform.services.ecom_ingest [--port 9019]`.

Environment: HIPPODROME_ECOM_INGEST_STORE (`memory`, the default, or `postgres`),
HIPPODROME_ECOM_INGEST_DATABASE_URL (the postgres store's libpq URL, e.g.
`postgres://postgres:postgres@127.0.0.1:5432/ecom_ingest?sslmode=disable`; the database
is created when the server lacks it, the table on first use), DEBUG.

A bad configuration or an unreachable database ends start-up with one line naming the
variable or the server, and a non-zero exit, so the orchestrator shows why at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from hippo_platform.services.common import App, env_flag
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import main
from hippo_platform.services.ecom_ingest.api import NAME, build_app
from hippo_platform.services.ecom_ingest.store import BatchStore, MemoryStore

DEFAULT_PORT = 9019
STORE_ENV = "HIPPODROME_ECOM_INGEST_STORE"
URL_ENV = "HIPPODROME_ECOM_INGEST_DATABASE_URL"
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: the database cannot be reached
EXIT_CONFIG = 78  # sysexits EX_CONFIG: a missing or invalid setting


def _fail(message: str, code: int) -> SystemExit:
    log_error(f"{NAME}: {message}")
    return SystemExit(code)


def open_store() -> BatchStore:
    kind = (os.environ.get(STORE_ENV) or "memory").strip().lower()
    if kind == "memory":
        log_line(f"{NAME}: memory store (lost on restart; {STORE_ENV}=postgres keeps batches)")
        return MemoryStore()
    if kind != "postgres":
        raise _fail(f"{STORE_ENV} must be 'memory' or 'postgres', not {kind!r}", EXIT_CONFIG)
    url = (os.environ.get(URL_ENV) or "").strip()
    if not url:
        raise _fail(
            f"{STORE_ENV}=postgres needs {URL_ENV}, e.g. "
            "postgres://postgres:postgres@127.0.0.1:5432/ecom_ingest?sslmode=disable",
            EXIT_CONFIG,
        )
    try:
        from hippo_platform.services.ecom_ingest.postgres import (
            DatabaseUnreachable,
            PostgresStore,
            redact_url,
        )
    except ImportError as exc:
        raise _fail(
            f"{STORE_ENV}=postgres needs psycopg 3: pip install 'psycopg[binary]' ({exc})",
            EXIT_CONFIG,
        ) from None
    try:
        store = PostgresStore.open(url)
    except DatabaseUnreachable as exc:
        raise _fail(f"{exc} (set by {URL_ENV})", EXIT_UNAVAILABLE) from None
    log_line(f"{NAME}: postgres store at {redact_url(url)}")
    return store


def make_app(_args: argparse.Namespace) -> App:
    return build_app(open_store(), debug=env_flag("DEBUG"))


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
