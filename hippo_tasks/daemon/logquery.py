"""Reading a service's buffered log lines with a filter: the API's `logs` and MCP's.

What an agent asks is "the errors since I restarted it" or "lines matching X", over a
buffer of up to a million lines, in a daemon whose every other request must keep being
answered. So a query is bounded three ways: by a line limit (with where to continue),
by a time budget (a scan that runs out says where it stopped), and by what a regex may
be. Python's `re` backtracks and holds the GIL while it does: one `(a+)+$` over a long
line would freeze the whole daemon, and no timeout can interrupt it. Patterns are
therefore held to a subset whose worst case is polynomial in the line's length: no
repetition nested inside a repetition, no alternation inside a repetition, no
backreferences or lookarounds, at most two open-ended repeats; and the more repeats,
the shorter the start of each line a pattern looks at (`SPAN`: whole lines with none,
4,096 characters with one, 512 with two), so one line costs at most about 0.1 s. A
leading or trailing `.*` adds nothing to a search and is dropped before matching
(`.*error.*` costs what `error` costs). Plain text filters have none of these limits.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from hippo_tasks.errors import UsageError
from hippo_tasks.supervision.logs import LogHub, LogRecord

MAX_PATTERN = 500
"""Longest regex accepted, in characters."""
SPAN = {0: 65536, 1: 4096, 2: 512}
"""Characters of each line a regex looks at, by its open-ended repeats (`*`, `+`,
`{n,}`, or a range wider than 16) once the edges are trimmed; more are refused."""
MAX_UNBOUNDED = max(SPAN)
SCAN_BUDGET_S = 1.0
"""A filtered scan stops after this long and says where it stopped."""
ALL = 1 << 62
ERRORS = re.compile(rb"\b(?:errors?|err|exception|traceback|fatal|critical|crit|panic|"
                    rb"fail(?:ed|ure)?)\b")
"""What counts as an error line for `errors_only` (services' lines and Hippodrome's notes),
matched on the line in lower case (a fifth faster than a case-insensitive pattern)."""
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})


class SafeRegex(NamedTuple):
    """A pattern that passed `safe_regex`, and how much of each line it may look at."""

    pattern: re.Pattern[str]
    span: int

    def search(self, line: bytes) -> bool:
        if len(line) <= self.span and line.isascii():
            return self.pattern.search(line.decode("ascii")) is not None
        text = line[:self.span * 4].decode("utf-8", "replace")[:self.span]
        return self.pattern.search(text) is not None


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

def parse_since(raw: str | float, now: float | None = None) -> float:
    """A point in time: Unix seconds, an ISO 8601 date-time (local time unless it has an
    offset), or a duration ago (`90s`, `5m`, `2h`, `1d`)."""
    now = time.time() if now is None else now
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    text = str(raw).strip()
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise UsageError(f"'since' must be Unix seconds, an ISO 8601 time "
                         f"(2026-05-01T12:00:00) or a duration ago (90s, 5m, 2h), got "
                         f"{text[:60]!r}") from None


def safe_regex(pattern: str) -> SafeRegex:
    """The pattern compiled, or a UsageError saying which construct is refused and what to
    write instead (see the module's docstring for why)."""
    if len(pattern) > MAX_PATTERN:
        raise UsageError(f"'regex' is {len(pattern)} characters; the limit is {MAX_PATTERN}")
    pattern = _trim_edges(pattern)
    try:
        tree = _parser().parse(pattern)
        compiled = re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"'regex' is not a valid regular expression: {exc}") from None
    except RecursionError:
        raise UsageError("'regex' is nested too deeply") from None
    unbounded = _check(list(tree), in_repeat=False)
    if unbounded > MAX_UNBOUNDED:
        raise UsageError(f"'regex' has {unbounded} open-ended repeats (*, +, {{n,}}); at most "
                         f"{MAX_UNBOUNDED} are allowed, so that one long line cannot stall "
                         "the daemon: use a plain 'text' filter, or a narrower pattern")
    return SafeRegex(compiled, SPAN[unbounded])


def _parser() -> Any:
    """The standard library's own regex parser (private, untyped, stable since 3.11)."""
    return importlib.import_module("re._parser")


def _is_any_star(item: Any) -> bool:
    op, arg = item
    return (str(op) in ("MAX_REPEAT", "MIN_REPEAT") and arg[0] == 0 and arg[1] > 65535
            and [str(o) for o, _ in arg[2]] == ["ANY"])


def _trim_edges(pattern: str) -> str:
    """Drop leading and trailing `.*` / `.*?`: a search finds the same lines without them,
    and each one would otherwise cost a factor of the line's length."""
    for _ in range(MAX_PATTERN):
        try:
            items = list(_parser().parse(pattern))
        except (re.error, RecursionError):
            return pattern  # safe_regex reports it
        if len(items) > 1 and _is_any_star(items[0]) and pattern.startswith(".*"):
            pattern = pattern[3:] if pattern.startswith(".*?") else pattern[2:]
            continue
        tail = 3 if pattern.endswith(".*?") else 2
        escapes = len(pattern[:-tail]) - len(pattern[:-tail].rstrip("\\"))
        if len(items) > 1 and _is_any_star(items[-1]) and pattern[-tail:] in (".*", ".*?") \
                and escapes % 2 == 0:
            pattern = pattern[:-tail]
            continue
        return pattern
    return pattern


def _check(items: list[Any], in_repeat: bool) -> int:
    """Refuse the constructs that backtrack exponentially; count open-ended repeats."""
    unbounded = 0
    for op, arg in items:
        name = str(op)
        if name in _REPEATS:
            lo, hi, sub = arg
            repeats = hi > 1
            if repeats and in_repeat:
                raise UsageError("'regex' repeats something that itself repeats, like (a+)+ "
                                 "or (\\w+\\s?)*: that can take exponential time. Repeat a "
                                 "single character class instead, e.g. [\\w\\s]+")
            unbounded += 1 if hi - lo > 16 else 0
            unbounded += _check(list(sub), in_repeat or repeats)
        elif name == "BRANCH":
            if in_repeat:
                raise UsageError("'regex' repeats an alternation, like (a|ab)+: that can "
                                 "take exponential time. Match the alternatives once, e.g. "
                                 "(a|ab), or use a character class [ab]+")
            for alternative in arg[1]:
                unbounded += _check(list(alternative), in_repeat)
        elif name == "SUBPATTERN":
            unbounded += _check(list(arg[3]), in_repeat)
        elif name == "ATOMIC_GROUP":
            unbounded += _check(list(arg), in_repeat)
        elif name in ("GROUPREF", "GROUPREF_EXISTS"):
            raise UsageError("'regex' uses a backreference (\\1, (?P=name) or (?(1)...)), "
                             "which is not supported here: match the text itself")
        elif name in ("ASSERT", "ASSERT_NOT"):
            raise UsageError("'regex' uses a lookahead or lookbehind ((?=...), (?!...), "
                             "(?<=...), (?<!...)), which is not supported here: filter "
                             "with a plain pattern, then page through the lines")
    return unbounded


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
