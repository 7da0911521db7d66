"""`python -m hippo_platform.services.fake_cognito [--port 9013]`.

Environment: FAKE_COGNITO_SECRET (HMAC secret; a fixed local default otherwise, never
logged), FAKE_COGNITO_TTL (token lifetime in seconds, default 3600), DEBUG.
"""

from __future__ import annotations

import argparse
import os
import sys

from hippo_platform.services.common import App, env_flag
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import EXIT_CANNOT_LISTEN, main
from hippo_platform.services.fake_cognito.api import NAME, build_app
from hippo_platform.services.fake_cognito.tokens import SECRET_ENV, secret_from_env

DEFAULT_PORT = 9013


def make_app(_args: argparse.Namespace) -> App:
    raw_ttl = os.environ.get("FAKE_COGNITO_TTL", "3600")
    try:
        ttl = int(raw_ttl)
        if ttl <= 0:
            raise ValueError
    except ValueError:
        log_error(f"fake_cognito: FAKE_COGNITO_TTL must be a positive integer, not {raw_ttl!r}")
        raise SystemExit(EXIT_CANNOT_LISTEN) from None
    source = SECRET_ENV if os.environ.get(SECRET_ENV) else "the local default"
    log_line(f"fake_cognito: signing HS256 tokens with the secret from {source}; ttl {ttl}s")
    return build_app(secret_from_env(), ttl, debug=env_flag("DEBUG"))


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
