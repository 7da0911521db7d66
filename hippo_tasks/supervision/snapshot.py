"""One typed picture of a service's state, built in one place.

`/api/status`, `hd status`, the page and the registry all render this value, so
they cannot disagree about what a service is doing (the registry used to be built
from the supervisor's attributes separately, and lagged the API).
"""

from __future__ import annotations

import time


class ServiceSnapshot:
    """A value: built per read and never changed (not frozen only because a frozen
    dataclass's __init__ costs a third of `GET /api/status` with 40 services; a plain
    slotted class, as no dataclass is made on `up`'s way to its first spawn)."""

    __slots__ = ("name", "state", "healthy", "pid", "pgid", "port", "restarts", "started_at",
                 "exit_code", "ready", "blocking", "external", "kind", "reason", "depends_on",
                 "url", "cgroup", "busy", "timings", "startup", "waiting_on", "description")

    def __init__(self, name: str, state: str, healthy: bool, pid: int | None,
                 pgid: int | None, port: int | None, restarts: int, started_at: float | None,
                 exit_code: int | None, ready: bool, blocking: bool, external: bool,
                 kind: str, reason: str, depends_on: tuple[str, ...], url: str | None,
                 cgroup: str | None, busy: str | None, timings: dict[str, float | None],
                 waiting_on: tuple[tuple[str, str], ...], description: str = "",
                 startup: dict[str, float | None] | None = None) -> None:
        self.name = name
        self.state = state
        self.healthy = healthy
        self.pid = pid
        """The main process while it lives; None as soon as it has exited."""
        self.pgid = pgid
        self.port = port
        self.restarts = restarts
        self.started_at = started_at
        self.exit_code = exit_code
        self.ready = ready
        self.blocking = blocking
        self.external = external
        self.kind = kind
        self.reason = reason
        self.depends_on = depends_on
        self.url = url
        self.cgroup = cgroup
        self.busy = busy
        """The request being carried out (start, stop, restart), if any."""
        self.timings = timings
        """The latest start's instants (supervision/timeline.py)."""
        self.startup = timings if startup is None else startup
        """The start-up's instants: the first start that became ready (timeline.py)."""
        self.waiting_on = waiting_on
        self.description = description
        """The stack file's `description`, for the page (it was shown nowhere)."""
        """(dependency, condition) pairs the current start still waits for."""

    def __repr__(self) -> str:  # tests print snapshots in their failure messages
        facts = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"ServiceSnapshot({facts})"

    @property
    def uptime_s(self) -> float | None:
        if self.started_at is None or self.state not in ("running", "starting"):
            return None
        return round(time.time() - self.started_at, 1)

    def as_status(self) -> dict[str, object]:
        """The `/api/status` row (DESIGN section 4, plus what the page and CLI show)."""
        return {
            "name": self.name,
            "state": self.state,
            "healthy": self.healthy,
            "pid": self.pid,
            "port": self.port,
            "restarts": self.restarts,
            "uptime_s": self.uptime_s,
            "exit_code": self.exit_code,
            "ready": self.ready,
            "blocking": self.blocking,
            "external": self.external,
            "kind": self.kind,
            "reason": self.reason,
            "depends_on": list(self.depends_on),
            "url": self.url,
            "busy": self.busy,
            "timings": self.timings,
            "startup": self.startup,
            "waiting_on": [{"service": n, "condition": c} for n, c in self.waiting_on],
            "description": self.description,
        }

    def as_registry(self, create_time: float | None) -> dict[str, object]:
        """The registry entry: what `down --force` and the orphan sweep need to find
        this service's processes again from another process, plus what `up --detach`
        reads to report progress."""
        return {
            "pid": self.pid,
            "pgid": self.pgid if self.pid is not None else None,
            "create_time": create_time if self.pid is not None else None,
            "cgroup": self.cgroup,
            "port": self.port,
            "state": self.state,
            "started_at": self.started_at,
            "reason": self.reason,
            "ready": self.ready,
            "blocking": self.blocking,
            "kind": self.kind,
        }
