"""The one error type a service handler raises to answer with a 4xx/5xx JSON body.

Handlers never build error responses themselves: they raise, and the server renders
every `HttpError` the same way (`{"error": message, ...extra}`) in one place. That is
what keeps a missing record a 404 everywhere instead of a 500 somewhere, the failure
the reference controller had. The subclasses exist so call sites read as intent and
so a caller can catch, say, `NotFound` from a peer without comparing numbers.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import Any

DISK_TROUBLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR})
"""A disk that refuses writes, or a file where a state folder belongs: said as such
(507, 503), not as a bug (500 and a traceback: s/7)."""


def disk_sentence(exc: OSError) -> str:
    """What a full or read-only disk did to a request, and what to do: it was `internal
    error (OSError)`, and the reason only in a log the full disk kept from being written
    (q/3). Writes here are journaled first or made whole, so the request had no effect."""
    where = f"cannot write {exc.filename}" if exc.filename else "cannot write its state"
    fix = {errno.EROFS: "make it writable",
           errno.ENOTDIR: "a file stands where a folder of its path belongs: move that file "
                          "away"}.get(exc.errno or 0, "free space on that disk")
    return f"{where}: {exc.strerror or exc}: {fix}, then send the request again"


class HttpError(Exception):
    """An answer other than success: status, message, optional extra JSON fields/headers."""

    status = 500

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


class BadRequest(HttpError):
    """Malformed JSON, a wrong shape, a missing or invalid field."""

    status = 400


class Unauthorized(HttpError):
    """Missing or bad credentials."""

    status = 401


class Forbidden(HttpError):
    status = 403


class NotFound(HttpError):
    """An unknown route or an unknown record: never a 500."""

    status = 404


class MethodNotAllowed(HttpError):
    status = 405

    def __init__(self, method: str, path: str, allowed: list[str]) -> None:
        super().__init__(
            f"method {method} not allowed on {path}",
            headers={"Allow": ", ".join(allowed)},
            extra={"allowed": allowed},
        )


class Conflict(HttpError):
    """The record already exists."""

    status = 409


class PayloadTooLarge(HttpError):
    status = 413


class BadGateway(HttpError):
    """A peer service could not be reached or answered nonsense; names the peer."""

    status = 502


class NotJsonAnswer(BadGateway):
    """A peer that answered, but not in JSON (an HTML error page from a proxy or a
    framework's default): said apart from one that could not be reached at all."""


class ServiceUnavailable(HttpError):
    status = 503
