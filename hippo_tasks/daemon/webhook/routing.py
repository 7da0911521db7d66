"""Routing an event: the stack's routes, the handler, and what a delivery leaves behind
(the delivery log the dashboard shows, a note in the target service's log).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hippo_tasks.daemon.engine import Engine
from hippo_tasks.daemon.httpcore import ClientGone, HttpError, Json, Request
from hippo_tasks.daemon.webhook.forward import NotSent, TargetPool, forward
from hippo_tasks.daemon.webhook.receive import Refused, read_event
from hippo_tasks.daemon.webhook.receive import detail_type as detail_type_of
from hippo_tasks.daemon.webhook.record import env_number as _env_number
from hippo_tasks.events.recording import REPLAY_HEADER
from hippo_tasks.model.plan import PlannedRoute

DELIVERIES_KEPT = 200
REFUSED_KEPT = 20
"""Requests refused before their event was read (receive.Refused): the last ones, with
a count of all, so a wrong tunnel token can be seen without a flood hiding deliveries."""
NOTE_BATCH_S = 0.05
Deliveries = deque[dict[str, Any]]


MAX_WAIT_S = 86400.0
"""A day: `inf` or 1e10 (no timeout, while debugging a target) made every deadline
overflow the platform's time_t, and each event a 500."""


def _env_seconds(name: str, default: float, say: Callable[[str], None]) -> float:
    """Seconds from the environment, above zero and at most a day (`inf` is a day);
    anything else (`abc`, `-1`, `0`, `nan`) is the default, said in the daemon's output as the
    recording settings are (it fell back in silence)."""
    return _env_number(name, default, 1e-3, say, ceiling=MAX_WAIT_S)


