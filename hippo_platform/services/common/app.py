"""A service as data: its name, routes, limits and lifecycle hooks, plus dispatch.

`App.handle` is the one place where a handler's outcome becomes a response: return
values become 200s, `HttpError`s their JSON error bodies, anything else a JSON 500
naming the exception type (and the traceback goes to stderr), so the server thread
survives and keeps serving. Keeping this free of sockets lets the same dispatch be
driven by the HTTP server or called directly.
"""

from __future__ import annotations

import errno
import traceback
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hippo_platform.services.common.errors import (
    DISK_TROUBLE,
    HttpError,
    ServiceUnavailable,
    disk_sentence,
)
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.messages import Request, Response
from hippo_platform.services.common.router import Router

DEFAULT_MAX_BODY = 16 * 1024 * 1024

StartHook = Callable[[str], None]  # receives the base URL the server listens on
CloseHook = Callable[[], None]


PROBE_PATHS = frozenset({"/healthz"})
"""Paths the orchestrator's readiness and liveness probes ask (the stack file's
`readiness = { http = "/healthz" }`)."""


def is_probe(method: str, target: str) -> bool:
    return method in ("GET", "HEAD") and urlsplit(target or "/").path in PROBE_PATHS


class App:
    def __init__(
        self,
        name: str,
        router: Router | None = None,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        debug: bool = False,
        health: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        """`health` may add fields to /healthz, or raise an HttpError to fail it."""
        self.name = name
        self.router = router if router is not None else Router()
        self.router.add("GET", "/healthz", self._healthz)  # after the service's own, if any
        self.max_body = max_body
        self.debug = debug
        self.health = health
        self.start_hooks: list[StartHook] = []
        self.close_hooks: list[CloseHook] = []
        self._closed = False

    def _healthz(self, _req: Request) -> dict[str, Any]:
        extra = dict(self.health()) if self.health is not None else {}
        return {"status": "ok", "service": self.name, **extra}

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        parts = urlsplit(target)
        request = Request(
            method=method.upper(),
            path=parts.path or "/",
            query=dict(parse_qsl(parts.query)),
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
        )
        try:
            handler, request.params = self.router.resolve(request.method, request.path)
            result = handler(request)
        except HttpError as exc:
            return self.error_response(exc)
        except OSError as exc:
            if exc.errno not in DISK_TROUBLE:
                return self._unhandled(request, exc)
            log_error(f"{self.name}: {request.method} {request.path}: {disk_sentence(exc)}")
            status = 503 if exc.errno == errno.ENOTDIR else 507
            return self.error_response(HttpError(disk_sentence(exc), status=status,
                                                 extra={"type": "OSError"}))
        except Exception as exc:  # the catch-all that keeps one bug from killing the server
            return self._unhandled(request, exc)
        return result if isinstance(result, Response) else Response(200, result)

    def _unhandled(self, request: Request, exc: Exception) -> Response:
        """A bug: its traceback in the log, `internal error` in the answer."""
        log_error(f"{self.name}: unhandled error on {request.method} {request.path}:")
        log_error(traceback.format_exc().rstrip())
        return self.error_response(self.internal_error(exc))

    def internal_error(self, exc: BaseException) -> HttpError:
        kind = type(exc).__name__
        text = f"{kind}: {exc}" if self.debug else f"internal error ({kind})"
        return HttpError(text, status=500, extra={"type": kind})

    @staticmethod
    def error_response(exc: HttpError) -> Response:
        return Response(exc.status, exc.body(), headers=dict(exc.headers))

    def log_request(self, method: str, target: str, status: int, ms: float) -> None:
        """One line per request, except a health probe that succeeded: the orchestrator
        asks every few seconds, and those lines would bury everything else. A failing
        probe (4xx/5xx) is still logged."""
        if is_probe(method, target) and status < 400:
            return
        log_line(f"{method or '-'} {target or '-'} {status} {ms:.1f}ms")

    def started(self, base_url: str) -> None:
        for hook in self.start_hooks:
            hook(base_url)

    def close(self) -> None:
        """Run close hooks once, newest first; one failing hook does not skip the rest."""
        if self._closed:
            return
        self._closed = True
        for hook in reversed(self.close_hooks):
            try:
                hook()
            except Exception:
                log_error(f"{self.name}: error while closing:\n{traceback.format_exc()}")

    def require_open(self) -> None:
        if self._closed:
            raise ServiceUnavailable(f"{self.name} is shutting down")
