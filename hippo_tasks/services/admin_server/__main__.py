"""`python -m hippo_tasks.services.admin_server [--port 9004]`.

Environment: ECOM_INDEX_SETTINGS_TABLE and MERCHANDISING_TABLE (default: the suffixes
after HIPPODROME_TABLE_PREFIX), AWS_ENDPOINT_URL (required: the local moto server;
this service never writes to a real AWS account) with AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_DEFAULT_REGION, MARQO_BASE_URL (the
cell, for API keys and index checks), ECOM_INGEST_URL, FAKE_COGNITO_SECRET (through
`secret_from_env`), DEBUG.

boto3 is imported here, once, at start-up, and its DynamoDB client is shared by every
request thread (botocore clients are thread-safe). The pool holds enough connections
for 64 concurrent requests, so a burst does not keep opening and dropping sockets.
"""

from __future__ import annotations

import argparse
import os
import sys

from hippo_tasks.events import aws
from hippo_tasks.services.common import App, env_flag
from hippo_tasks.services.common.client import JsonClient
from hippo_tasks.services.common.log import log_error, log_line
from hippo_tasks.services.common.runner import main
from hippo_tasks.services.fake_cognito.tokens import secret_from_env

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


def dynamodb_client(endpoint: str) -> object:
    from botocore.config import Config

    session = aws.new_session()
    config = Config(
        retries={"mode": "standard", "total_max_attempts": AWS_ATTEMPTS},
        connect_timeout=aws.CONNECT_TIMEOUT_S,
        read_timeout=10.0,
        max_pool_connections=POOL_CONNECTIONS,
    )
    region = session.region_name or aws.DEFAULT_REGION
    return session.client("dynamodb", endpoint_url=endpoint, region_name=region, config=config)


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
        ddb = dynamodb_client(endpoint)
    except aws.AwsError as exc:
        raise _config_error(exc.message()) from None
    # After boto3 is loaded: records imports its DynamoDB type converters.
    from hippo_tasks.services.admin_server.api import build_app
    from hippo_tasks.services.admin_server.auth import Authenticator
    from hippo_tasks.services.admin_server.records import Records

    records = Records(ddb, settings_table, rules_table)
    for problem in records.check_tables():  # also warms the client: no slow first request
        log_error(f"{NAME}: warning: {problem}")
    log_line(
        f"{NAME}: tables {settings_table}, {rules_table} at {endpoint}; cell {cell_url}; "
        f"ingest {ingest_url}"
    )
    auth = Authenticator(cell, secret_from_env())
    return build_app(auth, records, ingest, debug=env_flag("DEBUG"))


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
