"""Replaying a webhook recording: send each recorded event again through the daemon's
webhook, so the stack's routing decides where it goes, and compare each answer with the
recorded one (events/compare.py says which fields count).

One function for every caller: `hd events.replay` (tasks/events.py), the daemon's
`POST /api/events/recordings/NAME/replay` (the page's button), and the MCP server's
`events_replay` tool. `replay(...)` returns a `ReplayReport`; `.to_json()` is the
API's and the MCP tool's answer, `.summary()` the CLI's text.

- The whole file is checked before anything is sent: a bad line is a RecordingError
  naming its number, and nothing was replayed. Only a last line cut short (the daemon
  stopped mid-write) is skipped, and the report says so.
- Only the bytes the file held when the replay began are read: replaying the
  recording being written must not chase its own new deliveries.
- Replayed deliveries are not recorded again (the `x-hippodrome-replay` header), so
  replaying the recording being written leaves it as it was.
- Pacing: each event leaves at its recorded distance from the first selected one,
  divided by `speed` (None: as fast as possible). A slow answer delays what follows; it
  is never skipped. Events are sent one at a time, in recorded order.
- An answer that says the replay itself is refused (401 without the token, 403/415 from
  the browser guard) when the recording was not is an error, not thousands of
  differences.
"""

from __future__ import annotations

import http.client
import json
import math
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hippo_contract.webhook import TOKEN_HEADER, WEBHOOK_PATH
from hippo_tasks.errors import RecordingError, UsageError
from hippo_tasks.events.compare import FieldDiff, differences
from hippo_tasks.events.recording import REPLAY_HEADER, CutShort, Delivery, Dropped, read

MISMATCHES_KEPT = 100
"""Differing deliveries described in full; the rest are counted."""
FIELDS_KEPT = 20
REFUSALS = {401: "the webhook wants its token",
            403: "the webhook refused the request (Host or Origin)",
            415: "the webhook refused the request's Content-Type"}


class WebhookUnreachable(Exception):
    """The daemon's webhook stopped answering in the middle of a replay."""

    def __init__(self, url: str, reason: str, sent: int) -> None:
        super().__init__(reason)
        self.url, self.reason, self.sent = url, reason, sent


class ReplayStopped(Exception):
    """The caller's `stop` said to end the replay (its client went away, the daemon is
    shutting down) before every delivery was sent."""

    def __init__(self, reason: str, sent: int) -> None:
        super().__init__(reason)
        self.reason, self.sent = reason, sent


STOP_CHECK_S = 0.25
"""How often a pause between paced deliveries asks `stop`: a replay whose client hung up
held the daemon's one replay slot (409 for every other) for up to ten minutes."""


@dataclass(frozen=True)
class Mismatch:
    """A delivery whose answer differs from the recorded one."""

    line: int
    detail_type: str
    target: str | None
    fields: tuple[FieldDiff, ...]
    more_fields: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "detail_type": self.detail_type, "target": self.target,
                "differences": [f.as_json() for f in self.fields],
                "more_differences": self.more_fields}

    def lines(self) -> list[str]:
        head = f"line {self.line}: {self.detail_type or '(no detail-type)'}"
        if self.target:
            head += f" -> {self.target}"
        out = [head] + [f"    {f.text()}" for f in self.fields]
        if self.more_fields:
            out.append(f"    ... and {self.more_fields} more differing fields")
        return out


@dataclass
class ReplayReport:
    path: str
    filter: str | None
    speed: float | None
    deliveries: int = 0
    """Delivery lines in the file (before the filter)."""
    selected: int = 0
    sent: int = 0
    equal: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    more_mismatches: int = 0
    not_recorded: int = 0
    """Deliveries the recorder dropped (its `dropped` lines): not in the file at all."""
    cut_short_line: int | None = None
    span_s: float = 0.0
    """Recorded time from the first to the last selected delivery."""

    @property
    def different(self) -> int:
        return self.sent - self.equal

    @property
    def ok(self) -> bool:
        return self.different == 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "file": self.path, "filter": self.filter,
                "speed": self.speed, "deliveries": self.deliveries,
                "selected": self.selected, "sent": self.sent, "equal": self.equal,
                "different": self.different,
                "mismatches": [m.as_json() for m in self.mismatches],
                "more_mismatches": self.more_mismatches, "not_recorded": self.not_recorded,
                "cut_short_line": self.cut_short_line, "span_s": round(self.span_s, 3)}

    def summary(self, details: bool = True) -> list[str]:
        """The report as text; `details=False` leaves out the differing deliveries (the
        CLI printed each as it happened)."""
        head = f"replayed {self.sent} of {self.deliveries} deliveries from {self.path}"
        if self.filter:
            head += f" (--filter {self.filter}: {self.selected} matched)"
        out = [head + f": {self.equal} answered as recorded, {self.different} differently"]
        for m in self.mismatches if details else ():
            out += m.lines()
        if self.more_mismatches and details:
            out.append(f"... and {self.more_mismatches} more deliveries answered differently")
        if self.not_recorded:
            out.append(f"note: the recorder dropped {self.not_recorded} deliveries while "
                       "recording (it fell behind); they are not in the file")
        if self.cut_short_line is not None:
            out.append(f"note: line {self.cut_short_line} was cut short (the daemon stopped "
                       "while writing it) and was not replayed")
        return out


