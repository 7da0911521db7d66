"""The webhook recording format: where recordings live, what one line holds, reading it.

One file per recording, `.hippodrome/events/<YYYYmmdd-HHMMSS>[-N].jsonl`, one JSON
object per line, written by the daemon (daemon/webhook/record.py) and read by the
replay (events/replay.py), the page and the API. Every line carries its own format
version (`"v"`), so a file cut with `grep` or `head` is still a recording, and a line
from a newer Hippodrome is refused by name instead of being misread.

A `delivery` line: `at` (epoch seconds the request arrived), `detail_type`, `route`
(the `[[routes]]` entry that matched: `detail_type_prefix`, `service`, `path`; null
when none did), `target` (`localhost:PORT` or null), `event` (the event as received,
as JSON), `status` and `answer` (what the webhook answered), `outcome` (forwarded,
ignored, error) and `latency_ms`. A `dropped` line: `count` deliveries were not
recorded there (the writer fell behind). Headers are never recorded, and the webhook
token is blanked wherever it appears, so no recording holds it.

Standard library only: the daemon imports this, and its memory lasts as long as a stack;
and no dataclasses (the module brings inspect, ast and dis): NamedTuples and a plain class.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from hippo_tasks.errors import RecordingError

VERSION = 1
"""The format this Hippodrome writes and reads; a line with a greater `v` is refused."""
DIR = Path(".hippodrome") / "events"
STAMP = "%Y%m%d-%H%M%S"
OURS = re.compile(r"^(\d{8}-\d{6})(?:-(\d+))?\.jsonl\Z")
"""Names the recorder makes (and alone prunes)."""
SAFE_NAME = re.compile(r"^[^./\x00-\x1f\x7f][^/\x00-\x1f\x7f]{0,120}\.jsonl\Z")
"""Names the API serves: one path segment, no '/', nothing hidden, no control
characters; `..` cannot escape. Spaces, brackets and letters are a user's own names
(`rec (1).jsonl`, a file manager's copy; `résumé.jsonl`): they were left out of the
list, so nothing could replay them from the page."""
REDACTED = "[redacted]"
REPLAY_HEADER = "x-hippodrome-replay"
"""Sent by the replay: the webhook shows and logs such a delivery but does not record it
again, so replaying the recording being written leaves it as it was."""


def events_dir(project_root: Path) -> Path:
    return project_root / DIR


def order_key(name: str) -> tuple[str, int]:
    """Recordings in the order they were made: `x.jsonl` before `x-2.jsonl`."""
    m = OURS.match(name)
    return (m.group(1), int(m.group(2) or 1)) if m else (name, 0)


class RecordingInfo(NamedTuple):
    name: str
    bytes: int
    modified: float

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "modified": round(self.modified, 3)}


def list_recordings(folder: Path) -> list[RecordingInfo]:
    """Every `.jsonl` with a safe name directly in the folder, newest first: plain
    files only, as `named` accepts (a link to /etc/passwd was listed with its size and
    time, and could never be replayed)."""
    out = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if not SAFE_NAME.match(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat()
        except OSError:
            continue
        out.append(RecordingInfo(entry.name, st.st_size, st.st_mtime))
    # by time, then in the order they were made (two in one second): by name first, a
    # file put there as `résumé.jsonl` came before the one being written (adv46 H/9)
    out.sort(key=lambda r: (r.modified, order_key(r.name)), reverse=True)
    return out


def named(folder: Path, name: str) -> Path:
    """The recording NAME in the folder; anything that is not one plain file there (a
    path, `..`, a symlink out of it, a missing file) is a RecordingError."""
    if not SAFE_NAME.match(name):
        raise RecordingError(f"not a recording name: {name!r} (names look like "
                             "20260101-120000.jsonl; see GET /api/events/recordings)")
    path = folder / name
    try:
        inside = path.resolve(strict=True).parent == folder.resolve(strict=True)
    except (OSError, RuntimeError):
        inside = False
    if not inside or path.is_symlink() or not path.is_file():
        raise RecordingError(f"no recording named {name!r} in {folder}")
    return path


class Delivery(NamedTuple):
    """One recorded delivery, checked: what the replay sends and compares."""

    line: int
    at: float
    detail_type: str
    event: dict[str, Any]
    status: int
    answer: Any
    target: str | None
    event_text: str = ""
    """The event exactly as the line holds it (as received, line breaks made spaces):
    what a replay sends, so numbers like 1e400 or 0.10000000000000000001 and the
    spacing reach the service as they first did, not as Python writes them again."""


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, pos: int) -> int:
    space = _SPACE.match(text, pos)
    return space.end() if space is not None else pos


def member_text(text: str, key: str) -> str:
    """The text of the top-level object's member `key`, as written, with the white
    space around it (between its `:` and the next `,` or `}`: the recorder writes the
    event's bytes there, and cutting a body's final newline made replay send one byte
    less than was received); "" when the line is not an object with it. Walks the
    members with the decoder's own scanner, so it agrees with json.loads about where
    each value ends (and, for a repeated key, that the last one counts)."""
    found = ""
    try:
        pos = _skip(text, 0)
        if text[pos:pos + 1] != "{":
            return ""
        pos = _skip(text, pos + 1)
        if text[pos:pos + 1] == "}":
            return ""
        while True:
            name, pos = _DECODER.raw_decode(text, _skip(text, pos))
            pos = _skip(text, pos)
            if text[pos:pos + 1] != ":":
                return ""
            start = pos + 1
            _, end = _DECODER.raw_decode(text, _skip(text, start))
            pos = _skip(text, end)
            if name == key:
                found = text[start:pos]
            if text[pos:pos + 1] == "}":
                return found
            if text[pos:pos + 1] != ",":
                return ""
            pos += 1
    except (ValueError, RecursionError):
        return ""


class Dropped:
    """The recorder fell behind here: `count` deliveries were not recorded. A plain class,
    not a NamedTuple: its `count` would hide tuple.count."""

    __slots__ = ("line", "count")

    def __init__(self, line: int, count: int) -> None:
        self.line = line
        self.count = count


class CutShort(NamedTuple):
    """The file's last line is unfinished: the daemon stopped while writing it."""

    line: int


class NotJson(ValueError):
    """A line the JSON parser refused. `unfinished`: it stopped for want of more text
    (an object, array or string left open), as a line cut short by a stop does; a
    complete line with a typo, or two lines joined by a bare CR, did not, and was
    skipped as "cut short" by a replay that then said it passed (adv59 F3)."""

    def __init__(self, unfinished: bool) -> None:
        super().__init__("not valid JSON")
        self.unfinished = unfinished


class _Constant(ValueError):
    """NaN, Infinity or -Infinity in a line: not JSON, though Python's parser takes it."""


def _constant(name: str) -> Any:
    raise _Constant(name)


_STRICT = json.JSONDecoder(parse_constant=_constant)


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ValueError(f"'{key}' must be {what}")
    return value


def parse_line(text: str, line: int) -> Delivery | Dropped | None:
    """One line; None for a blank one. Raises ValueError with what is wrong."""
    if not text.strip():
        return None
    try:
        obj = _STRICT.decode(text)
    except _Constant as exc:  # NaN, Infinity: Python's parser takes them, JSON has none
        raise ValueError(f"not valid JSON ({exc} is not JSON)") from None
    except json.JSONDecodeError as exc:
        # A line is one object: cut short, it begins as one and stops where the parser
        # wanted more, or anywhere before its closing brace (`1.`, `tr`, `\u00`).
        whole = text.strip()
        raise NotJson(whole.startswith("{") and exc.msg != "Extra data" and (
            exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
            or not whole.endswith("}"))) from None
    except (ValueError, RecursionError):
        raise NotJson(False) from None
    if not isinstance(obj, dict) or "v" not in obj:
        raise ValueError("not a Hippodrome recording line (no format version 'v')")
    version = obj["v"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"format version 'v' must be a positive integer, got {version!r}")
    if version > VERSION:
        raise ValueError(f"recorded in format {version} by a newer Hippodrome; this one "
                         f"reads format {VERSION}: upgrade Hippodrome to replay it")
    kind = obj.get("kind", "delivery")
    if kind == "dropped":
        return Dropped(line, _field(obj, "count", int, "a whole number"))
    if kind != "delivery":
        raise ValueError(f"unknown line kind {kind!r}")
    status = _field(obj, "status", int, "an HTTP status (a whole number)")
    if not 100 <= status <= 599:
        raise ValueError(f"'status' must be an HTTP status, got {status}")
    target = obj.get("target")
    at = float(_field(obj, "at", (int, float), "a time (epoch seconds)"))
    if not math.isfinite(at):  # 1e999 (span_s was Infinity in the API's answer: H/1)
        raise ValueError("'at' must be a time (epoch seconds), a finite number: this one "
                         "is too large for a double")
    return Delivery(
        line=line,
        at=at,
        detail_type=str(obj.get("detail_type") or ""),
        event=_field(obj, "event", dict, "the event (a JSON object)"),
        status=status,
        answer=obj.get("answer"),
        target=target if isinstance(target, str) else None,
        event_text=member_text(text, "event"),
    )


MAX_LINE = 16 * 1024 * 1024
"""Longest line read: a delivery's is at most its event (256 KiB, escapes aside) and
the answer (1 MiB from the service) with a few fields."""


def read(path: Path, limit: int | None = None) -> Iterator[Delivery | Dropped | CutShort]:
    """The file's lines in order, up to `limit` bytes (what it held when a replay began:
    replaying the recording being written must not chase its own deliveries).

    A bad line is a RecordingError naming the line; only a last line cut short (the
    daemon stopped mid-write) is passed on as CutShort, since nothing can follow it.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, also when the caller stops early
    except FileNotFoundError:
        raise RecordingError("no such file (recordings are in .hippodrome/events/: "
                             "`ls .hippodrome/events`)", str(path)) from None
    except OSError as exc:
        raise RecordingError(f"cannot read it: {exc.strerror or exc}", str(path)) from None
    with fh:
        left = limit
        number = 0
        while left is None or left > 0:
            raw = fh.readline(MAX_LINE + 1 if left is None else min(left, MAX_LINE + 1))
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE:  # a 3 GB file without a line break was read whole
                raise RecordingError(f"line over {MAX_LINE // (1024 * 1024)} MiB: not a "
                                     "recording line (a delivery's is at most ~2 MiB); "
                                     "is this a recording?", str(path), number)
            if left is not None:
                left -= len(raw)
            last = not raw.endswith(b"\n")
            try:
                entry = parse_line(raw.decode("utf-8"), number)
            except (UnicodeDecodeError, ValueError) as exc:
                if last and (isinstance(exc, NotJson) and exc.unfinished or isinstance(
                        exc, UnicodeDecodeError) and exc.end == len(raw)):
                    # (cut inside a character: its first bytes end the file)
                    yield CutShort(number)
                    return
                why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
                raise RecordingError(f"{why}; fix or delete that line", str(path),
                                     number) from None
            if entry is not None:
                yield entry
