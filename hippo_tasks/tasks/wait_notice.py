"""What a start or restart of one service is waiting for, said while it waits.

`hd restart -s app` whose dependency db was in a crash backoff sat silent through the
backoff (up to `backoff_max`, 30 s by default) and longer while db crashed again: a wait
looked like a hang, and Ctrl+C was the only way to learn more. Past NOTICE_AFTER_S the
command looks at the status each second and says, whenever it changes, what the service
waits for and where that is, as `hd why` would.
"""

from __future__ import annotations

import re
import sys
import time
from typing import TYPE_CHECKING, Any

from hippo_tasks.errors import HippoError
from hippo_tasks.terminal_text import for_output

if TYPE_CHECKING:
    from hippo_tasks.daemon.client import DaemonClient

COUNTDOWN = re.compile(r" in [0-9.]+s$")
NOTICE_AFTER_S = 2.0
"""A start that waits less than this on its dependencies is one nobody wonders about."""


class WaitNotice:
    """DaemonClient.action's `each_second` for `service`."""

    def __init__(self, client: DaemonClient, service: str) -> None:
        self._client = client
        self._service = service
        self._from = time.monotonic() + NOTICE_AFTER_S
        self._said = ""

    def __call__(self) -> None:
        if time.monotonic() < self._from:
            return
        try:
            status = self._client.call("GET", "/api/status", timeout=2)
        except (HippoError, OSError):  # the action's own wait says what became of it
            return
        line = waiting_line(status, self._service)
        if line and COUNTDOWN.sub("", line) != self._said:  # not a line a second for a
            self._said = COUNTDOWN.sub("", line)          # backoff's countdown
            print(for_output(line, 2), file=sys.stderr, flush=True)


MOVING = frozenset({"pending", "starting", "backoff", "stopping"})
"""A dependency in one of these is not there yet: what a start may be waiting on."""
DEPTH = 6
"""How far down a chain of waits the notice follows (`hd why` names the whole chain)."""


def waiting_line(status: Any, service: str) -> str:
    """`hippodrome | app is waiting for db (healthy); db: backoff — exited with code 1;
    restarting in 4s`, or "" when `service` waits for nothing. Down a chain it goes on
    to what the dependency waits for in turn (the notice named only the first level,
    adv31's notes); a running service whose start brings a stopped dependency up (`hd
    start -s mid`, db stopped) waits on that one, and said nothing (adv31 r/10)."""
    rows = {r.get("name"): r for r in (status.get("services") or ())
            if isinstance(r, dict)} if isinstance(status, dict) else {}
    row = rows.get(service) or {}
    if _waits(row):
        return "hippodrome | " + _chain(rows, service, set())
    coming = [d for d in row.get("depends_on") or ()
              if isinstance(d, str) and (rows.get(d) or {}).get("state") in MOVING]
    if not coming:
        return ""
    return f"hippodrome | {service} is waiting for " + ", ".join(coming) + "".join(
        "; " + _where(rows, d) for d in coming)


def _waits(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in row.get("waiting_on") or () if isinstance(w, dict)]


def _where(rows: dict[Any, Any], name: str) -> str:
    dep = rows.get(name) or {}
    return f"{name}: {dep.get('state')}" + (f" — {dep['reason']}" if dep.get("reason")
                                            else "")


def _chain(rows: dict[Any, Any], service: str, seen: set[str]) -> str:
    seen.add(service)
    waits = _waits(rows.get(service) or {})
    text = f"{service} is waiting for " + ", ".join(
        f"{w.get('service')} ({w.get('condition')})" for w in waits)
    for wait in waits:
        name = str(wait.get("service"))
        if _waits(rows.get(name) or {}) and name not in seen and len(seen) < DEPTH:
            text += "; " + _chain(rows, name, seen)  # it waits in turn: say for what
        elif (rows.get(name) or {}).get("state"):
            text += "; " + _where(rows, name)
    return text
