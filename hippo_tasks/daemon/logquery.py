"""Reading a service's buffered log lines with a filter: the API's `logs` and MCP's.

What an agent asks is "the errors since I restarted it" or "lines matching X", over a
buffer of up to a million lines, in a daemon whose every other request must keep being
answered. So a query is bounded three ways: by a line limit (with where to continue),
by a time budget (a scan that runs out says where it stopped), and by what a regex may
be (model/regex_safety.py: no pattern whose matching can stall the daemon). Plain text
filters have none of these limits.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from hippo_tasks.errors import UsageError
from hippo_tasks.model.regex_safety import SafeRegex
from hippo_tasks.numbers import plain_float
from hippo_tasks.supervision.logs import LogHub, LogRecord

SCAN_BUDGET_S = 1.0
"""A filtered scan stops after this long and says where it stopped."""
ALL = 1 << 62
ERRORS = re.compile(rb"\b(?:errors?|err|exception|traceback|fatal|critical|crit|panic|"
                    rb"fail(?:ed|ure)?)\b")
"""What counts as an error line for `errors_only` (services' lines and Hippodrome's notes),
matched on the line in lower case (a fifth faster than a case-insensitive pattern)."""
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)\s*\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class LogQuery(NamedTuple):
    """Which lines: a window (`after` / `before` a sequence number, `since` a time), a
    filter (text, regex, errors only) and how many (`limit`)."""

    limit: int = 100
    after: int | None = None
    before: int | None = None
    since: float | None = None
    text: str = ""
    regex: SafeRegex | None = None
    errors_only: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.text or self.regex or self.errors_only or self.since is not None
                    or self.before is not None)


# ---- turning arguments into a query ---------------------------------------------------

def parse_since(raw: str | float, now: float | None = None, name: str = "since") -> float:
    """A point in time: Unix seconds, an ISO 8601 date-time (local time unless it has an
    offset), or a duration ago (`90s`, `5m`, `2h`, `1d`). `name`: what the caller's
    interface calls it, for the error (the MCP tool's `since_time`)."""
    now = time.time() if now is None else now
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    text = str(raw).strip()
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        seconds = plain_float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):  # nan compares false with every line's time
            return seconds
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is not None:
        try:
            return when.timestamp()
        except (OverflowError, OSError, ValueError):
            # Local time at the calendar's very edge (0001-01-01T00:00:00) overflows the
            # conversion: a valid time, refused as "not ISO 8601" (adv34 w/5). The
            # edge it is at, as UTC: before every log line, or after every one.
            return when.replace(tzinfo=UTC).timestamp()
    raise UsageError(f"'{name}' must be Unix seconds, an ISO 8601 time "
                     f"(2026-05-01T12:00:00) or a duration ago (90s, 5m, 2h), got "
                     f"{text[:60]!r}")


# ---- running a query ----------------------------------------------------------------

def _predicate(q: LogQuery) -> tuple[Callable[[bytes], bool], Callable[[bytes], bool] | None]:
    """(a test of one line's bytes, a test of a whole chunk's lines joined by newlines
    that is False only when no line of it can pass). The time window is tested apart.

    The chunk test lets a scan skip a read's twenty-odd lines with one C-level search:
    plain text and the error words cannot match across a newline, so a joined chunk
    without them has no line with them. A regex gets no chunk test: its span limits
    are per line."""
    tests: list[Callable[[bytes], bool]] = []
    blobs: list[Callable[[bytes], bool]] = []
    if q.errors_only:
        errors = ERRORS.search
        tests.append(lambda line: errors(line.lower()) is not None)
        blobs.append(tests[-1])
    if q.text:
        if q.text.isascii():
            needle = q.text.lower().encode()
            tests.append(lambda line: needle in line.lower())
            blobs.append(tests[-1])
        else:
            folded = q.text.casefold()
            tests.append(lambda line: folded in line.decode("utf-8", "replace").casefold())
    if q.regex is not None:
        tests.append(q.regex.search)
    blob = None if not blobs else blobs[0] if len(blobs) == 1 else \
        (lambda text: all(b(text) for b in blobs))
    if not tests:
        return (lambda line: True), None
    if len(tests) == 1:
        return tests[0], blob
    return (lambda line: all(t(line) for t in tests)), blob


