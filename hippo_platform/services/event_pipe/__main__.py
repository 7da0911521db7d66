"""`python -m hippo_platform.services.event_pipe [--port 9014]`, on the local cell only.

Environment (the stack's env contract): ECOM_INDEX_SETTINGS_TABLE, MERCHANDISING_TABLE,
ECOM_EVENT_BUS, MERCHANDISING_EVENT_BUS (else derived from HIPPODROME_TABLE_PREFIX),
AWS_ENDPOINT_URL (required: the pipe reads the local moto server, never a real
account), HIPPODROME_WEBHOOK_URL (empty: the bus only), HIPPODROME_WEBHOOK_TOKEN (sent
as x-hippodrome-webhook-token), HIPPODROME_STATE_DIR (checkpoints under event_pipe/).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from hippo_platform.services.common import App, env_flag
from hippo_platform.services.common.aws_lite import AwsClient, AwsConfig, AwsConfigError
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import main
from hippo_platform.services.common.state import FolderLockedError, lock_folder
from hippo_platform.services.event_pipe.api import NAME, build_app
from hippo_platform.services.event_pipe.delivery import Bus, Webhook
from hippo_platform.services.event_pipe.follower import Follower, Timing
from hippo_platform.services.event_pipe.records import Source
from hippo_platform.services.event_pipe.stats import Checkpoints, PipeStats, TableStats

DEFAULT_PORT = 9014
EXIT_CONFIG = 3  # not 2: that one means "could not listen" to whoever started us
AWS_ATTEMPTS = 2  # the follower has its own backoff; the client's would only hide failures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll-interval", type=float, default=0.1,
                        help="seconds between polls while changes are flowing")
    parser.add_argument("--idle-poll-interval", type=float, default=0.5,
                        help="seconds between polls once idle (each poll costs moto memory)")
    parser.add_argument("--idle-after", type=float, default=30.0,
                        help="seconds without a change before polling slows down")
    parser.add_argument("--fresh-stream-seconds", type=float, default=60.0,
                        help="a stream younger than this at start-up is read from its start "
                             "(it was just provisioned); older ones from LATEST")
    parser.add_argument("--state-dir", default=None,
                        help="where checkpoints live (default $HIPPODROME_STATE_DIR/event_pipe)")
    parser.add_argument("--no-bus", action="store_true", help="do not put events on the buses")


def sources(env: dict[str, str]) -> list[Source]:
    prefix = env.get("HIPPODROME_TABLE_PREFIX", "")

    def name(var: str, suffix: str) -> str:
        value = env.get(var) or (prefix + suffix if prefix else "")
        if not value:
            _config_error(f"{var} is not set, nor HIPPODROME_TABLE_PREFIX to derive it from")
        return value

    return [
        Source(name("ECOM_INDEX_SETTINGS_TABLE", "EcomIndexSettingsTable"), "EcomIndexSettings",
               name("ECOM_EVENT_BUS", "EcomEventBus")),
        Source(name("MERCHANDISING_TABLE", "MerchandisingTable"), "Merchandising",
               name("MERCHANDISING_EVENT_BUS", "MerchandisingEventBus")),
    ]


def make_app(args: argparse.Namespace) -> App:
    env = dict(os.environ)
    endpoint = env.get("AWS_ENDPOINT_URL", "")
    if not endpoint:
        _config_error("AWS_ENDPOINT_URL is not set; event_pipe only reads the local moto "
                      "server's streams (it runs with --cell local)")
    state_dir = args.state_dir or (
        str(Path(env["HIPPODROME_STATE_DIR"]) / "event_pipe")
        if env.get("HIPPODROME_STATE_DIR") else None)
    lock: Any = None
    if state_dir:
        try:
            lock = lock_folder(Path(state_dir))
        except FolderLockedError as exc:
            _config_error(f"{exc}: another event_pipe is following these streams")
    checkpoints = Checkpoints(Path(state_dir) / "checkpoints.json" if state_dir else None)
    try:
        # One client, its connections shared by both followers and the bus.
        aws = AwsClient(AwsConfig.from_env(env), attempts=AWS_ATTEMPTS)
    except AwsConfigError as exc:
        _config_error(str(exc))

    webhook_url = env.get("HIPPODROME_WEBHOOK_URL", "")
    webhook = Webhook(webhook_url, env.get("HIPPODROME_WEBHOOK_TOKEN", "")) if webhook_url else None
    bus = None if args.no_bus else Bus(aws)
    timing = Timing(args.poll_interval, args.idle_poll_interval, args.idle_after,
                    args.fresh_stream_seconds)
    stats = PipeStats()
    followers = []
    for source in sources(env):
        stats.add(TableStats(source.table, source.detail_type_prefix, source.bus))
        followers.append(Follower(source, aws, (bus, webhook), stats, checkpoints,
                                  timing=timing))
    settings = {
        "endpoint": endpoint,
        "webhookUrl": webhook_url or None,
        "webhookToken": bool(env.get("HIPPODROME_WEBHOOK_TOKEN")),
        "bus": bus is not None,
        "pollInterval": timing.fast,
        "idlePollInterval": timing.idle,
        "idleAfter": timing.idle_after,
        "freshStreamSeconds": timing.fresh_stream,
        "checkpoints": str(checkpoints.path) if checkpoints.path else None,
    }
    app = build_app(stats, settings, debug=env_flag("DEBUG"))

    def start(_base_url: str) -> None:
        for follower in followers:
            follower.thread.start()

    def close() -> None:
        for follower in followers:
            follower.stop.set()
        for follower in followers:
            if follower.thread.is_alive():
                follower.thread.join(timeout=3.0)
        aws.close()
        if lock is not None:
            lock.close()

    app.start_hooks.append(start)
    app.close_hooks.append(close)
    log_line(f"{NAME}: moto {endpoint}; webhook {webhook_url or '(none: bus only)'}; "
             f"polling every {timing.fast:g}s, {timing.idle:g}s when idle; checkpoints "
             f"{settings['checkpoints'] or '(none)'}")
    return app


def _config_error(text: str) -> NoReturn:
    log_error(f"{NAME}: {text}")
    raise SystemExit(EXIT_CONFIG)


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:], add_arguments))
