"""`python -m hippo_platform.services.console [--port 9008]`.

Environment: CONTROLLER_URL (default http://127.0.0.1:9002), DEBUG.
"""

from __future__ import annotations

import argparse
import os
import sys

from hippo_platform.services.common import App, env_flag
from hippo_platform.services.common.client import JsonClient
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import EXIT_CANNOT_LISTEN, main
from hippo_platform.services.console.api import NAME, build_app, load_page

DEFAULT_PORT = 9008
DEFAULT_CONTROLLER_URL = "http://127.0.0.1:9002"


def make_app(_args: argparse.Namespace) -> App:
    url = os.environ.get("CONTROLLER_URL") or DEFAULT_CONTROLLER_URL
    try:
        controller = JsonClient(url, peer="controller", timeout=10.0)
    except ValueError as exc:
        log_error(f"console: CONTROLLER_URL: {exc}")
        raise SystemExit(EXIT_CANNOT_LISTEN) from None
    log_line(f"console: controller at {url}")
    return build_app(controller, load_page(), debug=env_flag("DEBUG"))


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
