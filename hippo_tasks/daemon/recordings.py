"""`GET /api/events/recordings` and `POST /api/events/recordings/NAME/replay`: the
webhook's recordings for the page (and any client), and replaying one from the daemon.

The daemon replays through its own webhook over loopback HTTP, with its own token, so
the routing and the guard are exactly those of a delivery from outside, and a stack
started with `--enable-events` (whose random token nobody else knows) can be replayed.
Names are checked twice against escaping the folder: the pattern (one path segment)
and the resolved path's parent. One replay at a time per daemon (409 otherwise); the
answer comes when the replay is done, so the API replays as fast as possible unless
the body asks for a `speed`.
"""

from __future__ import annotations

import threading
from typing import Any

from hippo_tasks.daemon.api import body_object
from hippo_tasks.daemon.httpcore import HttpError, Json, Request, json_type, peer_gone
from hippo_tasks.errors import RecordingError
from hippo_tasks.events.recording import SAFE_NAME, list_recordings, named

REPLAY_FIELDS = ("filter", "speed", "as_fast_as_possible", "ignore")
LONGEST_S = 600.0
"""The longest paced replay the daemon runs: it holds the one replay slot (409 for every
other) until done, or until its client hangs up or `hd down`. `speed: 0.001` on a
recording spanning 10 minutes held it for 7 days after its client had given up."""
_replaying = threading.Lock()
"""One daemon per process: a module lock is the daemon's."""


def listing(req: Request) -> Json:
    recorder = req.app.engine.recorder
    current = recorder.path.name if recorder.path is not None else None
    items = [{**r.as_json(), "current": r.name == current}
             for r in list_recordings(recorder.folder)]
    return Json({**recorder.state(), "recordings": items})


def _options(body: dict[str, Any]) -> tuple[str | None, float | None, tuple[str, ...]]:
    pattern = body.get("filter")
    if pattern is not None and not isinstance(pattern, str):
        raise HttpError(400, f"'filter' must be a detail-type (a string), got "
                             f"{json_type(pattern)}")
    if pattern == "":  # a script's unset variable: it replayed every delivery (adv49 B/3)
        raise HttpError(400, "'filter' is empty, which names nothing: leave it out to "
                             "replay every delivery")
    speed = body.get("speed")
    if speed is not None and (isinstance(speed, bool) or not isinstance(speed, int | float)):
        raise HttpError(400, f"'speed' must be a number, got {json_type(speed)}")
    fast = body.get("as_fast_as_possible", speed is None)
    if not isinstance(fast, bool):
        raise HttpError(400, f"'as_fast_as_possible' must be true or false, got "
                             f"{json_type(fast)}")
    if fast and speed is not None:
        raise HttpError(400, "give 'speed' or 'as_fast_as_possible', not both")
    ignore = body.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(k, str) for k in ignore):
        raise HttpError(400, "'ignore' must be a list of field names")
    if fast:
        return pattern, None, tuple(ignore)
    return pattern, 1.0 if speed is None else float(speed), tuple(ignore)


def replay_one(req: Request) -> Json:
    from hippo_tasks.events.replay import (
        ReplayReport,
        ReplayStopped,
        WebhookUnreachable,
        replay,
    )

    engine = req.app.engine
    pattern, speed, ignore = _options(body_object(req, REPLAY_FIELDS, "a replay",
                                                  query=()) or {})
    name = req.params["rec"]
    if not SAFE_NAME.match(name):
        raise HttpError(400, f"not a recording name: {name!r} (names look like "
                             "20260101-120000.jsonl; GET /api/events/recordings lists them)")
    try:
        path = named(engine.recorder.folder, name)
    except RecordingError as exc:
        raise HttpError(404, exc.message()) from None
    engine.check_accepting()
    if not _replaying.acquire(blocking=False):
        raise HttpError(409, "a replay is already running in this daemon; wait for it")
    def not_too_long(report: ReplayReport) -> None:
        if speed is not None and report.span_s / speed > LONGEST_S:
            raise HttpError(400, f"at speed {speed:g} this replay would take "
                                 f"{report.span_s / speed:,.0f} s (its deliveries span "
                                 f"{report.span_s:,.0f} s); the daemon runs at most "
                                 f"{LONGEST_S:.0f} s: raise 'speed', send "
                                 "'as_fast_as_possible', or run `hd events.replay`, which "
                                 "Ctrl+C stops")

    def stop() -> str | None:
        if peer_gone(req.body.sock):
            return "its client went away"
        return None if engine.accepting() else "the daemon is shutting down"

    try:
        report = replay(path, url=engine.url, token=engine.webhook_token,
                        replay_key=engine.replay_key, filter=pattern,
                        speed=speed, ignore=ignore, timeout=req.app.webhook.timeout + 5,
                        on_start=not_too_long, stop=stop)
    except WebhookUnreachable as exc:
        raise HttpError(503, f"the webhook stopped answering after {exc.sent} deliveries: "
                             f"{exc.reason}") from None
    except ReplayStopped as exc:
        engine.note(f"hippodrome | replay of {name} stopped after {exc.sent} "
                    f"deliveries: {exc.reason}")
        raise HttpError(503, f"the replay stopped after {exc.sent} deliveries: "
                             f"{exc.reason}") from None
    finally:
        _replaying.release()
    return Json(report.to_json())
