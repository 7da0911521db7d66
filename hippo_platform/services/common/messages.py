"""What a handler receives and may return.

A handler gets a `Request` and returns either a JSON-able value (a 200) or a
`Response` when it needs another status, headers, or a non-JSON body. Body parsing
lives here so every service turns bad JSON into the same 400 instead of a 500 from a
stray `json.loads`.

The records of the services are plain classes and NamedTuples, not dataclasses: the
dataclasses module imports inspect, and with it ast, dis and tokenize, 1.3 MB of every
service's memory (13 services on the ecom stack) for a convenience each class here can
do without. tests/test_services_common.py fails if a service loads it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hippo_contract.json_text import lone_surrogate, nested_past, surrogate_sentence
from hippo_platform.services.common.errors import BadRequest

JSON_TYPE = "application/json"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity): send a number "
                     "or null")


_STRICT = json.JSONDecoder(parse_constant=_no_constant)
"""Taken, a NaN was written back out as `NaN` in every answer holding it, which
JSON.parse and every strict parser refuse whole (adv28 k/6)."""


MAX_DEPTH = 512
"""Deepest nesting any reader here takes, as the daemon's: far below what the writers
(json.dumps, the journal) can write back."""


class NotJson(ValueError):
    """Why a text is not JSON a service takes; `str()` is the reason alone."""


def text_lines(text: str) -> list[str]:
    """The lines of a file as JSON Lines and CSV mean them: split at `\n` (a `\r` before
    it dropped) only. str.splitlines also breaks at U+2028, U+0085 and the other Unicode
    line ends, which a JSON string holds raw (`json.dumps(ensure_ascii=False)` writes
    them so): a good document was refused as "not JSON" in two pieces (adv31 s/3)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def strict_json(text: str) -> Any:
    """JSON as every bundled service reads it, from a body, a file's line or a token:
    no NaN or Infinity, no half of a UTF-16 pair, no number Python will not convert,
    nesting at most MAX_DEPTH levels. NotJson otherwise. The readers of files
    and tokens had caught only JSONDecodeError: a 5,000-digit integer (ValueError) was a
    500, and a NaN in an import file reached the cell (adv29 o/1, o/2)."""
    if nested_past(text, MAX_DEPTH):  # read at 979 levels, then a 500 writing it (o/8)
        raise NotJson(f"nested too deeply (more than {MAX_DEPTH} levels)")
    try:
        value = _STRICT.decode(text)
    except RecursionError:
        raise NotJson("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise NotJson(str(exc)) from None
    except ValueError as exc:  # _no_constant, or int() of over 4300 digits
        why = str(exc)
        if "integer string conversion" in why:
            why = "a number of over 4300 digits (send it as a string)"
        raise NotJson(why) from None
    if "\\u" in text and (half := lone_surrogate(value)) is not None:
        raise NotJson(surrogate_sentence(half, "it"))
    return value


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "params")

    def __init__(self, method: str, path: str, query: dict[str, str],
                 headers: Mapping[str, str], body: bytes,
                 params: dict[str, str] | None = None) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers  # keys lower-cased by the server
        self.body = body
        self.params: dict[str, str] = {} if params is None else params

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path}, {len(self.body)} bytes)"

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The decoded body, None when empty; malformed JSON is a 400."""
        if not self.body.strip():
            return None
        try:
            # as json.loads reads bytes (a BOM, UTF-16), but strictly: no encoded half of
            # a UTF-16 pair (json.loads decodes with surrogatepass); a lone surrogate,
            # taken, failed where it was written out: an upload holding one stalled the
            # whole ingest queue, a cell index a 500 (adv28 k/3)
            return strict_json(self.body.decode(json.detect_encoding(self.body)))
        except ValueError as exc:  # NotJson, or UnicodeDecodeError
            raise BadRequest(f"malformed JSON body: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; an empty body is `{}`, any other shape a 400."""
        data = self.json()
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise BadRequest(f"body must be a JSON object, got {type(data).__name__}")
        return data


class Response:
    __slots__ = ("status", "body", "headers", "raw", "content_type")

    def __init__(self, status: int = 200, body: Any = None,
                 headers: dict[str, str] | None = None, raw: bytes | None = None,
                 content_type: str = JSON_TYPE) -> None:
        self.status = status
        self.body = body
        self.headers: dict[str, str] = {} if headers is None else headers
        self.raw = raw
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.content_type})"

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
