"""The control API's handlers (DESIGN section 4): thin over `StackCommands`.

Each takes a `Request` and returns a response value; errors are raised (`HttpError`,
or the command interface's `HippoError`s) and rendered by the server.
"""

from __future__ import annotations

from typing import Any

from hippo_tasks.action_outcome import problems
from hippo_tasks.daemon.httpcore import HttpError, Json, Request, decode_json, json_type
from hippo_tasks.numbers import plain_int

MAX_BODY = 1024 * 1024
READ_TIMEOUT_S = 10.0
"""A control request's body arrives within this, or the client gets 408."""


def _int_arg(q: dict[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(key)
    if raw is None:
        return default
    try:
        value = plain_int(raw)
    except ValueError:
        raise HttpError(400, f"'{key}' must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise HttpError(400, f"'{key}' must be between {lo} and {hi}")
    return value


def only_query(req: Request, takes: tuple[str, ...], what: str) -> None:
    """A query parameter a route does not take is a 400 naming it and those it takes:
    `?cascde=1` was a plain restart (z/7), and `/logs?error=1` answered every line,
    unfiltered, to a script checking for none (adv24 b/5)."""
    stray = sorted(set(req.query) - set(takes))
    if stray:
        said = ", ".join(repr(k[:40]) for k in stray[:5])
        raise HttpError(400, f"unknown query parameter(s) {said}; {what} takes "
                             + (", ".join(takes) if takes else "none"))


LOG_QUERY = ("lines", "after", "before", "since", "grep", "regex", "errors")


def body_object(req: Request, takes: tuple[str, ...] = (),
                what: str = "this action",
                query: tuple[str, ...] | None = None) -> dict[str, Any] | None:
    """An action's optional body: nothing, or a JSON object of the fields it `takes`.
    A field it does not take is a 400 naming it: `{"cascde": true}` restarted the one
    service alone, as if the field had not been sent. So is a query parameter it does
    not take (`?cascde=1` was a plain restart, 200 `ok: true`: z/7)."""
    if query is not None:  # the body's fields only: `?filter=T` was taken, then ignored
        in_body = sorted(set(req.query) & set(takes) - set(query))  # (adv25 e/7)
        if in_body:
            raise HttpError(400, f"{', '.join(map(repr, in_body))} goes in the body of "
                                 f"{what} (a JSON object), not in its query")
    only_query(req, takes if query is None else query, what)
    raw = req.body.read(MAX_BODY, READ_TIMEOUT_S, noun="the request")
    if not raw.strip():
        return None
    value = decode_json(raw, "the request", once_each=True)
    if not isinstance(value, dict):
        raise HttpError(400, f"Request body must be a JSON object or empty, got "
                             f"{json_type(value)}")
    unknown = sorted(set(value) - set(takes))
    if unknown:
        said = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise HttpError(400, f"unknown field(s) {said}; {what} takes "
                             + (", ".join(takes) if takes else "no field (send {} or nothing)"))
    return value


def healthz(req: Request) -> Json:
    return Json({"status": "ok"})


def status(req: Request) -> Json:
    only_query(req, (), "GET /api/status")  # alone of the routes, it ignored them (adv59)
    return Json(req.app.commands.status())


def why(req: Request) -> Json:
    return Json(req.app.commands.why(req.params["name"]))


def _bool_arg(q: dict[str, str], key: str) -> bool:
    """Absent is no; given, it must say which (`?cascade=` was taken as no)."""
    if key not in q:
        return False
    raw = q[key].strip().lower()
    if raw in ("0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise HttpError(400, f"'{key}' must be 1 or 0 (true or false, yes or no), got "
                         f"{q[key][:40]!r}")  # as sent: ' ' was quoted as '' (adv25 e/5)


def logs(req: Request) -> Json:
    """`?lines=N` newest lines, or `&after=SEQ` the ones after; filters `before=SEQ`,
    `since=TIME`, `grep=TEXT`, `regex=RE`, `errors=1` (daemon/logquery.py)."""
    only_query(req, LOG_QUERY, "a logs query")
    q = req.query
    if "since" in q and not q["since"].strip():  # every other parameter refuses it
        raise HttpError(400, "'since' is empty: give a time (Unix seconds, ISO 8601, or "
                             "90s/5m/2h ago), or leave it out")
    lines = _int_arg(q, "lines", 100, 0, 100_000)
    after = _int_arg(q, "after", -1, -1, 2**62)
    before = _int_arg(q, "before", 0, 1, 2**62)  # 0 read as absent: the newest (m/7)
    encoded, sent = req.app.commands.logs_json(
        req.params["name"], lines, None if after < 0 else after,
        before=before or None, since=q.get("since") or None, grep=q.get("grep", ""),
        regex=q.get("regex", ""), errors=_bool_arg(q, "errors"))
    return Json(None, encoded=encoded, done=sent)


def judged(verb: str, name: str | None, cascade: bool, result: dict[str, Any]) -> Json:
    """The rows, with `ok` and the `problems` the command line and MCP would name: a
    restart whose new process exited 3 was a plain 200 here, while `hd restart` exited
    1 and MCP said `ok: false` (action_outcome)."""
    found = problems(verb, name, cascade, result["services"])
    return Json({**result, "ok": not found, "problems": [p.text for p in found]})


def start(req: Request) -> Json:
    body_object(req)
    name = req.params.get("name")
    return judged("start", name, False, req.app.commands.start(name, sent=req.received))


def stop(req: Request) -> Json:
    body_object(req)
    name = req.params.get("name")
    return judged("stop", name, False, req.app.commands.stop(name, sent=req.received))


def restart(req: Request) -> Json:
    """`{"cascade": true}` in the body (or `?cascade=1`): then its dependants, in order."""
    body = body_object(req, ("cascade",), "a restart") or {}
    if "cascade" in body and "cascade" in req.query:  # one of them won, silently (s/1)
        raise HttpError(400, "'cascade' given in both the query and the body: give it once")
    cascade = body.get("cascade", _bool_arg(req.query, "cascade"))  # ?cascade=banana: 400
    if not isinstance(cascade, bool):
        raise HttpError(400, f"'cascade' must be true or false, got {json_type(cascade)}")
    name = req.params.get("name")
    if cascade and name is None:
        raise HttpError(400, "'cascade' needs one service: POST /api/services/NAME/restart")
    return judged("restart", name, cascade,
                  req.app.commands.restart(name, cascade=cascade, sent=req.received))


def shutdown(req: Request) -> Json:
    body_object(req)
    return Json(req.app.commands.shutdown(), status=202)
