"""Recording every webhook delivery to `.hippodrome/events/<stamp>.jsonl` (on by default;
`up --no-record` turns it off). The format is events/recording.py's.

The webhook's request threads must not wait for a disk: `add` only appends a tuple to
a bounded queue (a length check, no lock, no JSON) and wakes the writer thread when the
queue was empty. The writer sleeps `BATCH_S` to gather a batch, then writes it in one
write. The event goes into its line as the bytes received (line breaks, which strict
JSON allows only between tokens, become spaces), never parsed and serialized again:
`json.dumps` of the event was most of the recorder's cost, and with it the time the
writer held the interpreter while a request thread waited. Measured side by side
(benchmarks/bench_webhook.py, `record_loss_pct`).

- Bounded: at most `QUEUE_ITEMS` deliveries or `QUEUE_BYTES` of event bodies wait; past
  that a delivery is dropped, counted, and a `dropped` line in the file says how many
  are missing there (the daemon's log says so once).
- Capped: a file grows to `HIPPODROME_RECORD_MAX_MB` (50) and the next delivery starts
  a new one; only the newest `HIPPODROME_RECORD_KEEP` (10) recordings the recorder
  named are kept, so recordings never hold more than about 500 MB. Files with other
  names in the folder are yours and left alone.
- Lazy: the folder and file are made at the first delivery, so a run without events
  leaves nothing and prunes nothing.
- A disk that is full or read-only stops the recording for the rest of this daemon's
  run, with one line in its log and a `recordings` entry in `problems` (status, API,
  page); the webhook keeps serving.
- The token: headers are never recorded, and the token's text is blanked wherever it
  appears in a line (an event or an answer that quotes it).
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hippo_tasks.events.recording import OURS, REDACTED, STAMP, VERSION, order_key
from hippo_tasks.model.plan import PlannedRoute
from hippo_tasks.numbers import plain_float

APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
"""A recording's name is made of the time: never opened through a link planted there."""

BATCH_S = 0.05
QUEUE_ITEMS = 10_000
QUEUE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_MB = 50.0
DEFAULT_KEEP = 10
Item = tuple[float, float, str, PlannedRoute | None, int, str, bytes, bytes]
"""(at, latency_ms, detail_type, route, status, outcome, the answer's and the event's
JSON bytes)"""
_NO_ROUTE = b'"route":null,"target":null'


def env_number(name: str, default: float, floor: float,
                say: Callable[[str], None], ceiling: float | None = None,
                whole: bool = False) -> float:
    """The variable's number, or `default` with a note saying so: a value that was no
    number (`abc`, `-1`, `nan`) fell back in silence, and recordings grew past the
    size the user thought they had set. With a `ceiling`, anything over it (`inf`,
    `1e999` included) is the ceiling: `inf` was refused, and the 5 s default used
    where the guide says it means a day (adv46 H/10)."""
    raw = os.environ.get(name) or ""
    try:
        value = plain_float(raw) if raw else default
    except ValueError:
        value = math.nan
    if ceiling is not None and value > ceiling:
        return ceiling
    if math.isfinite(value) and value >= floor and (float(value).is_integer() or not whole):
        return value
    # (`inf` was "not a number", and a KEEP of 1.5 taken as 1 without a word: adv59)
    kind = "whole " if whole else "" if ceiling is not None else "finite "  # (inf: a day)
    say(f"hippodrome | {name}={raw!r} is not a {kind}number of at least {floor:g}: using "
        f"{default:g}")
    return default


