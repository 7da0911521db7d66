"""`python -m hippo_platform.services.fork_action_worker [--port 9016]`.

Environment: AWS_ENDPOINT_URL (moto) and dummy AWS credentials, HIPPODROME_TABLE_PREFIX
(names the queue and state machine), CONTROL_PLANE_URL_OVERRIDE (the cell)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from hippo_platform.services.common import App
from hippo_platform.services.common.aws_lite import AwsClient, AwsConfigError, AwsError
from hippo_platform.services.common.client import JsonClient
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import EXIT_CANNOT_LISTEN, main
from hippo_platform.services.fork_action_worker.worker import ForkWorker
from hippo_platform.services.fork_action_worker.workflow import ensure_queue

NAME = "fork_action_worker"
DEFAULT_PORT = 9016


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--visibility-timeout", type=int, default=30,
                        help="seconds before a task taken by a worker that died is retried")


def make_app(args: argparse.Namespace) -> App:
    cell_url = os.environ.get("CONTROL_PLANE_URL_OVERRIDE") or "http://127.0.0.1:9001"
    try:
        aws = AwsClient.from_env(timeout=15.0)
        arn, queue_url = ensure_queue(aws)
        cell = JsonClient(cell_url, peer="cell", timeout=30.0)
    except (AwsConfigError, AwsError, OSError, ValueError) as exc:
        log_error(f"{NAME}: cannot set up the fork workflow: {exc}")
        raise SystemExit(EXIT_CANNOT_LISTEN) from None
    worker = ForkWorker(aws, cell, queue_url, visibility_s=max(1, args.visibility_timeout))
    log_line(f"{NAME}: state machine {arn}; queue {queue_url}; cell {cell_url}")

    def health() -> dict[str, Any]:
        return {"stateMachineArn": arn, "queueUrl": queue_url, "forksDone": worker.done,
                "forksFailed": worker.failed, "lastError": worker.last_error}

    app = App(NAME, health=health)
    app.start_hooks.append(lambda _url: worker.start())
    app.close_hooks.append(worker.stop)
    return app


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:], add_arguments))
