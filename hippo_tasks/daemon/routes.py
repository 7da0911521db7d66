"""Every route of the daemon, in one table: adding a route is adding a row here.

Built explicitly (no registration by import side effect), so a route that is missing
or misspelt is an import error at start-up, not a silently absent page.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from hippo_tasks.daemon import api, mcp_route, page, recordings
from hippo_tasks.daemon.httpcore import Handler
from hippo_tasks.daemon.webhook import routing as webhook

NAME = r"(?P<name>[A-Za-z][A-Za-z0-9_-]{0,62})"


class Route(NamedTuple):
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    allowed: bool = True
    """False: the row only answers 405 in words of its own, so another method's 405
    must not list it in `Allow`."""
    head: bool = False
    """A GET row that HEAD may also ask: the same head, no body. HTTP asks it of every
    GET (RFC 9110 9.1), and `curl -fI`, `wget --spider` and many health checks send it;
    they were 405 on a healthy daemon (adv26 h/4). Not for streams."""


def _row(method: str, template: str, handler: Handler, allowed: bool = True) -> Route:
    return Route(method, re.compile("^" + template.replace("{name}", NAME) + "$"), handler,
                 allowed, head=method == "GET" and allowed)


def build() -> tuple[Route, ...]:
    return (
        _row("GET", "/", page.index),
        _row("GET", "/api/events", page.events)._replace(head=False),  # a stream
        _row("GET", "/healthz", api.healthz),
        _row("GET", "/api/status", api.status),
        _row("GET", "/api/services/{name}/logs", api.logs),
        _row("GET", "/api/services/{name}/why", api.why),
        _row("POST", "/api/services/{name}/start", api.start),
        _row("POST", "/api/services/{name}/stop", api.stop),
        _row("POST", "/api/services/{name}/restart", api.restart),
        _row("POST", "/api/stack/start", api.start),
        _row("POST", "/api/stack/stop", api.stop),
        _row("POST", "/api/stack/restart", api.restart),
        _row("POST", "/api/shutdown", api.shutdown),
        _row("POST", "/webhook/eventbridge", webhook.eventbridge),
        _row("GET", "/api/webhook/deliveries", webhook.deliveries),
        _row("GET", "/api/events/recordings", recordings.listing),
        _row("POST", "/api/events/recordings/(?P<rec>[^/]{1,200})/replay",
             recordings.replay_one),
        _row("POST", "/mcp", mcp_route.mcp),
        _row("GET", "/mcp", mcp_route.mcp, allowed=False),
        # No DELETE: a stateless server has no session to end, and the SDK's 405 for it
        # carried no Allow while GET's offered DELETE (adv28 m/6). The router's 405 says
        # `Allow: POST`.
    )
