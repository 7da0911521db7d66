"""Method + path-pattern routing, with the 404/405 distinction decided here.

Patterns are literal segments and `{name}` segments (one non-empty path segment,
percent-decoded). Routes are tried in registration order, so a literal route added
before a pattern wins. A path that matches some route but not the method is a 405
carrying the allowed methods, so clients learn they used the wrong verb rather than a
wrong URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import unquote

from hippo_platform.services.common.errors import MethodNotAllowed, NotFound
from hippo_platform.services.common.messages import Request

Handler = Callable[[Request], object]


class Route(NamedTuple):
    method: str
    pattern: str
    segments: tuple[str, ...]
    handler: Handler

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for want, got in zip(self.segments, parts, strict=True):
            if want.startswith("{") and want.endswith("}"):
                if not got:
                    return None
                params[want[1:-1]] = unquote(got)
            elif want != got:
                return None
        return params


def split_path(path: str) -> list[str]:
    """`/a/b/` and `/a/b` are the same route; the root is the empty list."""
    stripped = path.strip("/")
    return stripped.split("/") if stripped else []


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        segments = tuple(split_path(pattern))
        for seg in segments:
            if ("{" in seg or "}" in seg) and not (seg.startswith("{") and seg.endswith("}")):
                raise ValueError(f"bad route segment {seg!r} in {pattern!r}")
        self._routes.append(Route(method.upper(), pattern, segments, handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator form of `add`."""

        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler

        return register

    def get(self, pattern: str) -> Callable[[Handler], Handler]:
        return self.route("GET", pattern)

    def post(self, pattern: str) -> Callable[[Handler], Handler]:
        return self.route("POST", pattern)

    def put(self, pattern: str) -> Callable[[Handler], Handler]:
        return self.route("PUT", pattern)

    def delete(self, pattern: str) -> Callable[[Handler], Handler]:
        return self.route("DELETE", pattern)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and path parameters, or NotFound / MethodNotAllowed."""
        parts = split_path(path)
        allowed: list[str] = []
        for route in self._routes:
            params = route.match(parts)
            if params is None:
                continue
            if route.method == method.upper():
                return route.handler, params
            if route.method not in allowed:
                allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(method.upper(), path, allowed)
        raise NotFound(f"no route for {method.upper()} {path}")
