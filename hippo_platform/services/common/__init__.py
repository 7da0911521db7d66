"""The small framework every bundled service is built on (stdlib only).

A service is an `App` (name, `Router`, hooks) served by `runner.main`:
handlers take a `Request` and return JSON-able data or a `Response`, and raise
`HttpError` subclasses for every non-success answer, which `App.handle` renders as
`{"error": ...}` in one place. `client.JsonClient` calls peers (502 naming the peer
when it is down), `state` writes files atomically, `watchdog` restarts a hung process.
"""

from hippo_platform.services.common.app import App
from hippo_platform.services.common.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    Forbidden,
    HttpError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from hippo_platform.services.common.messages import Request, Response, created, html
from hippo_platform.services.common.router import Router
from hippo_platform.services.common.runner import env_flag, main

__all__ = [
    "App",
    "BadGateway",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "HttpError",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "Request",
    "Response",
    "Router",
    "ServiceUnavailable",
    "Unauthorized",
    "created",
    "env_flag",
    "html",
    "main",
]