def matches(pattern: str | None, detail_type: str) -> bool:
    """`T` is that detail-type exactly; `T*` every detail-type starting with T."""
    if not pattern:
        return True
    if pattern.endswith("*"):
        return detail_type.startswith(pattern[:-1])
    return detail_type == pattern


LONGEST_PACED_S = 7 * 24 * 3600.0
"""A paced replay longer than a week is a mistake (an `at` in milliseconds, `--speed
1e-300`): refused before anything is sent. It used to send the first delivery and
die in time.sleep with an OverflowError traceback."""


def _seconds(value: float) -> str:
    """`1,234,567`, `0.5`, or `1e+300` (a 300-digit figure, comma-grouped, was said for
    `--speed 1e-300`; a 0.5 s span "0 s", adv59)."""
    if value >= 1e15 or not math.isfinite(value):
        return f"{value:.3g}"
    return f"{value:,.0f}" if value >= 10 else f"{value:.3g}"


def check_speed(speed: float | None) -> float | None:
    if speed is not None and (not math.isfinite(speed) or speed <= 0):
        raise UsageError(f"--speed must be a number above 0 (2 = twice as fast as recorded), "
                         f"got {speed:g}; --as-fast-as-possible sends without pauses")
    return speed


def _survey(path: Path, limit: int, pattern: str | None, report: ReplayReport) -> None:
    """First pass: the whole file is valid, and what the filter selects."""
    seen: Counter[str] = Counter()
    first: float | None = None
    for entry in read(path, limit):
        if isinstance(entry, Delivery):
            report.deliveries += 1
            seen[entry.detail_type] += 1
            if matches(pattern, entry.detail_type):
                report.selected += 1
                first = entry.at if first is None else first
                report.span_s = max(report.span_s, entry.at - first)
        elif isinstance(entry, Dropped):
            report.not_recorded += entry.count
        elif isinstance(entry, CutShort):
            report.cut_short_line = entry.line
    if pattern and report.deliveries and not report.selected:
        types = ", ".join(t for t, _ in seen.most_common(10))
        hint = "" if pattern.endswith("*") else f"; for a prefix write '{pattern}*'"
        raise RecordingError(f"--filter {pattern!r} matches none of its {report.deliveries} "
                             f"deliveries (detail-types there: {types}){hint}", str(path))


