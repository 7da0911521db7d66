"""Whether `up --enable-events`'s tunnel still runs, seen from the daemon.

EventBridge calls the tunnel's public URL; when the tunnel process exits (a quick
tunnel dropped by its provider, a `kill`, a crash) every event stops arriving, and
nothing said so: `hd status`, the API and the page said all was well, and the
`[tunnel]` and `[eventbridge]` lines the troubleshooting guide sends one to look for
were there from the start. The daemon looks on its housekeeping tick: its registry's
tunnel entries are read again only when the file changed (a stat), and each recorded
tunnel is one /proc read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hippo_tasks.errors import HippoError
from hippo_tasks.registry.store import Registry, is_same_process

TUNNEL = "tunnel"
"""bridge_records.TUNNEL (that module imports the tunnel launcher; this one must not)."""


class TunnelWatch:
    def __init__(self) -> None:
        self._key: object = None
        self._entries: list[dict[str, Any]] = []
        self._told: set[tuple[object, object]] = set()
        self.trouble: dict[str, object] | None = None
        """The `problems.tunnel` of /api/status while a recorded tunnel is gone."""

    def check(self, registry: Registry, note: Callable[[str], None]) -> None:
        key = registry.file_key()
        if key != self._key:
            try:
                data = registry.read()
            except (OSError, HippoError):  # out of descriptors, a folder gone: next tick
                return
            self._key = key
            self._entries = [e for e in data.get("resources") or []
                             if isinstance(e, dict) and e.get("kind") == TUNNEL]
        for entry in self._entries:
            who = (entry.get("pid"), entry.get("create_time"))
            if who in self._told or is_same_process(entry.get("pid"),
                                                    entry.get("create_time")):
                continue
            self._told.add(who)
            message = (f"the {entry.get('name') or 'events'} tunnel (pid {who[0]}) has "
                       "exited: EventBridge events no longer reach this stack (its output: "
                       f"{entry.get('log')}); run `hd down`, then `hd up --enable-events` "
                       "for a new one")
            note(f"hippodrome | [tunnel] {message}")
            self.trouble = {"error": "exited", "since": round(time.time(), 3),
                            "path": entry.get("log"), "message": message}
