"""Regular expressions that cannot stall the process matching them.

Python's `re` backtracks and holds the GIL while it does: one `(a+)+$` over a long line
would freeze the whole daemon, and no timeout can interrupt it. That holds for the
API's log filter (daemon/logquery.py) and for a stack file's `readiness = { log = ...}`,
which the daemon matches against every line a starting service prints. Patterns are
therefore held to a subset whose worst case is polynomial in the line's length: no
repetition nested inside a repetition, no alternation inside a repetition, no
backreferences or lookarounds, at most two open-ended repeats; and the more repeats,
the shorter the start of each line a pattern looks at (`SPAN`: whole lines with none,
4,096 characters with one, 342 with two; fewer still with optional parts, see
`span_for`), so one line costs at most about 0.1 s. A
leading or trailing `.*` adds nothing to a search and is dropped before matching
(`.*error.*` costs what `error` costs).
"""

from __future__ import annotations

import importlib
import re
from typing import Any, NamedTuple

from hippo_tasks.errors import UsageError

MAX_PATTERN = 500
"""Longest regex accepted, in characters."""
SPAN = {0: 65536, 1: 4096, 2: 341}
"""Characters of each line a regex looks at, by its open-ended repeats (`*`, `+`,
`{n,}`, or a range wider than 16) once the edges are trimmed; more are refused."""
MAX_UNBOUNDED = max(SPAN)
STEPS = 4e7
"""Backtracking steps one line may cost (~0.1 s: measured 1-2.5 ns a step without
optional parts, up to ten times that with them: CHOICE_COST)."""
CHOICE_COST = 10
MIN_SPAN = 128
"""A pattern that could look at fewer characters of a line than this is refused."""
MAX_CHOICES = 4096
"""Ways the bounded repeats may split a match (see _choices): an IPv4 pattern's four
`\\d{1,3}` are 81, `\\w{1,20}@\\w{1,20}` 400."""
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})


class SafeRegex(NamedTuple):
    """A pattern that passed `safe_regex`, and how much of each line it may look at."""

    pattern: re.Pattern[str]
    span: int

    def search_text(self, text: str) -> bool:
        """A line already decoded (a readiness pattern watching a service's output)."""
        return self.pattern.search(text[:self.span]) is not None

    def search(self, line: bytes) -> bool:
        if len(line) <= self.span and line.isascii():
            return self.pattern.search(line.decode("ascii")) is not None
        text = line[:self.span * 4].decode("utf-8", "replace")[:self.span]
        return self.pattern.search(text) is not None


def safe_regex(pattern: str, subject: str = "'regex'") -> SafeRegex:
    """The pattern compiled, or a UsageError saying which construct is refused and what to
    write instead (see the module's docstring for why); `subject` names the pattern in
    the message (the API's 'regex', a stack file's log readiness pattern)."""
    if len(pattern) > MAX_PATTERN:
        raise UsageError(f"{subject} is {len(pattern)} characters; the limit is {MAX_PATTERN}")
    pattern = _trim_edges(pattern)
    try:
        tree = _parser().parse(pattern)
        compiled = re.compile(pattern)
    except (re.error, OverflowError) as exc:  # OverflowError: a{99999999999}
        raise UsageError(f"{subject} is not a valid regular expression: {exc}") from None
    except RecursionError:
        raise UsageError(f"{subject} is nested too deeply") from None
    unbounded = _check(list(tree), False, subject)
    if unbounded > MAX_UNBOUNDED:
        # A range wider than 16 (`a{0,60}`) counts too: `a{0,60}b{0,60}c{0,60}` was told
        # of three `*`, `+` or `{n,}` it does not have (adv56 6).
        raise UsageError(f"{subject} has {unbounded} open-ended or wide repeats (*, +, "
                         f"{{n,}}, or a range over 16 such as {{0,60}}); at most "
                         f"{MAX_UNBOUNDED} are allowed, so that one long line cannot stall "
                         "the daemon: use a plain 'text' filter, or a narrower pattern")
    choices = _choices(list(tree))
    if choices > MAX_CHOICES:
        raise UsageError(f"{subject} has too many optional or variable-length parts (x?, "
                         "x{1,3}): the ways they can split one line multiply past "
                         f"{MAX_CHOICES}, and each is tried. Match fewer of them, or fixed "
                         "text")
    span = span_for(unbounded, choices)
    if span < MIN_SPAN:
        raise UsageError(f"{subject} combines open-ended repeats (*, +) with optional or "
                         "variable-length parts (x?, x{1,3}): each split of a line is tried "
                         "at each place, which on one line of a few hundred characters can "
                         "take seconds. Use fewer of either, or fixed text")
    return SafeRegex(compiled, span)


