"""`python -m hippo_platform.services.admin_server [--port 9004]`.

Environment: ECOM_INDEX_SETTINGS_TABLE and MERCHANDISING_TABLE (default: the suffixes
after HIPPODROME_TABLE_PREFIX), AWS_ENDPOINT_URL (required: the local moto server;
this service never writes to a real AWS account) with AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_DEFAULT_REGION, MARQO_BASE_URL (the
cell, for API keys and index checks), ECOM_INGEST_URL, FAKE_COGNITO_SECRET (through
`secret_from_env`), ADMIN_UPLOADS (`ingest`, the default: uploads go to ecom_ingest;
`sqs`: onto the ECOM_INDEXER_QUEUE queue, default `{prefix}ecom-indexer`, for
ecom_indexer), DEBUG.

DynamoDB is called through common.aws_lite, not boto3, which cost this service 25 MB
and 1.5 s of start-up for five operations. One client is shared by every request
thread; its pool keeps up to 64 idle keep-alive connections, so a burst of concurrent
requests does not keep opening and dropping sockets to moto.
"""

from __future__ import annotations

import argparse
import os
import sys

from hippo_platform.services.admin_server.api import build_app
from hippo_platform.services.admin_server.auth import Authenticator
from hippo_platform.services.admin_server.records import Records
from hippo_platform.services.common import App, env_flag
from hippo_platform.services.common.aws_lite import AwsClient, AwsConfig, AwsConfigError
from hippo_platform.services.common.client import JsonClient
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import main
from hippo_platform.services.common.sqs import Queue, queue_name
from hippo_platform.services.fake_cognito.tokens import secret_from_env

NAME = "admin_server"
DEFAULT_PORT = 9004
EXIT_CONFIG = 78  # sysexits EX_CONFIG
AWS_ATTEMPTS = 3  # a request waits for at most a few retries, not the CLI's eight
POOL_CONNECTIONS = 64


def _config_error(message: str) -> SystemExit:
    log_error(f"{NAME}: {message}")
    return SystemExit(EXIT_CONFIG)


def table_name(variable: str, suffix: str) -> str:
    """The table from its variable, else the stack's prefix plus the usual suffix."""
    name = os.environ.get(variable) or ""
    prefix = os.environ.get("HIPPODROME_TABLE_PREFIX")
    if not name and prefix is not None:
        name = prefix + suffix
    if not name:
        raise _config_error(f"{variable} is not set (nor HIPPODROME_TABLE_PREFIX)")
    return name


def make_app(_args: argparse.Namespace) -> App:
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or ""
    if not endpoint:
        raise _config_error(
            "AWS_ENDPOINT_URL is not set: admin_server writes to the local moto server only"
        )
    settings_table = table_name("ECOM_INDEX_SETTINGS_TABLE", "EcomIndexSettingsTable")
    rules_table = table_name("MERCHANDISING_TABLE", "MerchandisingTable")
    cell_url = os.environ.get("MARQO_BASE_URL") or "http://127.0.0.1:9001"
    ingest_url = os.environ.get("ECOM_INGEST_URL") or "http://127.0.0.1:9019"
    try:
        cell = JsonClient(cell_url, peer="cell", timeout=10.0)
        ingest = JsonClient(ingest_url, peer="ecom_ingest", timeout=30.0)
    except ValueError as exc:
        raise _config_error(f"MARQO_BASE_URL / ECOM_INGEST_URL: {exc}") from None
    try:
        ddb = AwsClient(AwsConfig.from_env(), attempts=AWS_ATTEMPTS, timeout=10.0,
                        max_idle=POOL_CONNECTIONS)
    except AwsConfigError as exc:
        raise _config_error(str(exc)) from None
    records = Records(ddb, settings_table, rules_table)
    for problem in records.check_tables():  # also warms the client: no slow first request
        log_error(f"{NAME}: warning: {problem}")
    log_line(
        f"{NAME}: tables {settings_table}, {rules_table} at {endpoint}; cell {cell_url}; "
        f"ingest {ingest_url}"
    )
    auth = Authenticator(cell, secret_from_env())
    via = (os.environ.get("ADMIN_UPLOADS") or "ingest").strip().lower()
    if via not in ("ingest", "sqs"):
        raise _config_error(f"ADMIN_UPLOADS must be 'ingest' or 'sqs', not {via!r}")
    uploads = Queue(ddb, queue_name(os.environ)) if via == "sqs" else None
    if uploads is not None:
        if not uploads.name:
            raise _config_error("ADMIN_UPLOADS=sqs needs ECOM_INDEXER_QUEUE or "
                                "HIPPODROME_TABLE_PREFIX to name the queue")
        log_line(f"{NAME}: uploads go to SQS queue {uploads.name} (ecom_indexer consumes it)")
    app = build_app(auth, records, ingest, uploads=uploads, debug=env_flag("DEBUG"))
    app.close_hooks.append(ddb.close)
    return app


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