def _shown(detail_type: str, token: str | None = None, limit: int = 256) -> str:
    """A detail-type safe for a log line or the dashboard: one line, bounded, encodable,
    and without the webhook token, which the recording already blanked while the
    service's log and the deliveries list showed it (z/12)."""
    if token and token in detail_type:
        detail_type = detail_type.replace(token, "[redacted]")
    text = detail_type if detail_type.isprintable() else json.dumps(detail_type)[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."


class Webhook:
    """The webhook's per-daemon state: pool, timeouts, delivery log, pending log notes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.timeout = _env_seconds("HIPPODROME_WEBHOOK_TIMEOUT", 5.0, engine.note)
        self.read_timeout = _env_seconds("HIPPODROME_WEBHOOK_READ_TIMEOUT", 10.0, engine.note)
        self.pool = TargetPool(self.timeout)
        self.deliveries: Deliveries = deque(maxlen=DELIVERIES_KEPT)
        self.refused: Deliveries = deque(maxlen=REFUSED_KEPT)
        self.refused_count = 0
        self._notes: list[tuple[str, str]] = []
        self._notes_lock = threading.Lock()

    def check_running(self, planned: PlannedRoute) -> int | None:
        """Only to a process of the service's: stopped, failed or backing off, its port
        may be any program's, and the event went to whatever held it, as `forwarded`.
        A 503, as for a refused connection: EventBridge retries it. Returns the pid the
        event goes to (None for an external service)."""
        name = planned.route.service
        snap = self.engine.stack.get(name).snapshot()
        if snap.external or snap.state in ("running", "starting"):
            return snap.pid
        coming = snap.busy in ("start", "restart") or (
            self.engine.stack.restarting_all and "restart requested" in (snap.reason or ""))
        if coming or not self.engine.accepting():
            # "start it: hd start" while a restart was bringing it back (adv35 y/2), a
            # restart of the whole stack too (adv43 E/3)
            doing = "a restart is under way" if snap.busy == "restart" else \
                "a start is under way" if snap.busy == "start" and \
                not self.engine.stack.restarting_all else \
                "a restart of the stack is under way" if coming else \
                "the stack is shutting down"
            advice = "send it again once it is running (`hd status` shows it)" \
                if coming else "nothing takes events now"
        elif snap.state == "backoff":  # "it is backoff ... start it" (adv60 6)
            doing, advice = ("it ended and restarts by itself once its backoff is over",
                             "send it again once it is running (`hd status` shows when)")
        else:
            doing, advice = "", f"start it: `hd start --service {name}`"
        state = "in a restart backoff" if snap.state == "backoff" else snap.state
        raise HttpError(503, f"Service unavailable: {name} at {planned.target}"
                             f"{planned.route.path}: it is {state}"
                             f"{f' ({doing})' if doing else ''}, so nothing was sent to its "
                             f"port ({advice})")

    def cut_off(self, planned: PlannedRoute, pid: int | None, error: HttpError) -> HttpError:
        """`error` (the target closed, reset or garbled its answer) said as what happened
        when Hippodrome itself stopped or restarted the target meanwhile: it blamed the
        service, "perhaps failing while it handled the event", sending the user to look
        for a crash that was a `hd restart`, `hd stop` or `hd down` (adv35 y/2)."""
        if error.status not in (502, 503):
            return error
        snap = self.engine.stack.get(planned.route.service).snapshot()
        if isinstance(error, NotSent):
            # Refused: nothing of the event was read. A restart's new process not yet
            # listening was said as "ended its process while it handled the event ... it
            # may have acted on it", 4-10 times a restart (adv43 E/1).
            if snap.state == "starting" and snap.busy in ("start", "restart"):
                # A whole-stack restart brings it back by a start: said "a start is
                # under way", as a plain `hd start` is (adv49 B/2).
                doing = "a restart of the stack" if snap.busy == "start" and \
                    self.engine.stack.restarting_all else f"a {snap.busy}"
                return HttpError(error.status, f"Service unavailable: "
                                 f"{planned.route.service} at {planned.target}"
                                 f"{planned.route.path}: it is starting ({doing} is "
                                 "under way) and does not listen yet, so nothing was sent "
                                 "(send it again once it is running: `hd status` shows it)",
                                 close=error.close)
            return error
        shutting = not self.engine.accepting()
        # A whole-stack restart's stop half ended it, or, read a moment later on a busy
        # machine, its start half is bringing it back: said "a start of it by Hippodrome
        # ended its process" (a CI rehearsal, once the stop path had become faster).
        by_stack = self.engine.stack.restarting_all and (
            "restart requested" in (snap.reason or "") or snap.busy == "start")
        asked = snap.busy in ("stop", "restart") or "requested" in (snap.reason or "") \
            or by_stack
        if not shutting and not (asked and (snap.pid != pid or snap.state != "running")):
            return error
        did = "the stack's shutdown stopped it" if shutting else \
            "a restart of the stack by Hippodrome ended its process" if by_stack \
            else f"a {snap.busy or 'stop or restart'} of it by Hippodrome ended its process"
        return HttpError(error.status, f"Service unavailable: {planned.route.service} at "
                                       f"{planned.target}{planned.route.path}: {did} while it "
                                       "handled the event; not sent again, as it may have "
                                       "acted on it (`hd status` shows it now)", close=error.close)

    def match(self, detail_type: str) -> PlannedRoute | None:
        for planned in self.engine.plan.routes:
            if detail_type.startswith(planned.route.detail_type_prefix):
                return planned
        return None


    # ---- what is left behind ---------------------------------------------------------
    def record(self, at: float, began: float, detail_type: str, planned: PlannedRoute | None,
               status: int, outcome: str, payload: dict[str, Any],
               event: bytes | None = None, answer: bytes = b"") -> None:
        """The delivery log, the recording (when the event was read), the service's log."""
        latency_ms = round((time.perf_counter() - began) * 1000, 3)
        shown = _shown(detail_type, self.engine.webhook_token)
        self.deliveries.append({
            "at": at, "detail_type": shown,
            "target": planned.target if planned is not None else None,
            "status": status, "latency_ms": latency_ms, "outcome": outcome,
        })
        if event is not None:
            self.engine.recorder.add(at, latency_ms, detail_type, planned, status, outcome,
                                     answer, event)
        if planned is None or planned.route.service not in self.engine.stack.services:
            return
        if outcome == "forwarded":
            note = (f"webhook: {shown} forwarded to {planned.target}{planned.route.path}: "
                    f"{status} in {latency_ms:.1f} ms")
        else:
            note = (f"webhook: Failed to forward event to {planned.target} ({shown}): "
                    f"{payload.get('error')}")
        self._note(planned.route.service, note)

    def note_refused(self, at: float, refused: Refused) -> None:
        self.refused_count += 1  # request threads: an undercount at worst, never a crash
        self.refused.append({"at": at, "status": refused.status, "error": refused.message})

    def _note(self, service: str, text: str) -> None:
        with self._notes_lock:
            first = not self._notes
            self._notes.append((service, text))
        loop = self.engine.loop
        if not first:
            return
        try:
            if loop is None:
                raise RuntimeError("no loop")
            loop.call_soon_threadsafe(loop.call_later, NOTE_BATCH_S, self._flush)
        except RuntimeError:  # the loop is gone: the daemon is exiting, notes go with it
            with self._notes_lock:
                self._notes.clear()

    def _flush(self) -> None:
        with self._notes_lock:
            notes, self._notes = self._notes, []
        for service, text in notes:
            self.engine.hub.system(service, text)


def eventbridge(req: Request) -> Json:
    """`POST /webhook/eventbridge`: receive, route, forward, record, answer."""
    began, at = time.perf_counter(), time.time()
    hook = req.app.webhook
    detail_type, planned, close = "", None, False
    raw: bytes | None = None
    try:
        event, raw = read_event(req, hook.engine.webhook_token, hook.read_timeout,
                                hook.engine.url)
        detail_type = detail_type_of(event)
        planned = hook.match(detail_type)
        if planned is not None and planned.route.service not in hook.engine.stack.services:
            # Not this run's (left out by the profile, cell or --only): its port may be
            # anyone's, and the event went to whatever held it.
            status, payload, outcome = 200, {
                "status": "ignored",
                "reason": f"the route for {planned.route.detail_type_prefix!r} names "
                          f"'{planned.route.service}', which is not part of this run (left "
                          "out by the profile, cell or --only); not forwarded"}, "ignored"
            planned = None
        elif planned is None:
            status, payload, outcome = 200, {
                "status": "ignored",
                "reason": f"No route configured for detail-type: {detail_type}"}, "ignored"
        else:
            pid = hook.check_running(planned)
            try:
                status, payload = forward(hook.pool, planned, raw)
            except HttpError as exc:
                raise hook.cut_off(planned, pid, exc) from None
            outcome = "forwarded"
    except ClientGone:
        raise
    except Refused as exc:
        hook.note_refused(at, exc)
        return Json({"error": exc.message}, exc.status, exc.close)
    except HttpError as exc:
        status, payload, outcome, close = exc.status, {"error": exc.message}, "error", exc.close
    # Recorded before answering: a client that has its answer finds it in the log.
    sent_keys = req.headers.get_all(REPLAY_HEADER) or []  # each one the key (adv47 G/6)
    if raw is not None and sent_keys and all(k == hook.engine.replay_key for k in sent_keys):
        # A replay is not recorded again: the file would chase itself. Only the key this
        # daemon made says so: any value did, and a sender could keep real deliveries
        # out of the recording (adv46 H/8).
        raw = None
    answer = json.dumps(payload).encode()  # once, for the client and the recording
    hook.record(at, began, detail_type, planned, status, outcome, payload, raw, answer)
    return Json(payload, status, close, answer)


def deliveries(req: Request) -> Json:
    """`GET /api/webhook/deliveries`: the last ones, newest first; the requests refused
    before their event was read, apart."""
    hook = req.app.webhook
    return Json({"deliveries": list(reversed(list(hook.deliveries))),
                 "refused": {"count": hook.refused_count,
                             "last": list(reversed(list(hook.refused)))}})