def span_for(unbounded: int, choices: int) -> int:
    """The characters of each line a pattern may look at so that one line costs about
    0.1 s at worst: backtracking tries up to span ** (unbounded + 1) * choices steps
    (each split of the bounded parts, at each place the open-ended ones may end).
    The limits were priced apart, and a pattern near both (`a+?a?...a?a+?b`, accepted)
    took 13 s on a 128-character line, freezing the daemon that matched it."""
    cost = choices * CHOICE_COST if choices > 1 else 1
    return min(SPAN[unbounded], int((STEPS / cost) ** (1 / (unbounded + 1))))


def _choices(items: list[Any]) -> int:
    """How many ways a pattern's bounded repeats can share out one match, their ranges
    multiplied, up to MAX_CHOICES + 1: `.?` thirty times is 2 ** 30 tries on a line that
    almost matches, though nothing in it is open-ended or nested. An open-ended repeat
    counts once here; the span limits price it."""
    total = 1
    for op, arg in items:
        name = str(op)
        ways = 1
        if name in _REPEATS:
            lo, hi, sub = arg
            inner = _choices(list(sub))
            if hi - lo > 16:
                ways = inner if inner == 1 else MAX_CHOICES + 1
            else:
                ways = hi - lo + 1
                for _ in range(min(hi, 64)):
                    ways = min(ways * inner, MAX_CHOICES + 1)
        elif name == "BRANCH":
            ways = sum(_choices(list(alternative)) for alternative in arg[1])
        elif name == "SUBPATTERN":
            ways = _choices(list(arg[3]))
        total = min(total * ways, MAX_CHOICES + 1)
    return total


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
        except (re.error, RecursionError, OverflowError):
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


def _check(items: list[Any], in_repeat: bool, subject: str) -> int:
    """Refuse the constructs that backtrack exponentially; count open-ended repeats."""
    unbounded = 0
    for op, arg in items:
        name = str(op)
        if name in _REPEATS:
            lo, hi, sub = arg
            repeats = hi > 1
            if repeats and in_repeat:
                raise UsageError(f"{subject} repeats something that itself repeats, like (a+)+ "
                                 "or (\\w+\\s?)*: that can take exponential time. Repeat a "
                                 "single character class instead, e.g. [\\w\\s]+")
            unbounded += 1 if hi - lo > 16 else 0
            unbounded += _check(list(sub), in_repeat or repeats, subject)
        elif name == "BRANCH":
            if in_repeat:
                raise UsageError(f"{subject} repeats an alternation, like (a|ab)+: that can "
                                 "take exponential time. Match the alternatives once, e.g. "
                                 "(a|ab), or use a character class [ab]+")
            for alternative in arg[1]:
                unbounded += _check(list(alternative), in_repeat, subject)
        elif name == "SUBPATTERN":
            unbounded += _check(list(arg[3]), in_repeat, subject)
        elif name == "ATOMIC_GROUP":
            unbounded += _check(list(arg), in_repeat, subject)
        elif name in ("GROUPREF", "GROUPREF_EXISTS"):
            raise UsageError(f"{subject} uses a backreference (\\1, (?P=name) or (?(1)...)), "
                             "which is not supported here: match the text itself")
        elif name in ("ASSERT", "ASSERT_NOT"):
            raise UsageError(f"{subject} uses a lookahead or lookbehind ((?=...), (?!...), "
                             "(?<=...), (?<!...)), which is not supported here: filter "
                             "with a plain pattern, then page through the lines")
    return unbounded
