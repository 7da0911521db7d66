"""`python -m hippo_platform.services.admin_worker [--port 9009]`.

The reference ran admin_worker as a Cloudflare Worker in front of the admin API; this
stand-in is that edge: it forwards admin_server's `/api/v1` routes with the caller's
`Authorization` and `x-api-key` headers and answers with admin_server's status and
body, so a client written against the worker runs locally unchanged. When admin_server
is down the answer is a 502 naming it (`ADMIN_SERVER_URL`), not a hang.

Environment: ADMIN_SERVER_URL (default http://127.0.0.1:9004), INSPECTOR_PORT (what a
real `wrangler dev --inspector-port` would use; reported by /healthz), DEBUG.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from hippo_platform.services.common import App, BadGateway, Request, Response, env_flag
from hippo_platform.services.common.client import JsonClient, peer_from_env, segment
from hippo_platform.services.common.log import log_line
from hippo_platform.services.common.runner import main

NAME = "admin_worker"
DEFAULT_PORT = 9009
FORWARDED_HEADERS = ("authorization", "x-api-key")
BASE = "/api/v1/indexes/{index}"
ROUTES = (
    ("GET", BASE + "/settings"),
    ("PUT", BASE + "/settings"),
    ("GET", BASE + "/merchandising/rules"),
    ("GET", BASE + "/merchandising/rules/{rule_id}"),
    ("PUT", BASE + "/merchandising/rules/{rule_id}"),
    ("DELETE", BASE + "/merchandising/rules/{rule_id}"),
    ("POST", BASE + "/documents"),
)
"""admin_server's routes, as DESIGN section 5 lists them."""


def build_app(admin: JsonClient, *, debug: bool = False) -> App:
    app = App(NAME, debug=debug, health=lambda: {
        "adminServerUrl": admin.base_url, "inspectorPort": os.environ.get("INSPECTOR_PORT")})

    def forward(req: Request) -> Response:
        path = "/".join(segment(p) for p in req.path.split("/"))
        headers = {k: v for k in FORWARDED_HEADERS if (v := req.header(k))}
        try:
            answer = admin.request(req.method, path, body=req.json(), headers=headers)
        except BadGateway as exc:
            raise BadGateway(f"{exc.message} (ADMIN_SERVER_URL): is admin_server running?",
                             extra=exc.extra) from None
        body: Any = answer.body
        return Response(answer.status, body)

    for method, pattern in ROUTES:
        app.router.add(method, pattern, forward)
    return app


def make_app(_args: argparse.Namespace) -> App:
    admin = peer_from_env(NAME, "ADMIN_SERVER_URL", "http://127.0.0.1:9004", "admin_server")
    log_line(f"{NAME}: forwarding /api/v1 to admin_server at {admin.base_url}")
    return build_app(admin, debug=env_flag("DEBUG"))


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:]))
