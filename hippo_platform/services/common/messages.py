"""What a handler receives and may return.

A handler gets a `Request` and returns either a JSON-able value (a 200) or a
`Response` when it needs another status, headers, or a non-JSON body. Body parsing
lives here so every service turns bad JSON into the same 400 instead of a 500 from a
stray `json.loads`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hippo_platform.services.common.errors import BadRequest

JSON_TYPE = "application/json"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]  # keys lower-cased by the server
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The decoded body, None when empty; malformed JSON is a 400."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"malformed JSON body: {exc}") from None
        except RecursionError:
            raise BadRequest("malformed JSON body: nested too deeply") from None

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; an empty body is `{}`, any other shape a 400."""
        data = self.json()
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise BadRequest(f"body must be a JSON object, got {type(data).__name__}")
        return data


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = JSON_TYPE

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json_bytes(self.body)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def created(body: Any) -> Response:
    return Response(201, body)


def html(text: str) -> Response:
    return Response(200, raw=text.encode("utf-8"), content_type="text/html; charset=utf-8")
