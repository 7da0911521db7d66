"""Filtered reads of the log buffer (daemon/logquery.py): windows, filters, paging, the
regex subset, and the time budget, over a real LogHub."""

from __future__ import annotations

import itertools
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo_tasks.daemon.logquery import LogQuery, parse_since, select
from hippo_tasks.errors import UsageError
from hippo_tasks.model.regex_safety import SPAN, safe_regex
from hippo_tasks.supervision.logs import LogHub


def hub_with(lines: list[str], chunk: int = 7) -> LogHub:
    hub = LogHub(100_000)
    for i in range(0, len(lines), chunk):
        part = [ln.encode() for ln in lines[i:i + chunk]]
        hub.publish("svc", b"\n".join(part) + b"\n", part)
    return hub


LINES = [f"line {i} " + ("ERROR boom" if i % 10 == 3 else "ok") for i in range(1, 201)]


def texts(answer: dict[str, object]) -> list[str]:
    return [ln["line"] for ln in answer["lines"]]  # type: ignore[attr-defined, index]


def test_plain_tail_and_after_keep_the_old_shape() -> None:
    hub = hub_with(LINES)
    tail = select(hub, "svc", LogQuery(limit=5))
    assert texts(tail) == LINES[-5:] and tail["last_seq"] == 200
    assert tail["more"] is True and tail["next"] == {"before": 196}
    after = select(hub, "svc", LogQuery(limit=3, after=10))
    assert [ln["seq"] for ln in after["lines"]] == [11, 12, 13]
    assert after["next"] == {"after": 13}
    assert select(hub, "svc", LogQuery(limit=5, after=200))["lines"] == []
    assert select(hub, "svc", LogQuery(limit=0))["lines"] == []


def test_text_filter_pages_backwards_to_the_start() -> None:
    hub = hub_with(LINES)
    seen: list[str] = []
    query = LogQuery(limit=6, text="error")
    while True:
        page = select(hub, "svc", query)
        seen[:0] = texts(page)
        if not page["more"]:
            break
        query = LogQuery(limit=6, text="error", before=page["next"]["before"])
    assert seen == [ln for ln in LINES if "ERROR" in ln]


def test_forward_paging_with_errors_only_sees_each_line_once() -> None:
    hub = hub_with(LINES + ["Traceback (most recent call last):", "all fine"])
    seen: list[int] = []
    after = 0
    while True:
        page = select(hub, "svc", LogQuery(limit=4, after=after, errors_only=True))
        seen += [ln["seq"] for ln in page["lines"]]
        if not page["more"]:
            break
        after = page["next"]["after"]
    assert seen == [i for i in range(1, 201) if i % 10 == 3] + [201]


def test_regex_and_since() -> None:
    hub = hub_with(LINES)
    answer = select(hub, "svc", LogQuery(limit=100, regex=safe_regex(r"line 1\d ")))
    assert texts(answer) == [f"line {i} " + ("ERROR boom" if i == 13 else "ok")
                             for i in range(10, 20)]
    future = select(hub, "svc", LogQuery(limit=10, since=time.time() + 60))
    assert future["lines"] == [] and future["more"] is False
    past = select(hub, "svc", LogQuery(limit=10, since=time.time() - 60))
    assert texts(past) == LINES[-10:]


def test_non_ascii_text_and_long_lines() -> None:
    hub = hub_with(["Ünïcode ÉRREUR here", "x" * 70_000 + " needle", "plain"])
    assert texts(select(hub, "svc", LogQuery(text="érreur"))) == ["Ünïcode ÉRREUR here"]
    # a text filter sees whole lines; a regex only the start of each
    assert len(select(hub, "svc", LogQuery(text="needle"))["lines"]) == 1
    assert select(hub, "svc", LogQuery(regex=safe_regex("needle")))["lines"] == []


def test_the_scan_stops_at_its_budget_and_says_where_to_go_on() -> None:
    hub = hub_with([f"l{i}" for i in range(5000)])
    ticks = itertools.count(0, 0.3)  # each look at the clock: 0.3 s later
    answer = select(hub, "svc", LogQuery(limit=10, text="nothing"), clock=lambda: next(ticks))
    assert answer["incomplete"] is True and answer["more"] is True
    before = answer["next"]["before"]
    assert 0 < before <= 5000 and answer["scanned"] < 5000
    rest = select(hub, "svc", LogQuery(limit=10, text="nothing", before=before))
    assert rest["incomplete"] is False and rest["lines"] == []


