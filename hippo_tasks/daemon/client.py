"""How tasks talk to a running daemon: find it in the registry, call its HTTP API.

Over a plain socket (daemon/client_http.py): a task like `hd status` should start fast.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from hippo_contract.http_client import BadAnswer
from hippo_contract.webhook import TOKEN_HEADER, WEBHOOK_PATH
from hippo_tasks.daemon import SHUTDOWN_WORDS
from hippo_tasks.daemon.answer_shape import action_problem, status_problem, why_problem
from hippo_tasks.daemon.client_http import exchange
from hippo_tasks.errors import (
    HippoError,
    RequestTimeoutError,
    StackShutDownError,
    UnknownServiceError,
    UsageError,
)
from hippo_tasks.errors.daemon import (
    DaemonEndedError,
    DaemonNotRunningError,
    DaemonShutDownError,
    DaemonUnreachableError,
    StrandedDaemonError,
)
from hippo_tasks.registry.store import (
    Registry,
    daemon_alive,
    daemon_log_writers,
    stranger_daemon,
)
from hippo_tasks.supervision.scope import is_stopped, start_ticks

JSON = {"Content-Type": "application/json"}
LOG_ANSWER_WITHIN_S = 35.0
"""How long a log query is waited for (`hd logs --timestamps`, MCP's `logs`): past the
daemon's own limit on its wait (daemon/commands.py LOG_WAIT_S, 20 s, then a 503 that
says why) and its 1 s scan. At 10 s, `hd logs --timestamps` gave up on a daemon busy
with other log queries, said it did not answer and advised `hd down --force` (adv42
T/2). A stopped daemon is still found out within STOPPED_SHORT_S (passed as
`stopped_for`), a silent one within ~10 s (_watch)."""
BUSY_RETRY_S = 5.0
"""How long a request the daemon turned away at its connection cap (503
TooManyConnections: nothing was done) is sent again, every BUSY_PAUSE_S: the cap clears
as connections end, and `hd logs -f --timestamps` ended (exit 1) on one such answer in a
burst, `hd status` on another, where the answer itself said to try again (adv52 J/3)."""
BUSY_PAUSE_S = 0.25
LOOK_EVERY_S = 10.0
"""A wait longer than this looks after the daemon meanwhile (DaemonClient._watch): the
10 s that `status` gives it to answer, and `up` and `down` give a stopped one."""
STOPPED_SHORT_S = 2.0
"""A short request (`status`, the look before an action) gives up on a daemon stopped
this long: it waited out its whole 10 s timeout, though the stop was plain at once
(adv30 p's notes); a moment's stop (a debugger's step) still gets its answer."""
STOPPED_WORDS = ("it is stopped (SIGSTOP, Ctrl+Z or a debugger): `kill -CONT {pid}` lets it "
                 "answer")


def _last_line_is_shutdown(log: Path) -> bool:
    """A crash writes its traceback after that line; a kill -9 before a shutdown leaves
    some other line last."""
    from hippo_tasks.model.textfile import open_regular_for_reading

    try:  # a named pipe put there would hold this command for ever
        with open_regular_for_reading(log) as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read()
    except OSError:
        return False
    lines = [line for line in tail.splitlines() if line.strip()]
    return bool(lines) and lines[-1].startswith(SHUTDOWN_WORDS.encode())


def _not_json(name: str) -> Any:
    """NaN and Infinity, which Python's json takes and JSON has not (`hd status --json`
    printed them on)."""
    raise ValueError(f"{name} is not JSON")


class DaemonClient:
    def __init__(self, url: str, pid: int, stack_file: str | None = None,
                 foreground: bool = False, log: Path | None = None) -> None:
        """`stack_file`: the registry's stamp of the stack file the daemon read;
        `foreground`: the daemon of a foreground `hd up`, which writes to its terminal;
        `log`: the detached daemon's daemon.log, whose last words tell a shutdown from a
        crash."""
        self.url = url.rstrip("/")
        self.pid = pid
        self.stack_file = stack_file
        self.foreground = foreground
        self.log = log
        self._ticks = start_ticks(pid)

    @classmethod
    def for_project(cls, root: Path, waited: bool = False) -> DaemonClient:
        """`waited`: for an `up` that was starting the stack, once already."""
        registry = Registry(root)
        data = registry.read()
        writing: list[int] = []
        if not daemon_alive(data):
            from hippo_tasks.registry.lifecycle_lock import wait_for_up

            if not waited and wait_for_up(root):
                return cls.for_project(root, waited=True)
            data, writing = _rewritten_by_its_daemon(registry, data)
        if not daemon_alive(data) or stranger_daemon(data, root):
            # The clean-up machinery (ownership, signals) only when there is a corpse.
            from hippo_tasks.registry.cleanup import clean_stale

            # A registry moved aside as corrupt is said here, or `status` would hide it.
            notes = registry.warnings + clean_stale(registry, data)
            if writing and not daemon_alive(data):  # still writing, past the wait for it
                raise StrandedDaemonError(str(root), writing)  # to write here again
            detail = "; ".join(notes) if notes else ""
            gone = data.get("daemon") if not stranger_daemon(data, root) else None
            raise DaemonNotRunningError(str(root), detail, gone.get("pid") if isinstance(
                gone, dict) and isinstance(gone.get("pid"), int) else None)
        daemon = data["daemon"]
        return cls(daemon["url"], int(daemon["pid"]), daemon.get("stack_file"),
                   daemon.get("foreground") is True, registry.path.parent / "daemon.log")

    def call(self, method: str, path: str, body: Any = None, timeout: float = 310.0,
             each_second: Callable[[], None] | None = None,
             stopped_for: float | None = None) -> Any:
        """`each_second`: called each second of a long wait, after the look at the daemon
        (`_watch`). `stopped_for`: how long a stopped daemon is waited on (a long wait's
        look, LOOK_EVERY_S, by default; STOPPED_SHORT_S for a query that waits long
        only on a busy daemon, as a log query does)."""
        data = None if body is None else json.dumps(body).encode()
        give_up = time.monotonic() + BUSY_RETRY_S
        while True:
            status, raw = self._exchange(method, path, data, JSON, timeout, each_second,
                                         stopped_for)
            if status != 503 or time.monotonic() >= give_up or \
                    b'"TooManyConnections"' not in raw:
                break
            time.sleep(BUSY_PAUSE_S)
        if status < 400:
            try:
                return json.loads(raw or b"null", parse_constant=_not_json)
            except (ValueError, RecursionError):  # tracebacks (adv26 f/1, adv27 j/3)
                raise DaemonUnreachableError(self.url, self.pid, (
                    f"it answered {method} {path} with {status} and a body that is not "
                    "JSON (another program on its port)")) from None
        payload = _json_or_text(raw)
        message = payload.get("error", str(payload)) if isinstance(payload, dict) else payload
        if status == 404 and isinstance(payload, dict) and \
                payload.get("type") == "UnknownServiceError":
            raise _unknown_service(payload, path)
        if status == 404 and path.startswith("/api/services/"):
            # A name no route can hold (a space, a dot, empty): no such service either.
            raise self._no_such_service(unquote(path.split("/")[3]))
        if status == 504:
            raise RequestTimeoutError(f"{method} {path}", timeout)
        if isinstance(payload, dict) and payload.get("type") in ("StackShutDownError",
                                                                 "ShutdownInProgressError"):
            # exit 5, sent before the shutdown or during it: no stack is left either way
            raise StackShutDownError(str(message))
        raise HippoErrorFromDaemon(status, str(message))

    def _exchange(self, method: str, path: str, data: bytes | None,
                  headers: dict[str, str], timeout: float,
                  each_second: Callable[[], None] | None = None,
                  stopped_for: float | None = None) -> tuple[int, bytes]:
        if stopped_for is None:
            stopped_for = LOOK_EVERY_S if timeout > LOOK_EVERY_S else STOPPED_SHORT_S
        waiting = self._watch(each_second, stopped_for)
        try:
            return exchange(self.url, method, path, data, headers, timeout, waiting)
        except (OSError, BadAnswer) as exc:  # refused, reset, timed out, or not HTTP
            reason = str(exc) or type(exc).__name__
            if self.ended():
                raise self._ended_error(reason) from None
            if is_stopped(self.pid):  # "timed out", where the long wait said why (r/9)
                reason = STOPPED_WORDS.format(pid=self.pid)
            raise DaemonUnreachableError(self.url, self.pid, reason) from None

    def _watch(self, each_second: Callable[[], None] | None,
               stopped_for: float) -> Callable[[], None]:
        """A wait's look at the daemon, each second: stopped (SIGSTOP, Ctrl+Z, a
        debugger) for `stopped_for`, or, in a long wait, silent to `/healthz` at two
        looks in a row, it will not answer. A restart whose daemon was stopped after it
        accepted waited for ever, holding the CI step or the agent that ran it (y/2)."""
        stopped_since: float | None = None
        failed_since: float | None = None
        next_look = time.monotonic() + LOOK_EVERY_S

        def look() -> None:
            check()
            if each_second is not None:
                each_second()

        def check() -> None:
            nonlocal stopped_since, failed_since, next_look
            now = time.monotonic()
            if is_stopped(self.pid):
                stopped_since = stopped_since or now
                if now - stopped_since >= stopped_for:
                    raise DaemonUnreachableError(self.url, self.pid, (
                        f"stopped (SIGSTOP, Ctrl+Z or a debugger) for {LOOK_EVERY_S:g}s "
                        "while this command waited for it") if stopped_for >= LOOK_EVERY_S
                        else STOPPED_WORDS.format(pid=self.pid))
                return
            stopped_since = None
            if now < next_look:
                return
            next_look = now + LOOK_EVERY_S
            try:  # the reserved connections let it in even when the API is busy
                exchange(self.url, "GET", "/healthz", None, JSON, LOOK_EVERY_S)
                failed_since = None
            except (OSError, BadAnswer) as exc:
                if self.ended():
                    raise self._ended_error(str(exc) or type(exc).__name__) from None
                if failed_since is not None:  # one miss may be its shutdown's last 2 s
                    raise DaemonUnreachableError(self.url, self.pid, (
                        f"it did not answer /healthz for {now - failed_since:.0f}s while "
                        f"this command waited for it ({exc})")) from None
                failed_since = now

        return look

    def _ended_error(self, reason: str) -> HippoError:
        """Why the daemon is gone: a shutdown (its daemon.log's last line says so) or
        a kill or crash. A `hd start` that met a graceful `hd down` as the daemon closed
        its port (a reset) said "it was killed or crashed" (adv32 t/4)."""
        if self.log is not None and not self.foreground and _last_line_is_shutdown(self.log):
            return DaemonShutDownError(self.pid, reason)
        return DaemonEndedError(self.pid, reason, self.foreground)

    def ended(self, within: float = 0.5) -> bool:
        """The daemon this client found has gone. A killed process closes its sockets
        before the kernel makes it a zombie, so its end is looked for a moment."""
        if self._ticks is None:
            return False
        deadline = time.monotonic() + within
        while start_ticks(self.pid) == self._ticks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _no_such_service(self, name: str) -> UnknownServiceError:
        try:
            known = tuple(str(r["name"]) for r in self.status().get("services") or ())
        except (HippoError, KeyError, TypeError):
            known = ()
        return UnknownServiceError(name, known)

    def status(self) -> dict[str, Any]:
        """`/api/status`, or DaemonUnreachableError when the answer is not a Hippodrome
        daemon's: a process that runs in this folder on the registry's port (another
        program, another Hippodrome version) made `hd status` a KeyError traceback
        (adv26 f/1)."""
        result = self.call("GET", "/api/status", timeout=10)
        self._ours("/api/status", status_problem(result))
        return dict(result)

    def _ours(self, path: str, problem: str | None) -> None:
        """DaemonUnreachableError for an answer that is not this Hippodrome's
        (daemon/answer_shape.py)."""
        if problem:
            raise DaemonUnreachableError(self.url, self.pid, (
                f"it answers {path} with a document that is not this Hippodrome's "
                f"({problem}): another program on its port, or a daemon of another "
                "Hippodrome version"))

    def service_path(self, service: str, rest: str) -> str:
        """`/api/services/NAME/REST`. A name that is no text (a byte that is not UTF-8:
        `café` from a Latin-1 terminal) names no service: UnknownServiceError, exit 2,
        as any other unknown name; quoting it was a UnicodeEncodeError traceback (adv30
        q/6)."""
        try:
            return f"/api/services/{quote(service, safe='')}/{rest}"
        except UnicodeEncodeError:
            from hippo_tasks.terminal_text import as_typed

            raise self._no_such_service(as_typed(service)) from None

    def why(self, service: str) -> dict[str, Any]:
        path = self.service_path(service, "why")
        result = self.call("GET", path, timeout=10)
        self._ours(path, why_problem(result))
        return dict(result)

    def action(self, verb: str, service: str | None, cascade: bool = False,
               each_second: Callable[[], None] | None = None) -> dict[str, Any]:
        if verb not in ("start", "stop", "restart"):
            raise UsageError(f"unknown action {verb}")
        path = self.service_path(service, verb) if service else f"/api/stack/{verb}"
        self.check_answers()
        result = self.call("POST", path, {"cascade": True} if cascade else None,
                           each_second=each_second)
        self._ours(path, action_problem(result))
        return dict(result)

    def check_answers(self) -> None:
        """Whether it answers at all, as `status` asks (10 s), before a request that may
        wait long for its outcome: an action waits up to 310 s, an event 60 s, a replay
        for each delivery, so against a stopped or hung daemon `hd stop` and `hd
        events.send` sat silent for minutes, and the request left behind ran whenever
        the daemon woke, after the user had given up on it. DaemonUnreachableError."""
        self.call("GET", "/healthz", timeout=10)

    def post_event(self, event: dict[str, Any], token: str | None) -> tuple[int, Any]:
        """One event through the webhook, the path an EventBridge delivery takes:
        (HTTP status, the JSON answer, or {"raw": text} when it is not JSON)."""
        self.check_answers()
        headers = dict(JSON)
        if token:
            headers[TOKEN_HEADER] = token
        status, raw = self._exchange("POST", WEBHOOK_PATH, json.dumps(event).encode(),
                                     headers, 60)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"raw": raw.decode("utf-8", "replace")}

    def shutdown(self) -> None:
        self.call("POST", "/api/shutdown", timeout=10)


class HippoErrorFromDaemon(HippoError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text

    def message(self) -> str:
        return f"the daemon answered {self.status}: {self.text}"


def _unknown_service(payload: dict[str, Any], path: str) -> UnknownServiceError:
    """The daemon's 404 as the error it was: the name and the stack's services, kept."""
    name = payload.get("service")
    known = payload.get("services")
    if not isinstance(name, str):
        name = path.split("/")[3]
    if not isinstance(known, list) or not all(isinstance(k, str) for k in known):
        known = []
    left_out = payload.get("left_out")
    return UnknownServiceError(name, tuple(known), left_out if isinstance(left_out, str) else "")


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


HEAL_WAIT_S = 3.0
"""How long a command waits for a running daemon to write a damaged or emptied registry
again (it looks every 2 s: engine.HOUSEKEEPING_S)."""


def _rewritten_by_its_daemon(registry: Registry, data: dict[str, Any]
                             ) -> tuple[dict[str, Any], list[int]]:
    """A registry naming no live daemon while a process still writes this project's
    daemon.log (the registry was truncated or overwritten under a running stack): the
    registry as that daemon writes it again, within HEAL_WAIT_S; else as it was. And
    the writers still alive then (a stack stranded by its folder's deletion: one scan
    of /proc, not a second)."""
    # Also with no .hippodrome at all (`git clean -xdf`): the daemon still writes the
    # deleted daemon.log, and makes the folder and registry again within 2 s.
    writers = {pid: start_ticks(pid) for pid in daemon_log_writers(registry.root)}
    deadline = time.monotonic() + HEAL_WAIT_S
    # until it names one, or every writer is gone (a daemon that cleared it to exit)
    while any(start_ticks(p) == t for p, t in writers.items()) and time.monotonic() < deadline:
        time.sleep(0.1)
        again = registry.read()
        if daemon_alive(again):
            return again, []
    return data, [p for p, t in writers.items() if t is not None and start_ticks(p) == t]