class Recorder:
    """The recording of one daemon run; `add` from any thread, `close` once at the end."""

    def __init__(self, folder: Path, enabled: bool, token: str | None,
                 say: Callable[[str], None]) -> None:
        self.folder = folder
        self.enabled = enabled
        self.say = say
        self.max_bytes = int(env_number("HIPPODROME_RECORD_MAX_MB", DEFAULT_MAX_MB, 1e-6, say)
                             * 1024 * 1024)
        self.keep = int(env_number("HIPPODROME_RECORD_KEEP", DEFAULT_KEEP, 1, say,
                                   whole=True))
        self._secrets = [s.encode() for s in {token, json.dumps(token)[1:-1]}] if token else []
        self._hiding = _hiding_escapes(token) if token else ()
        """Escapes that could spell a token character: a line without any needs no parse
        (`\\"` and `\\n` are common; a base64 token can hide only behind `\\u` or `\\/`)."""
        self.trouble: dict[str, Any] | None = None
        self.path: Path | None = None
        self._made: list[str] = []
        """The files this recorder made, oldest first (for _prune)."""
        self.dropped_total = 0
        self._queue: collections.deque[Item] = collections.deque()
        self._queued_bytes = 0
        self._dropped = 0
        self._lock = threading.Lock()
        """Guards the drop count only; the queue is a deque (atomic appends and pops)."""
        self._routes: dict[int, bytes] = {}
        self._wake = threading.Event()
        self._closing = False
        self._file: Any = None
        self._size = 0
        self._told_behind = False
        self._thread: threading.Thread | None = None
        if enabled:
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()

    # ---- the webhook's side: cheap ---------------------------------------------------
    def add(self, at: float, latency_ms: float, detail_type: str, route: PlannedRoute | None,
            status: int, outcome: str, answer: bytes, event: bytes) -> None:
        """Queue one delivery: `answer` is the JSON the client got (one line, as
        json.dumps writes it), `event` the body as received, checked as a JSON object."""
        if not self.enabled:
            return
        queue = self._queue
        # Racy by design (no lock on the hot path): the bounds are approximate, by a few.
        if len(queue) >= QUEUE_ITEMS or self._queued_bytes > QUEUE_BYTES:
            with self._lock:
                self._dropped += 1
            return
        queue.append((at, latency_ms, detail_type, route, status, outcome, answer, event))
        self._queued_bytes += len(event)
        if not self._wake.is_set():
            self._wake.set()

    def problems(self) -> dict[str, Any]:
        return {"recordings": self.trouble} if self.trouble is not None else {}

    def state(self) -> dict[str, Any]:
        """For the API and the page: on or off, the file being written, what is wrong."""
        return {"recording": self.enabled, "dir": str(self.folder),
                "current": self.path.name if self.path is not None else None,
                "dropped": self.dropped_total, "problem": self.trouble,
                "max_mb": round(self.max_bytes / 1024 / 1024, 3), "keep": self.keep}

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and close the file; the daemon calls this as it exits."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- the writer thread -----------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait()
            if not self._closing:
                time.sleep(BATCH_S)
            self._wake.clear()
            items = []
            with contextlib.suppress(IndexError):
                while True:
                    items.append(self._queue.popleft())
            self._queued_bytes = 0 if not self._queue else self._queued_bytes - sum(
                len(i[7]) for i in items)
            with self._lock:
                dropped, self._dropped = self._dropped, 0
            if self.enabled and (items or dropped):
                self._write(items, dropped)
            if self._closing:
                self._close_file()
                return

    def _route(self, route: PlannedRoute | None) -> bytes:
        """A route's `"route":{...},"target":...` part, made once per route."""
        if route is None:
            return _NO_ROUTE
        made = self._routes.get(id(route))
        if made is None:
            r = route.route
            made = self._routes[id(route)] = (
                b'"route":' + json.dumps({"detail_type_prefix": r.detail_type_prefix,
                                          "service": r.service, "path": r.path}).encode()
                + b',"target":' + json.dumps(route.target).encode())
        return made

    def _line(self, item: Item) -> bytes:
        at, latency_ms, detail_type, route, status, outcome, answer, event = item
        line = b"".join((
            b'{"v":%d,"kind":"delivery","at":%r,"detail_type":' % (VERSION, round(at, 6)),
            json.dumps(detail_type).encode(), b",", self._route(route),
            b',"event":', event.replace(b"\n", b" ").replace(b"\r", b" "),
            b',"status":%d,"answer":' % status, answer,
            b',"outcome":"%s","latency_ms":%r}\n' % (outcome.encode(), latency_ms),
        ))
        if any(secret in line for secret in self._secrets) or (
                any(m in line for m in self._hiding) and self._quoted_escaped(line)):
            return self._redacted(line)
        return line

    def _quoted_escaped(self, line: bytes) -> bool:
        """Whether a string of the line holds the token once its escapes are read: a
        sender's JSON may write `/` as `\\/` (PHP, Java) or any letter as `\\u0073`, and
        the bytes, kept as received, then held the token in a form every JSON reader
        turns back into it. Parsed only for a line with a backslash at all, and every
        member read, also one a later member of the same name overrides (as a dict, the
        parse dropped it, and with it a token spelt there, adv41 I/1)."""
        tokens = [s.decode() for s in self._secrets]

        def holds(value: Any) -> bool:
            if isinstance(value, str):
                return any(t in value or t in _read_escapes(value) for t in tokens)
            if isinstance(value, list | tuple):  # an object is a list of (name, value)
                return any(holds(v) for v in value)
            return False

        try:
            return holds(json.loads(line, object_pairs_hook=list))
        except (ValueError, RecursionError):
            return True  # cannot be read: blank what the bytes show (_redacted)

    def _redacted(self, line: bytes) -> bytes:
        """The line with the token blanked inside its strings only. Replaced in the raw
        bytes, a short token (`42`) also hit numbers (`"n":42`, the time, the latency)
        and left a line that is not JSON, which replay then refused. Parsing costs only
        here: a line that quotes the token (or holds its digits) is rare."""
        token = [s.decode() for s in self._secrets]

        def blank(value: Any) -> Any:
            if isinstance(value, str):
                read = _read_escapes(value)
                if read is not value and any(secret in read for secret in token):
                    value = read  # JSON text in a string (an echo): redacted as read
                for secret in token:
                    value = value.replace(secret, REDACTED)
                return value
            if isinstance(value, dict):
                return {blank(k): blank(v) for k, v in value.items()}
            if isinstance(value, list):
                return [blank(v) for v in value]
            return value

        try:
            # The line's own field names stay: a one-letter token made `detail_type` into
            # `det[redacted]il_type`, a line replay then refused.
            own = {key: blank(value) for key, value in json.loads(line).items()}
            return json.dumps(own, ensure_ascii=False,
                              separators=(",", ":")).encode("utf-8", "surrogatepass") + b"\n"
        except (ValueError, RecursionError):  # cannot be mended: blank the bytes
            for secret in self._secrets:
                line = line.replace(secret, REDACTED.encode())
            return line

    def _write(self, items: list[Item], dropped: int) -> None:
        lines = []
        if dropped:
            self.dropped_total += dropped
            lines.append(json.dumps({"v": VERSION, "kind": "dropped", "at": time.time(),
                                     "count": dropped}).encode() + b"\n")
            if not self._told_behind:
                self._told_behind = True
                self.say(f"hippodrome | recording fell behind the webhook: {dropped} "
                         "deliveries not recorded (a 'dropped' line in the recording marks "
                         "where)")
        lines += map(self._line, items)
        try:
            if self._file is not None and not self._still_there():
                # Deleted or moved away under us (`git clean -xdf`, `mv` to archive it):
                # every later delivery went into that file, and nothing said so (q/10, s/5).
                self.say(f"hippodrome | the recording {self.path} was deleted or moved: "
                         "recording goes on in a new file")
                self._close_file()
            for line in lines:
                if self._file is None or (self._size and self._size + len(line) > self.max_bytes):
                    self._rotate()
                self._file.write(line)
                self._size += len(line)
            self._file.flush()
        except OSError as exc:
            self._stop(exc)

    def _still_there(self) -> bool:
        """The open recording is the file at its name (not deleted, not moved away)."""
        mine = os.fstat(self._file.fileno())
        try:
            there = os.stat(self.path) if self.path is not None else None
        except OSError:
            return False
        return there is not None and (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)

    def _rotate(self) -> None:
        self._close_file()
        self.folder.mkdir(parents=True, exist_ok=True)
        folder = _open_folder(self.folder)
        try:
            names = os.listdir(folder)
            # Names only ever go forward, even when an earlier file of this second was
            # pruned: pruning goes by name, so a reused name would be the first to go.
            stamp = time.strftime(STAMP)
            keys = [order_key(name) for name in names if OURS.match(name)]
            if self.path is not None:
                keys.append(order_key(self.path.name))
            n = max((k[1] for k in keys if k[0] == stamp), default=0) + 1
            name = f"{stamp}.jsonl" if n == 1 else f"{stamp}-{n}.jsonl"
            self._file = os.fdopen(os.open(name, APPEND, 0o644, dir_fd=folder), "ab")
            self.path, self._size = self.folder / name, 0
            self._made.append(name)
            self._prune(folder, [*names, name])
        finally:
            os.close(folder)

    def _prune(self, folder: int, names: list[str]) -> None:
        """Down to the newest `keep`: by name, except that this run's own files are newer
        than any other. Stamp-named files that sort later (copied from a machine whose
        clock is ahead, left from before the clock went back) made the recorder delete
        the recordings of its own run and keep those (adv26 g/8). `folder`: the folder,
        opened without following a link, as every name here is taken in it."""
        made = {name: i for i, name in enumerate(self._made)}
        ours = sorted((name for name in set(names) if OURS.match(name)),
                      key=lambda name: (name in made, made.get(name, 0), order_key(name)))
        for old in ours[:-self.keep]:
            if self.path is None or old != self.path.name:
                with contextlib.suppress(OSError):
                    os.unlink(old, dir_fd=folder)

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _stop(self, exc: OSError) -> None:
        why = exc.strerror or str(exc)
        where = self.path if self._file is not None and self.path else self.folder
        self.enabled = False
        self.trouble = {"error": f"{why} (recording stopped)",
                        "since": round(time.time(), 3), "path": str(where)}
        self._close_file()
        self._queue.clear()
        self._queued_bytes = 0
        self.say(f"hippodrome | cannot record webhook deliveries to {where} ({why}): "
                 "recording stopped; the webhook keeps serving. Free space or fix the "
                 "folder, then restart the stack to record again (or `up --no-record`)")