class _Sender:
    """One keep-alive connection to the webhook, reopened once if the daemon closed it."""

    def __init__(self, url: str, token: str | None, timeout: float,
                 replay_key: str | None = None) -> None:
        split = urlsplit(url)
        if split.scheme != "http" or not split.hostname:
            raise UsageError(f"the daemon's URL must be http://HOST:PORT, got {url!r}")
        self.url = url
        self.host, self.port = split.hostname, split.port or 80
        self.timeout = timeout
        self.headers: dict[str, str | bytes] = {"Content-Type": "application/json"}
        if replay_key:  # the daemon's own: a delivery it sent again is not recorded again
            self.headers[REPLAY_HEADER] = replay_key
        if token:  # its UTF-8 bytes, as curl sends them (http.client would send Latin-1)
            self.headers[TOKEN_HEADER] = token.encode("utf-8")
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, sent: int) -> tuple[int, Any]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request("POST", WEBHOOK_PATH, body=body, headers=self.headers)
                resp = self.conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 1 and isinstance(exc, http.client.RemoteDisconnected
                                               | ConnectionResetError | BrokenPipeError):
                    continue
                raise WebhookUnreachable(self.url, str(exc) or type(exc).__name__,
                                         sent) from None
            if resp.will_close:
                self.close()
            try:
                return resp.status, json.loads(raw)
            except ValueError:
                return resp.status, {"raw": raw[:4096].decode("utf-8", "replace")}
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def replay(path: Path | str, *, url: str, token: str | None = None,
           replay_key: str | None = None,
           filter: str | None = None, speed: float | None = 1.0,
           ignore: Iterable[str] = (), on_start: Callable[[ReplayReport], None] | None = None,
           on_mismatch: Callable[[Mismatch], None] | None = None,
           timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic,
           stop: Callable[[], str | None] | None = None) -> ReplayReport:
    """Send the recording's deliveries (those `filter` selects) to the webhook at `url`
    (the daemon's `http://127.0.0.1:PORT`), `speed` times as fast as recorded (None: as
    fast as possible), and compare each answer with the recorded one. `on_start` gets
    the report once the file is checked (counts filled in, nothing sent yet);
    `on_mismatch` each differing delivery as it happens. `stop`, asked before each
    delivery and during pauses, returns why to end the replay early, or None.

    Raises RecordingError (a bad file, a filter that selects nothing), UsageError (a
    bad speed, the replay refused by the webhook), WebhookUnreachable or ReplayStopped.
    """
    path = Path(path)
    check_speed(speed)
    ignored = tuple(ignore)
    report = ReplayReport(str(path), filter or None, speed)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise RecordingError("no such file (recordings are in .hippodrome/events/)",
                             str(path)) from None
    except OSError as exc:
        raise RecordingError(f"cannot read it: {exc.strerror or exc}", str(path)) from None
    if stat.S_ISDIR(info.st_mode):
        raise RecordingError("cannot read it: it is a folder (a recording is one .jsonl "
                             "file in it)", str(path))
    if not stat.S_ISREG(info.st_mode):
        # A pipe (`<(cat rec.jsonl)`, /dev/stdin) has no size: replay read up to 0 bytes
        # and said "replayed 0 of 0", exit 0; a FIFO with no writer hung in open().
        raise RecordingError("not a regular file: a recording is read twice (checked whole, "
                             "then sent), so save it to a file first", str(path))
    limit = info.st_size
    _survey(path, limit, report.filter, report)
    if speed is not None and report.span_s / speed > LONGEST_PACED_S:
        raise UsageError(f"at speed {speed:g} this replay would take "
                         f"{_seconds(report.span_s / speed)} s (its deliveries span "
                         f"{_seconds(report.span_s)} s; over a week, as times in milliseconds "
                         "or a tiny --speed make it): raise --speed, or use "
                         "--as-fast-as-possible ('speed', 'as_fast_as_possible' in the "
                         "API)")
    if on_start is not None:
        on_start(report)
    sender = _Sender(url, token, timeout, replay_key)
    first_at: float | None = None
    began = 0.0
    try:
        for entry in read(path, limit):
            if not isinstance(entry, Delivery) or not matches(report.filter, entry.detail_type):
                continue
            if first_at is None:
                first_at, began = entry.at, clock()
            elif speed is not None:
                _pause(began + (entry.at - first_at) / speed, sleep, clock, stop, report.sent)
            if stop is not None and (reason := stop()) is not None:
                raise ReplayStopped(reason, report.sent)
            body = entry.event_text or json.dumps(entry.event)  # as received, when it can
            status, answer = sender.post(body.encode("utf-8", "surrogatepass"), report.sent)
            report.sent += 1
            if status in REFUSALS and entry.status != status:
                raise UsageError(f"{REFUSALS[status]} ({status}: "
                                 f"{answer.get('error') if isinstance(answer, dict) else answer}"
                                 f"); nothing after line {entry.line} was sent. "
                                 + _refusal_hint(status))
            diffs = differences(entry.status, entry.answer, status, answer, ignored)
            if not diffs:
                report.equal += 1
                continue
            mismatch = Mismatch(entry.line, entry.detail_type, entry.target,
                                tuple(diffs[:FIELDS_KEPT]), max(0, len(diffs) - FIELDS_KEPT))
            if on_mismatch is not None:
                on_mismatch(mismatch)
            if len(report.mismatches) < MISMATCHES_KEPT:
                report.mismatches.append(mismatch)
            else:
                report.more_mismatches += 1
    finally:
        sender.close()
    return report


def _pause(until: float, sleep: Callable[[float], None], clock: Callable[[], float],
           stop: Callable[[], str | None] | None, sent: int) -> None:
    """Wait until the clock reads `until`, in steps short enough to heed `stop`."""
    while (left := until - clock()) > 0:
        if stop is None:
            sleep(left)
            return
        sleep(min(left, STOP_CHECK_S))
        if (reason := stop()) is not None:
            raise ReplayStopped(reason, sent)


def _refusal_hint(status: int) -> str:
    if status == 401:
        return ("HIPPODROME_WEBHOOK_TOKEN is not the daemon's token: unset it (the token "
                "the running daemon checks is then sent), or replay from the dashboard's "
                "Recordings section (or POST /api/events/recordings/NAME/replay), where the "
                "daemon sends its own token")
    return "Replay from this machine against the daemon's 127.0.0.1 address"