def select(hub: LogHub, service: str, q: LogQuery,
           clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """The query's lines, oldest first, and how to get the next ones.

    Forward (with `after`): the first `limit` matches after that sequence number. Else
    backward from the newest (or from `before`): the last `limit` matches. `more` says
    matching lines were left out; `next` holds the arguments that fetch them. A scan that
    spends `SCAN_BUDGET_S` stops, with `incomplete` and the same `next`.
    """
    forward = q.after is not None
    if q.limit == 0:  # the sequence numbers alone: a `next` here fetched nothing again,
        return _answer(hub, service, [], None, forward, False, 0)  # and again (a loop)
    if not q.filtered:  # the page's polling and plain tails: no scan at all
        if forward:
            assert q.after is not None
            picked = hub.since(service, q.after, q.limit + 1)
            edge = picked.pop().seq if len(picked) > q.limit else None
        else:
            picked = hub.tail(service, q.limit + 1)
            edge = picked.pop(0).seq if len(picked) > q.limit else None
        return _answer(hub, service, picked, edge, forward, False, len(picked))
    # Straight from the chunks: a record is built for a match only (building one per
    # buffered line was half of a 100,000-line scan). Seqs run on, one a line.
    lo = q.after + 1 if q.after is not None else 0
    hi = q.before - 1 if q.before is not None else ALL
    chunks = hub.chunks(service)
    if not forward:
        chunks.reverse()
    match, whole = _predicate(q)
    since = q.since
    picked = []
    edge = None
    incomplete = False
    deadline = clock() + SCAN_BUDGET_S
    every = 0 if q.regex is not None else 511  # a regex line may cost 0.1 s: look each time
    scanned = 0
    new = tuple.__new__
    for chunk in chunks:
        first, lines = chunk.first_seq, chunk.lines
        start, stop = max(lo - first, 0), min(hi - first + 1, len(lines))
        if start >= stop:
            if (first > hi) if forward else (first + len(lines) <= lo):
                break
            continue
        if since is not None and chunk.ts < since:
            if forward:
                continue
            break  # everything further back is older still
        if whole is not None:
            if clock() > deadline:
                edge, incomplete = (first + start) if forward else (first + stop - 1), True
                break
            if not whole(b"\n".join(lines)):
                scanned += stop - start
                continue
        for i in range(start, stop) if forward else range(stop - 1, start - 1, -1):
            if scanned & every == every and clock() > deadline:
                edge, incomplete = first + i, True
                break
            scanned += 1
            if match(lines[i]):
                if len(picked) >= q.limit:
                    edge = first + i
                    break
                picked.append(new(LogRecord, (chunk.service, first + i, chunk.ts, lines[i],
                                              chunk.system)))
        if edge is not None:
            break
    if not forward:
        picked.reverse()
    return _answer(hub, service, picked, edge, forward, incomplete, scanned)


def _answer(hub: LogHub, service: str, picked: list[LogRecord], edge: int | None,
            forward: bool, incomplete: bool, scanned: int) -> dict[str, Any]:
    """`edge` is the first line not given (a match past the limit, or where the scan
    stopped): the next page starts there."""
    last = hub.last_seq(service)
    oldest = hub.since(service, 0, 1)
    nxt: dict[str, int] | None = None
    if edge is not None:
        nxt = {"after": edge - 1} if forward else {"before": edge + 1}
    return {
        "service": service, "last_seq": last,
        "first_seq": oldest[0].seq if oldest else last + 1,
        "lines": [r.as_json() for r in picked],
        "more": edge is not None, "incomplete": incomplete,
        "scanned": scanned, "next": nxt,
    }
