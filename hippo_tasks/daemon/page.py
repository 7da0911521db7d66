"""The dashboard page (`GET /`) and its live feed (`GET /api/events`).

The page is one static file, read once; each answer of `GET /` carries the current
snapshot in a JSON block, so the rows are drawn as the script runs, with no second
round trip. To stay live without polling, the page then keeps one server-sent-events
stream open. The stream opens with a snapshot too (it may be a reconnect, or another
daemon), then carries only
*differences*: status rows whose content changed, and "service X now has lines up to
seq N". The page then fetches log lines itself (`/logs?after=SEQ`), and only for panes
the user has expanded, so a busy service costs nothing while its pane is closed.

Each stream runs in its own request thread (ThreadingHTTPServer) and shares no lock
with other clients, so a slow browser only ever blocks itself. It sleeps on the log
hub's condition (every log line and every state change notifies it), sends at most
`MIN_INTERVAL` apart however busy the logs are, and ends when the client goes away,
a write stalls for `WRITE_TIMEOUT`, or the daemon starts shutting down.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from hippo_tasks.daemon.engine import Engine
from hippo_tasks.daemon.httpcore import Json, Raw, Request, Sink, Stream
from hippo_tasks.daemon.webhook.routing import Deliveries
from hippo_tasks.errors import ShutdownInProgressError
from hippo_tasks.supervision.timeline import path_json

if TYPE_CHECKING:
    from hippo_tasks.daemon.app import App

MIN_INTERVAL = 0.25
"""Seconds between two updates on one stream: live enough to read, cheap under floods."""
IDLE_WAKE = 1.0
"""Longest sleep without a log line: bounds how late a health flip or a shutdown is seen."""
PING_EVERY = 15.0
"""A comment line this often on an idle stream, so a vanished peer is noticed."""
WRITE_TIMEOUT = 10.0
"""A browser that reads nothing for this long is dropped instead of holding a thread."""
MAX_STREAMS = 64
"""Open streams per daemon; each is a thread, so a runaway client cannot exhaust them."""
RETRY_MS = 2000
"""Reconnect delay the browser is told to use when a stream ends."""

_streams = threading.BoundedSemaphore(MAX_STREAMS)
_giving_way: list[threading.Event] = []
"""One per open stream, oldest first: set, that stream ends to make room for a newer one."""
_giving_way_lock = threading.Lock()


BOOT = b'<script type="application/json" id="boot">null</script>'
"""The block of page.html that each answer fills with the current snapshot."""


class Page(NamedTuple):
    head: bytes
    tail: bytes
    csp: str


def _csp_hashes(html: str, tag: str) -> str:
    """Hashes of the page's own inline blocks: they run, anything injected would not."""
    import base64
    import hashlib

    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()
                    + "'" for b in blocks)


