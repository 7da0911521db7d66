"""Comparing a replayed answer with the recorded one: which fields count, and the diff.

Compared: the HTTP status, and the whole JSON answer of the webhook (`webhook_status`,
`target`, `service_status`, `service_response` with everything the service answered,
or `status`/`reason` for an unrouted event, `error` for a refusal), recursively.
Ignored, at any depth: keys that change on every run by nature — times (`at`, `ts`,
`time`, `timestamp`, `date`, and any key ending in `_at` or `At`, such as `exportedAt`),
durations (`latency_ms`, `duration_ms`, `elapsed_ms`, `processingTimeMs`) and request
ids (`requestId`, `request_id`, `traceId`, `trace_id`) — plus the key names given with
`--ignore`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

VOLATILE = frozenset({
    "at", "ts", "time", "timestamp", "date", "latency_ms", "duration_ms", "elapsed_ms",
    "processingTimeMs", "requestId", "request_id", "traceId", "trace_id",
})
SHOWN = 160
"""Characters of a value shown in a difference."""


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()


def volatile(key: str, extra: frozenset[str] = frozenset()) -> bool:
    if key in VOLATILE or key in extra or key.endswith("_at"):
        return True
    return len(key) > 2 and key.endswith("At") and key[-3].islower()


@dataclass(frozen=True)
class FieldDiff:
    """One place where the answers differ: a dotted path (`service_response.result.key`,
    `items[2]`; `status` for the HTTP status) and both values."""

    path: str
    recorded: Any
    replayed: Any

    def as_json(self) -> dict[str, Any]:
        """A side where the field was absent is left out: written as null, the report
        said "recorded null, now null" for `{"a": null}` against `{}`."""
        out: dict[str, Any] = {"path": self.path}
        for side in ("recorded", "replayed"):
            if getattr(self, side) is not ABSENT:
                out[side] = getattr(self, side)
        return out

    def text(self) -> str:
        return f"{self.path}: recorded {shown(self.recorded)}, now {shown(self.replayed)}"


def shown(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


def differences(recorded_status: int, recorded: Any, status: int, answer: Any,
                ignore: Iterable[str] = ()) -> list[FieldDiff]:
    """Every difference that counts, in document order; empty when the answers agree."""
    extra = frozenset(ignore)
    out = [] if recorded_status == status else [FieldDiff("status", recorded_status, status)]
    out.extend(_walk("", recorded, answer, extra))
    return out


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def _walk(path: str, a: Any, b: Any, extra: frozenset[str]) -> Iterator[FieldDiff]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if volatile(key, extra):
                continue
            yield from _walk(_join(path, key), a.get(key, ABSENT), b.get(key, ABSENT), extra)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _walk(f"{path}[{i}]", x, y, extra)
    elif not _same(a, b):
        yield FieldDiff(path or "(answer)", a, b)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 and 1.0 agree, True and 1 do not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b) and (a is ABSENT) == (b is ABSENT)