@pytest.mark.parametrize("pattern, refused", [
    ("(a+)+$", "repeats something that itself repeats"),
    (r"(\w+\s?)*$", "repeats something that itself repeats"),
    ("(a|ab)+c", "repeats an alternation"),
    (r"(a)\1", "backreference"),
    ("(?P<x>a)(?P=x)", "backreference"),
    ("x(?=y)", "lookahead"),
    ("(?<!x)y", "lookahead or lookbehind"),
    ("a.*b.*c.*d", "open-ended or wide repeats"),
    (r"\w*\w*\w*x", "open-ended or wide repeats"),
    # wide ranges count as open-ended: said, not blamed on a `*` the pattern lacks
    ("a{0,60}b{0,60}c{0,60}", "or a range over 16 such as {0,60}"),
    ("[", "not a valid regular expression"),
    ("a" * 501, "the limit is 500"),
    ("(a{2,}){3}", "repeats something that itself repeats"),
    # Bounded parts only, nothing nested or open-ended, yet 2 ** 34 ways to try: one GET
    # (any web page's <img>) held the daemon for minutes.
    (".?" * 34 + "." * 34 + "~~", "too many optional or variable-length parts"),
    ("(a?){30}", "too many optional or variable-length parts"),
    (".{0,5}" * 6, "too many optional or variable-length parts"),
    # Each limit held alone, but not together: 13 s on one 128-character line of `a`s,
    # freezing the daemon that matched a readiness pattern like it.
    ("a+?" + "a?" * 10 + "a+?b", "combines open-ended repeats (*, +) with optional"),
    (r"\w*" + r"\w?" * 12 + "!", "combines open-ended repeats (*, +) with optional"),
    ("a{99999999999}", "not a valid regular expression"),  # OverflowError: was a 500
    ("a{1,4294967295}", "not a valid regular expression"),
])
def test_patterns_outside_the_subset_are_refused_with_the_reason(pattern: str,
                                                                 refused: str) -> None:
    with pytest.raises(UsageError, match=re.escape(refused)):
        safe_regex(pattern)


def test_edges_are_trimmed_and_the_span_follows_the_repeats() -> None:
    assert safe_regex(".*error.*").pattern.pattern == "error"
    assert safe_regex(".*?x.*?").pattern.pattern == "x"
    assert safe_regex(r"a\.*").pattern.pattern == r"a\.*"  # an escaped dot stays
    assert safe_regex("error|warn").span == SPAN[0]
    assert safe_regex(r"took \d+ms").span == SPAN[1]
    assert safe_regex(r"\d+ms.*slow").span == SPAN[2]
    assert safe_regex("(a|b)*c").span == SPAN[1]  # one character class, not alternation
    assert safe_regex(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")  # 81 ways: fine
    # Optional parts narrow the span too: about 0.1 s a line at worst, whatever the mix
    assert safe_regex(r"listening on \S+:\d{1,5}").span == 894
    assert safe_regex(r"\w?" * 12 + "!").span == 976


def test_a_refused_construct_would_really_have_been_slow() -> None:
    """The subset is not arbitrary: the classic pattern it refuses backtracks
    exponentially (checked on a short input, so the test stays fast)."""
    began = time.perf_counter()
    re.search(r"(\w+\s?)*$", "a" * 18 + "!")
    slow = time.perf_counter() - began
    began = time.perf_counter()
    safe_regex(r"[\w\s]*$").search(b"a" * 18 + b"!")
    assert time.perf_counter() - began < slow


def test_since_forms() -> None:
    assert parse_since("90s", now=1000.0) == 910.0
    assert parse_since("2h", now=10_000.0) == 2800.0
    assert parse_since(12.5) == 12.5 and parse_since("12.5") == 12.5
    assert parse_since("1970-01-01T00:01:00Z") == 60.0
    # The calendar's edges in local time overflow the conversion: valid ISO 8601, which
    # was refused as not ISO 8601 (adv34 w/5); before every line, after every one.
    assert parse_since("0001-01-01T00:00:00") < 0 < parse_since("9999-12-31T23:59:59")
    for bad in ("yesterday", "5 parsecs", "", "nan", "-inf", float("nan"), float("inf"),
                "\u0663m", "\u0663", "1_0"):  # other scripts' digits were read as ours
        with pytest.raises(UsageError, match="'since' must be"):  # nan passed every line
            parse_since(bad)


WORDS = ["ok", "ERROR", "boom", "fail", "x", "Äpfel", "a\\nb", "failed", "err:", "zz"]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(lines=st.lists(st.lists(st.sampled_from(WORDS), min_size=0, max_size=4)
                      .map(" ".join), min_size=0, max_size=120),
       chunk=st.integers(1, 30), text=st.sampled_from(["", "err", "a\nb", "OK x", "äpfel"]),
       errors_only=st.booleans(), limit=st.integers(1, 12), forward=st.booleans())
def test_paging_a_filter_gives_exactly_the_matching_lines_once(
        lines: list[str], chunk: int, text: str, errors_only: bool, limit: int,
        forward: bool) -> None:
    """Against the obvious filter over every record: the chunk-level skip (a chunk's
    lines joined by newlines) may never hide a line nor invent one, whatever the chunk
    sizes, a needle holding a newline, or paging forwards or backwards."""
    hub = hub_with(lines, chunk)
    errors = re.compile(r"\b(?:errors?|err|exception|traceback|fatal|critical|crit|panic|"
                        r"fail(?:ed|ure)?)\b")
    want = [r.text for r in hub.since("svc", 0, 1 << 30)
            if (not text or text.casefold() in r.text.casefold())
            and (not errors_only or errors.search(r.text.lower()))]
    got: list[str] = []
    query = LogQuery(limit=limit, text=text, errors_only=errors_only,
                     after=0 if forward else None)
    for _ in range(len(lines) + 2):
        page = select(hub, "svc", query)
        got = got + texts(page) if forward else texts(page) + got
        if not page["more"]:
            break
        query = LogQuery(limit=limit, text=text, errors_only=errors_only, **page["next"])
    assert got == want