def _open_folder(path: Path) -> int:
    """The recordings' folder, opened as itself, never through a link: `.hippodrome/events`
    a link (committed to a repository, or planted) had the recorder write there and prune
    the folder it led to down to the newest ten stamp-named files, the user's own among
    them (adv49 B/8)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise OSError(exc.errno, "it is a symbolic link, and Hippodrome writes its own "
                                     "files only, never through a link: remove the link "
                                     "(Hippodrome makes the folder)") from None
        raise


_SHORT_ESCAPES = {'"': b'\\"', "\\": b"\\\\", "/": b"\\/", "\b": b"\\b", "\f": b"\\f",
                  "\n": b"\\n", "\r": b"\\r", "\t": b"\\t"}


_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])')
ESCAPE_LEVELS = 3
"""How many times JSON text quoted inside a string is read again for escapes."""


def _read_escapes(text: str) -> str:
    """`text` with the JSON escapes inside it read (`\\u0053` as `S`), as many times as
    it nests, up to ESCAPE_LEVELS; `text` itself when it has none. A target that echoes
    the raw event in its answer put the token, spelt `Tok3n\\u0053ecret` by the sender,
    in the recording as a string of JSON text, where the redaction looked only for the
    token's plain spelling (adv35 y/5)."""
    for _ in range(ESCAPE_LEVELS):
        if "\\" not in text:
            break
        text = _ESCAPE.sub(lambda m: json.loads(f'"\\{m.group(1)}"'), text)
    return text


def _hiding_escapes(token: str) -> tuple[bytes, ...]:
    """The JSON escapes that could write one of the token's characters: `\\u` any, and
    the short form of each character of the token that has one."""
    return (b"\\u", *sorted({_SHORT_ESCAPES[c] for c in token if c in _SHORT_ESCAPES}))
