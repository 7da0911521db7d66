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
from hippo_tasks.terminal_text import for_terminal

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
            print(for_terminal(line), file=sys.stderr, flush=True)


def waiting_line(status: Any, service: str) -> str:
    """`hippodrome | app is waiting for db (healthy); db: backoff — exited with code 1;
    restarting in 4s`, or "" when `service` waits for nothing."""
    rows = {r.get("name"): r for r in (status.get("services") or ())
            if isinstance(r, dict)} if isinstance(status, dict) else {}
    row = rows.get(service) or {}
    waits = [w for w in row.get("waiting_on") or () if isinstance(w, dict)]
    if not waits:
        return ""
    line = f"hippodrome | {service} is waiting for " + ", ".join(
        f"{w.get('service')} ({w.get('condition')})" for w in waits)
    for wait in waits:
        dep = rows.get(wait.get("service")) or {}
        if dep.get("state"):
            line += f"; {wait.get('service')}: {dep['state']}" + (
                f" — {dep['reason']}" if dep.get("reason") else "")
    return line