@functools.cache
def page() -> Page:
    """Read once per daemon: the file cannot change under an installed package. Imported
    here: importlib.resources pulls zipfile and base64 (0.4 MB of the daemon's private
    memory, measured) for a page a stack may never be asked for."""
    import importlib.resources

    body = importlib.resources.files("hippo_tasks.daemon").joinpath("page.html").read_bytes()
    html = body.decode()
    csp = ("default-src 'none'; "
           f"script-src {_csp_hashes(html, 'script')}; "
           f"style-src {_csp_hashes(html, 'style')}; "
           "connect-src 'self'; img-src 'self' data:; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    head, found, tail = body.partition(BOOT)
    if not found:
        raise RuntimeError("page.html has lost its boot block")
    return Page(head + BOOT[:-len(b"null</script>")], b"</script>" + tail, csp)


def _boot_json(data: Any) -> bytes:
    """JSON that cannot end its <script> block: every '<' is written as an escape."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").encode()


def index(req: Request) -> Raw:
    p = page()
    app = req.app
    snapshot = Tracker(app.engine, app.webhook.deliveries).snapshot(app.commands.status())
    return Raw(p.head + _boot_json(snapshot) + p.tail, "text/html; charset=utf-8", {
        "Content-Security-Policy": p.csp, "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer"})


# ---- the live feed -------------------------------------------------------------------

def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Everything but uptime, which the page counts itself: a running row is not a change."""
    return tuple(v for k, v in row.items() if k != "uptime_s")


def _webhook_marker(deliveries: Deliveries) -> list[Any] | None:
    """Cheap fingerprint of the webhook's delivery log; the page refetches when it moves.

    The deque is appended to by other request threads: single-item reads are atomic
    under the GIL, and an emptied deque between the checks is simply "no marker".
    """
    try:
        if not deliveries:
            return [0, None, None]
        return [len(deliveries), deliveries[0].get("at"), deliveries[-1].get("at")]
    except (IndexError, AttributeError, RuntimeError):
        return None


class Tracker:
    """What one stream has told its page so far; `changes()` answers only what moved."""

    def __init__(self, engine: Engine, deliveries: Deliveries) -> None:
        self.engine = engine
        self.deliveries = deliveries
        self.rows: dict[str, tuple[Any, ...]] = {}
        self.seqs: dict[str, int] = {}
        self.webhook: list[Any] | None = None
        self.problems: dict[str, Any] = {}
        self.path: list[list[Any]] = []

    def snapshot(self, status: dict[str, Any]) -> dict[str, Any]:
        hub = self.engine.hub
        self.rows = {r["name"]: _row_key(r) for r in status["services"]}
        self.seqs = {name: hub.last_seq(name) for name in self.rows}
        self.webhook = _webhook_marker(self.deliveries)
        self.problems = status.get("problems") or {}
        self.path = status.get("critical_path") or []
        return {**status, "daemon_started_at": self.engine.started_at,
                "seqs": self.seqs, "webhook": self.webhook}

    def changes(self) -> dict[str, Any] | None:
        hub = self.engine.hub
        out: dict[str, Any] = {}
        every = self.engine.stack.status()
        rows = [r for r in every if self.rows.get(str(r["name"])) != _row_key(r)]
        for r in rows:
            self.rows[str(r["name"])] = _row_key(r)
        if rows:
            out["services"] = rows
            path = path_json(every)
            if path != self.path:
                out["critical_path"] = self.path = path
        seqs = {}
        for name in self.rows:
            seq = hub.last_seq(name)
            if seq != self.seqs.get(name):
                seqs[name] = self.seqs[name] = seq
        if seqs:
            out["seqs"] = seqs
        marker = _webhook_marker(self.deliveries)
        if marker != self.webhook:
            out["webhook"] = self.webhook = marker
        problems = self.engine.problems()
        if _problem_key(problems) != _problem_key(self.problems):
            out["problems"] = self.problems = problems
        return out or None


def _problem_key(problems: dict[str, Any]) -> tuple[Any, ...]:
    """A disk problem is news when it starts, ends, or drops more lines."""
    return tuple((k, v.get("error"), v.get("lines_dropped")) for k, v in sorted(problems.items()))


def _shutting_down(engine: Engine) -> bool:
    try:
        engine.check_accepting()
    except ShutdownInProgressError:
        return True
    return False


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def stream(sink: Sink, app: App, now: Callable[[], float] = time.monotonic,
           give_way: threading.Event | None = None) -> None:
    """Serve one event stream until the peer leaves, the daemon shuts down, or a newer
    stream needs its place (`give_way`)."""
    engine = app.engine
    tracker = Tracker(engine, app.webhook.deliveries)
    sink.write(f"retry: {RETRY_MS}\n\n".encode()
               + _event("snapshot", tracker.snapshot(app.commands.status())))
    last_sent = last_write = now()
    while True:
        engine.hub.wait_for_lines(IDLE_WAKE)
        if _shutting_down(engine):
            sink.write(_event("bye", {"reason": "daemon shutting down"}))
            return
        if sink.peer_gone():
            return
        if give_way is not None and give_way.is_set():
            sink.write(_event("evicted", {"reason": f"a newer page took this one's live "
                                                    f"updates (at most {MAX_STREAMS} open)"}))
            return
        pause = last_sent + MIN_INTERVAL - now()
        if pause > 0:
            time.sleep(pause)
        update = tracker.changes()
        if update is not None:
            update["uptime_s"] = round(time.time() - engine.started_at, 1)
            sink.write(_event("update", update))
            last_sent = last_write = now()
        elif now() - last_write >= PING_EVERY:
            sink.write(b": ping\n\n")
            last_write = now()


def events(req: Request) -> Json | Stream:
    """At MAX_STREAMS, the oldest stream gives way (its page says so and waits to be
    looked at again): a 65th tab had a 503 its EventSource cannot read, and said
    "daemon not reachable" for ever while the forgotten tabs kept every slot (adv28
    m/2). The connection cap does the same with the oldest stream."""
    req.app.engine.check_accepting()
    if not _streams.acquire(blocking=False):
        with _giving_way_lock:
            oldest = next((e for e in _giving_way if not e.is_set()), None)
            if oldest is not None:
                oldest.set()
        if not _streams.acquire(timeout=IDLE_WAKE + 1.0):  # it sees it within IDLE_WAKE
            return Json({"error": f"too many open event streams (limit {MAX_STREAMS}); "
                                  "close a dashboard tab"}, status=503)
    give_way = threading.Event()
    with _giving_way_lock:
        _giving_way.append(give_way)

    def done() -> None:
        with _giving_way_lock:
            _giving_way.remove(give_way)
        _streams.release()

    app = req.app
    return Stream(lambda sink: stream(sink, app, give_way=give_way),
                  "text/event-stream; charset=utf-8", {"X-Accel-Buffering": "no"},
                  done=done, write_timeout=WRITE_TIMEOUT)
