"""When each service was asked to start, spawned and became ready, and what that says.

The question people and agents ask most after `up` is "why did that take so long?".
The answer is rarely the slowest service; it is the chain of dependencies that ended
last (the critical path). Each service records four instants of its latest start; the
functions below read them back from `/api/status` rows, so the CLI can compute the
path from the JSON it already has, without importing the supervisor (stdlib only).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple


class StartTimings:
    """Wall-clock instants (epoch seconds) of a service's latest start.

    Wall clock, not monotonic: the page and the CLI draw them against each other and
    against log timestamps, which are wall clock too.
    """

    __slots__ = ("requested_at", "deps_met_at", "spawned_at", "ready_at", "first", "_json")

    def __init__(self, requested_at: float | None = None, deps_met_at: float | None = None,
                 spawned_at: float | None = None, ready_at: float | None = None) -> None:
        self.requested_at = requested_at
        self.deps_met_at = deps_met_at
        self.spawned_at = spawned_at
        self.ready_at = ready_at
        self.first: dict[str, float | None] | None = None
        """The first start that became ready (or that ran and failed), once another has
        begun: the stack's start-up, which the page's waterfall and the critical path
        describe. Drawn from the latest starts, one restart 12 s after `up` made the
        page say the stack was `ready in 13.11s` and dropped its dependants from the path
        (adv26 h/5)."""
        self._json: dict[str, float | None] | None = None

    def begin(self) -> None:
        """A new start was asked for: the earlier instants no longer describe it. One
        that ran and never became ready (failed at `up`, started by hand later) is the
        start-up's too: read from the later start, the page said the stack was `ready
        in` the time until then (adv27 j/2)."""
        if self.first is None and self.spawned_at is not None:
            self.first = self.as_json()
        self.requested_at = time.time()
        self.deps_met_at = self.spawned_at = self.ready_at = None

    def again(self, now: float) -> None:
        """A restart after an exit, by itself (no request): its start is now, not the
        first one's (`hd why`: "took 201s" for a restart that took 0.5 s, s/8)."""
        self._keep_first()
        self.requested_at = self.deps_met_at = now

    def _keep_first(self) -> None:
        if self.first is None and self.ready_at is not None:
            self.first = self.as_json()

    def startup(self) -> dict[str, float | None]:
        """The instants of the start-up: the first start that became ready, or the
        current one until one has."""
        return dict(self.first) if self.first is not None else self.as_json()

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "_json":
            object.__setattr__(self, "_json", None)

    def as_json(self) -> dict[str, float | None]:
        """Kept until an instant changes: every status read of every service asks."""
        cached = self._json
        if cached is None:
            cached = {k: (round(v, 3) if v is not None else None)
                      for k, v in (("requested_at", self.requested_at),
                                   ("deps_met_at", self.deps_met_at),
                                   ("spawned_at", self.spawned_at),
                                   ("ready_at", self.ready_at))}
            object.__setattr__(self, "_json", cached)
        return dict(cached)


class Segment(NamedTuple):
    service: str
    seconds: float
    """From its dependencies being met (or its start being asked) to ready."""


def _instant(row: Mapping[str, Any], key: str) -> float | None:
    """From the row's start-up instants (`/api/status`), else its latest start's."""
    value = (row.get("startup") or row.get("timings") or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def own_seconds(row: Mapping[str, Any]) -> float | None:
    """How long the service itself took: setup, spawn and readiness, not the wait."""
    ready = _instant(row, "ready_at")
    began = _instant(row, "deps_met_at") or _instant(row, "requested_at")
    if ready is None or began is None:
        return None
    return max(0.0, ready - began)


def critical_path(rows: Iterable[Mapping[str, Any]]) -> list[Segment]:
    """The chain that ended last: from the service ready last, back through the
    dependency that became ready last before it could start. Empty when nothing has
    a complete start recorded."""
    by_name = {str(r["name"]): r for r in rows}
    done = {n: r for n, r in by_name.items() if _instant(r, "ready_at") is not None}
    if not done:
        return []
    name: str | None = max(done, key=lambda n: _instant(done[n], "ready_at") or 0.0)
    path: list[Segment] = []
    seen: set[str] = set()
    while name is not None and name not in seen:
        seen.add(name)
        row = done[name]
        path.append(Segment(name, own_seconds(row) or 0.0))
        met = _instant(row, "deps_met_at")
        deps = [d for d in row.get("depends_on") or () if d in done]
        if met is not None:
            deps = [d for d in deps if (_instant(done[d], "ready_at") or 0.0) <= met + 0.001]
        name = max(deps, key=lambda d: _instant(done[d], "ready_at") or 0.0) if deps else None
    path.reverse()
    return path


def path_json(rows: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
    """The critical path as `/api/status` and the page's stream carry it:
    `[[service, seconds], ...]`."""
    return [[seg.service, round(seg.seconds, 3)] for seg in critical_path(rows)]


def slowest(rows: Iterable[Mapping[str, Any]], count: int = 3) -> list[Segment]:
    timed = [Segment(str(r["name"]), s) for r in rows if (s := own_seconds(r)) is not None]
    return sorted(timed, key=lambda s: -s.seconds)[:count]


def describe(rows: Iterable[Mapping[str, Any]]) -> str:
    """One line for the terminal after `up`: the critical path and the slowest
    services off it ("" when no start was recorded)."""
    rows = list(rows)
    path = critical_path(rows)
    if not path:
        return ""
    text = "critical path " + " → ".join(f"{s.service} {s.seconds:.2f}s" for s in path)
    on_path = {s.service for s in path}
    others = [s for s in slowest(rows) if s.service not in on_path and s.seconds >= 0.05]
    if others:
        text += "; slowest elsewhere " + ", ".join(f"{s.service} {s.seconds:.2f}s"
                                                  for s in others)
    return text
