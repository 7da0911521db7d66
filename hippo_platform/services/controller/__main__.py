"""`python -m hippo_platform.services.controller [--port 9002]`.

Environment (the seeds' contract): CONTROL_PLANE_URL_OVERRIDE (the cell, default
http://127.0.0.1:9001), CONTROLLER_CELL (its name, default "local"), DEBUG (exception
messages in 500 bodies), SECRET_KEY (only checked for presence; never logged).
"""

from __future__ import annotations

import argparse
import os
import sys

from hippo_platform.services.common import App, env_flag
from hippo_platform.services.common.aws_lite import AwsConfigError
from hippo_platform.services.common.client import JsonClient
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import EXIT_CANNOT_LISTEN, main
from hippo_platform.services.controller.api import NAME, build_app
from hippo_platform.services.controller.forks import Forks
from hippo_platform.services.controller.transfer import Transfers

DEFAULT_PORT = 9002
DEFAULT_CELL_URL = "http://127.0.0.1:9001"


def make_app(_args: argparse.Namespace) -> App:
    cell_url = os.environ.get("CONTROL_PLANE_URL_OVERRIDE") or DEFAULT_CELL_URL
    cell_name = os.environ.get("CONTROLLER_CELL") or "local"
    debug = env_flag("DEBUG")
    try:
        cell = JsonClient(cell_url, peer="cell", timeout=10.0)
    except ValueError as exc:
        log_error(f"controller: CONTROL_PLANE_URL_OVERRIDE: {exc}")
        raise SystemExit(EXIT_CANNOT_LISTEN) from None
    try:
        forks = Forks(cell)
    except (ValueError, AwsConfigError) as exc:
        log_error(f"controller: fork workflow: {exc}")
        raise SystemExit(EXIT_CANNOT_LISTEN) from None
    secret = "set" if os.environ.get("SECRET_KEY") else "not set"
    log_line(
        f"controller: cell '{cell_name}' at {cell_url}; DEBUG {'on' if debug else 'off'}; "
        f"SECRET_KEY {secret}"
    )
    log_line(f"controller: index forks run {forks.mode}")
    return build_app(cell, cell_name, debug=debug, forks=forks, transfers=Transfers(cell))


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
