"""`python -m hippo_platform.services.ecom_indexer [--port 9015]`.

Environment: ECOM_INDEXER_QUEUE (default `{HIPPODROME_TABLE_PREFIX}ecom-indexer`, made
by aws_provision), AWS_ENDPOINT_URL (required: moto) with the dummy AWS credentials,
MARQO_BASE_URL (the cell, default http://127.0.0.1:9001), DEBUG.

`/healthz` fails (503) when the consume loop has stopped; `/stats` counts batches
delivered, documents, failures and retries, with the last error.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from hippo_platform.services.common import App, Request, ServiceUnavailable, env_flag
from hippo_platform.services.common.aws_lite import AwsClient, AwsConfigError
from hippo_platform.services.common.client import JsonClient
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import main
from hippo_platform.services.common.sqs import Queue, queue_name
from hippo_platform.services.ecom_indexer.consumer import Consumer

NAME = "ecom_indexer"
DEFAULT_PORT = 9015
EXIT_CONFIG = 78  # sysexits EX_CONFIG


def _config_error(message: str) -> SystemExit:
    log_error(f"{NAME}: {message}")
    return SystemExit(EXIT_CONFIG)


def build_app(consumer: Consumer, *, debug: bool = False) -> App:
    def health() -> dict[str, Any]:
        if not consumer.alive():
            raise ServiceUnavailable("the consume loop has stopped")
        return {"queue": consumer.queue.name, "cellUrl": consumer.cell.base_url}

    app = App(NAME, debug=debug, health=health)
    app.start_hooks.append(lambda _url: consumer.start())
    app.close_hooks.append(consumer.stop)

    @app.router.get("/stats")
    def stats(_req: Request) -> dict[str, Any]:
        return {**consumer.stats.view(), "queue": consumer.queue.name,
                "cellUrl": consumer.cell.base_url}

    return app


def make_app(_args: argparse.Namespace) -> App:
    name = queue_name(os.environ)
    if not name:
        raise _config_error("ECOM_INDEXER_QUEUE is not set (nor HIPPODROME_TABLE_PREFIX)")
    cell_url = os.environ.get("MARQO_BASE_URL") or "http://127.0.0.1:9001"
    try:
        aws = AwsClient.from_env(attempts=3, timeout=10.0)
        cell = JsonClient(cell_url, peer="cell", timeout=30.0)
    except (AwsConfigError, ValueError) as exc:
        raise _config_error(str(exc)) from None
    log_line(f"{NAME}: consuming SQS queue {name} at {aws.endpoint} into the cell at {cell_url}")
    consumer = Consumer(Queue(aws, name), cell)
    app = build_app(consumer, debug=env_flag("DEBUG"))
    app.close_hooks.insert(0, aws.close)  # hooks run newest first: the loop stops, then this
    return app


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
