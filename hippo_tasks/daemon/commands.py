"""The one command interface: the HTTP handlers call this, and the CLI calls the HTTP API.

Methods are called from HTTP worker threads; each hands a coroutine to the engine's
loop and waits for its result, so processes are only ever touched on the loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from hippo_tasks.action_outcome import EXITED
from hippo_tasks.daemon.engine import Engine
from hippo_tasks.errors import (
    LogAnswersUnreadError,
    LogReadersBusyError,
    RequestTimeoutError,
    StackShutDownError,
    UnknownServiceError,
)
from hippo_tasks.model.plan import given_cell_url
from hippo_tasks.supervision.stack import Settled
from hippo_tasks.supervision.timeline import path_json

T = TypeVar("T")
DEFAULT_TIMEOUT = 300.0
LOG_READERS = 2
"""Log queries answered at once; the others wait their turn. Twenty at once, each of
100,000 lines, took the daemon to 350 MB (each answer is built whole, then encoded), and
forty costly regexes, each a thread holding the GIL, delayed the webhook's answers to
about 5 s. Two keep a page's and an agent's queries going together."""
LOG_WAIT_S = 20.0
"""How long a log query waits for a slot before it is answered 503."""
_log_slots = threading.BoundedSemaphore(LOG_READERS)
LOG_UNREAD_BYTES = 64 * 2**20
"""Log answers built and not yet read by their clients, at most, or one answer alone if
it is larger. A slot is given back once an answer is built, and the answer is then held
until its client has read it: 120 clients that asked for 100,000 lines and read nothing
took the daemon past 1 GB for as long as their connections lasted (adv41 I/2)."""


class _UnreadAnswers:
    """The bytes of log answers their clients have not read yet."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.held = 0
        self._changed = threading.Condition()

    def _room_for(self, size: int) -> bool:
        return self.held == 0 or self.held + max(size, 1) <= self.most

    def wait_for_room(self, timeout: float, size: int = 0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._room_for(size), timeout)

    def hold(self, size: int, timeout: float = 0.0) -> Callable[[], None] | None:
        """Count `size` bytes as held once there is room for them (checked and counted
        at once: two answers built side by side each found room for itself, and held
        196 MB together, adv42 T/1); None if there is none within `timeout`. The
        function returned lets them go (once)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._room_for(size), timeout):
                return None
            self.held += size
        left = [size]

        def let_go() -> None:
            with self._changed:
                self.held -= left.pop() if left else 0
                self._changed.notify_all()
        return let_go


_unread = _UnreadAnswers(LOG_UNREAD_BYTES)


@contextmanager
def _log_slot() -> Iterator[float]:
    """A slot, then room among the unread answers, both within LOG_WAIT_S; yields the
    deadline. Room is looked for with the slot held: looked for first, two dozen
    queries found it at once and then each built and held its answer in turn."""
    deadline = time.monotonic() + LOG_WAIT_S
    if not _log_slots.acquire(timeout=LOG_WAIT_S):
        raise LogReadersBusyError(LOG_READERS, LOG_WAIT_S)
    try:
        if not _unread.wait_for_room(max(0.0, deadline - time.monotonic())):
            raise LogAnswersUnreadError(_unread.held, _unread.most, LOG_WAIT_S)
        yield deadline
    finally:
        _log_slots.release()


class StackCommands:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _call(self, coro: Coroutine[Any, Any, T], what: str, timeout: float) -> T:
        """Run an action on the loop; it answers once the registry says what it did."""
        loop = self.engine.loop
        assert loop is not None

        async def then_flush() -> T:
            try:
                return await coro
            finally:
                self.engine.flush_registry()

        future = asyncio.run_coroutine_threadsafe(then_flush(), loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise RequestTimeoutError(what, timeout) from None

    # ---- reads (no loop round trip: plain attribute reads) ------------------------
    def status(self) -> dict[str, Any]:
        opts = self.engine.plan.options
        rows = self.engine.stack.status()
        return {
            "profile": opts.profile,
            "cell": opts.cell,
            # as the daemon's environment gave it (`hd seed` from a shell without it)
            "cell_url": given_cell_url(opts),
            # the stack file's services this run left out, with why (`--only`, profile)
            "left_out": dict(self.engine.plan.left_out),
            "table_prefix": opts.table_prefix,
            "port_offset": opts.port_offset,
            "project_root": str(opts.project_root),
            "dashboard_url": self.engine.url,
            "uptime_s": round(time.time() - self.engine.started_at, 1),
            "logs_dir": str(self.engine.runs.dir),
            "services": rows,
            "critical_path": path_json(rows),
            "problems": self.engine.problems(),
            "shutting_down": self._shutting_down(),
        }

    def _shutting_down(self) -> str | None:
        """Who asked for the shutdown under way (`by `hd down` ...`), None while the
        stack takes requests: during one, `status` and `why` read as a stack to act on,
        and `why` advised a start the daemon then refused (adv36 c/2)."""
        return None if self.engine.accepting() else self.engine.shut_down_by() or "by request"

    def check_service(self, name: str) -> None:
        if name not in self.engine.stack.services:
            raise UnknownServiceError(name, tuple(self.engine.stack.services),
                                      dict(self.engine.plan.left_out).get(name, "")
                                      or self._added_since(name))

    def _added_since(self, name: str) -> str:
        """Why `name` is not in this run when the stack file saved since has it: an agent
        that had just written the service in was told it did not exist (the command
        line says the file changed; the API and MCP did not)."""
        from hippo_tasks.model.project import ROOT_MARKERS, changed_since

        root = self.engine.plan.options.project_root
        if not changed_since(root, self.engine.stack_file):
            return ""
        from hippo_tasks.errors import HippoError
        from hippo_tasks.model.loader import load_stack

        try:
            names = {s.name for s in load_stack(root).services}
        except (HippoError, OSError):
            return ""
        return (f"added to {ROOT_MARKERS[0]} after this stack started"
                if name in names else "")

    def logs(self, name: str, lines: int, after: int | None = None, *,
             before: int | None = None, since: float | str | None = None, grep: str = "",
             regex: str = "", errors: bool = False) -> dict[str, Any]:
        """A service's buffered lines: the newest `lines`, or those after `after`, with an
        optional filter; bounded in lines and time (daemon/logquery.py says how), and
        in how many are answered at once (LOG_READERS)."""
        with _log_slot():
            return self._logs(name, lines, after, before=before, since=since, grep=grep,
                              regex=regex, errors=errors)

    def logs_json(self, name: str, lines: int, after: int | None = None, *,
                  before: int | None = None, since: float | str | None = None,
                  grep: str = "", regex: str = "", errors: bool = False,
                  ) -> tuple[bytes, Callable[[], None]]:
        """`logs` as the API's JSON bytes, encoded while the slot is held (the encoding
        is as large as the answer, and twenty at once were the daemon's peak), and the
        function to call once they are sent or given up (LOG_UNREAD_BYTES)."""
        with _log_slot() as deadline:
            encoded = json.dumps(self._logs(name, lines, after, before=before, since=since,
                                            grep=grep, regex=regex, errors=errors)).encode()
            let_go = _unread.hold(len(encoded), max(0.0, deadline - time.monotonic()))
            if let_go is None:
                raise LogAnswersUnreadError(_unread.held, _unread.most, LOG_WAIT_S)
            return encoded, let_go

    def _logs(self, name: str, lines: int, after: int | None, *, before: int | None,
              since: float | str | None, grep: str, regex: str,
              errors: bool) -> dict[str, Any]:
        from hippo_tasks.daemon.logquery import LogQuery, parse_since, select
        from hippo_tasks.model.regex_safety import safe_regex

        self.check_service(name)
        query = LogQuery(limit=lines, after=after, before=before,
                         since=None if since is None else parse_since(since), text=grep,
                         regex=safe_regex(regex) if regex else None, errors_only=errors)
        return select(self.engine.hub, name, query)

    def why(self, name: str) -> dict[str, Any]:
        """What `name` waits on, down the chain (daemon/why.py)."""
        from hippo_tasks.daemon.why import LAST_LINES, explain

        self.check_service(name)
        stack = self.engine.stack
        snaps = {s.name: s for s in stack.snapshots()}
        readiness = {n: s.planned.spec.readiness.describe() for n, s in stack.services.items()}
        hub = self.engine.hub
        conditions = {n: {d: str(c) for d, c in s.planned.spec.conditions}
                      for n, s in stack.services.items()}
        return explain(name, snaps, readiness, lambda n: hub.own_lines(n, LAST_LINES),
                       stack.log_path, conditions, self._shutting_down())

    # ---- actions -----------------------------------------------------------------
    def _result(self, names: list[str], settled: Settled | None = None) -> dict[str, Any]:
        """The rows of `names`: as each settled for this request where it says, else
        as they are now."""
        rows = {r["name"]: r for r in self.engine.stack.status()}
        for name, snap in (settled or {}).items():
            now = rows.get(name)
            # Stopped by another command after it settled for this one: as it ended (a
            # whole-stack restart answered `running`, exit 0, for a stopped service).
            stopped_since = now is not None and snap.ready and \
                now["state"] in ("stopping", "stopped") and now.get("reason") != EXITED \
                and now.get("busy") in (None, "stop")  # not a restart coalesced on top
            # Settled while still pending (a stop from elsewhere overtook its start): it
            # read `pending`, "about to start", for a service that ended stopped.
            never_left = now is not None and (
                (snap.state == "pending" and now["state"] != "pending")
                or (snap.state == "starting" and now["state"] in ("stopping", "stopped")
                    and now.get("busy") in (None, "stop")))
            # Restarted again since it settled for this one, and up again (two
            # restarts of a restart_cascades service at once): it named the process
            # the later one had replaced seconds before (adv44 L/3).
            replaced = now is not None and snap.ready and now.get("ready") and \
                now["state"] == "running" and not now.get("busy") and \
                now.get("pid") not in (None, snap.pid)
            if not stopped_since and not never_left and not replaced:
                rows[name] = snap.as_status()
        return {"services": [rows[n] for n in names]}

    # `sent`: when the request reached the kernel (Request.received), None if not known.
    # A start or restart sent before a stop the daemon has already carried out yields
    # to it (StackSupervisor._stopped_after).
    def start(self, name: str | None, timeout: float = DEFAULT_TIMEOUT,
              sent: float | None = None) -> dict[str, Any]:
        self.engine.check_accepting()
        if name is not None:
            self.check_service(name)
        names = [name] if name else list(self.engine.stack.services)

        settled = self._call(self.engine.stack.start(names, sent),
                             f"start {name or 'stack'}", timeout)
        self._not_shut_down(f"start {name or 'of the stack'}")
        return self._result(self.engine.stack.closure(names), settled)

    def stop(self, name: str | None, timeout: float = DEFAULT_TIMEOUT,
             sent: float | None = None) -> dict[str, Any]:
        self.engine.check_accepting()
        if name is not None:
            self.check_service(name)
        names = [name] if name else list(self.engine.stack.services)
        settled = self._call(self.engine.stack.stop(names, sent=sent),
                             f"stop {name or 'stack'}", timeout)
        return self._result(names, settled)

    def restart(self, name: str | None, timeout: float = DEFAULT_TIMEOUT,
                cascade: bool = False, sent: float | None = None) -> dict[str, Any]:
        self.engine.check_accepting()
        stack = self.engine.stack
        if name is not None:
            self.check_service(name)
            # A service that always cascades (moto) is restarted as `--cascade` is, so
            # the command returns once its dependants are ready again: it returned with
            # the cascade still under way, and the stack answered 503 for seconds.
            if cascade or stack.get(name).planned.spec.restart_cascades:
                skipped: dict[str, str] = {}
                done = self._call(stack.restart_cascade(name, skipped, sent),
                                  f"restart {name} --cascade", timeout)
                self._not_shut_down(f"restart {name} --cascade")
                result = self._result([n for n in stack.services if n in done or n in skipped],
                                      done)
                for row in result["services"]:
                    if row["name"] in skipped:
                        row["not_restarted"] = skipped[row["name"]]
                return result
            held: dict[str, str] = {}
            snap = self._call(stack.restart(name, held, sent), f"restart {name}", timeout)
            self._not_shut_down(f"restart {name}")
            result = self._result([name], {name: snap})
            for row in result["services"]:
                if row["name"] in held:
                    row["not_restarted"] = held[row["name"]]
            return result

        settled = self._call(stack.restart_all(sent), "restart stack", timeout)
        self._not_shut_down("restart of the stack")
        return self._result(list(stack.services), settled)

    def _not_shut_down(self, what: str) -> None:
        """StackShutDownError when a shutdown began while `what` waited: its rows read
        `stopped`, and the outcome said to `hd start` a stack no daemon runs any more."""
        if not self.engine.accepting():
            by = self.engine.shut_down_by() or "by `hd down` (or POST /api/shutdown)"
            raise StackShutDownError(f"the stack was shut down {by} while the {what} "
                                     "waited: nothing runs now; `hd up` starts it again")

    def shutdown(self) -> dict[str, Any]:
        loop = self.engine.loop
        assert loop is not None
        loop.call_soon_threadsafe(self.engine.request_shutdown, "shutdown requested")
        return {"status": "shutting down"}
