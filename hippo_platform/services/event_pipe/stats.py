"""What /stats and /healthz show, and where the pipe keeps its place between runs.

Counters are per table and guarded by one lock: two follower threads write them, the
HTTP threads read them. Checkpoints are the last sequence number relayed per shard,
written atomically after every batch, so a restarted event_pipe resumes right after
the last record it relayed instead of losing what was written while it was down.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hippo_platform.services.common.state import atomic_write_json, read_json


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TableStats:
    """One followed table's figures; /stats shows them under these names, in this order."""

    __slots__ = ("table", "detail_type_prefix", "bus", "stream_arn", "positioned", "start",
                 "records", "relayed", "bus_put", "webhook_posted", "skipped",
                 "last_record_at", "last_sequence", "polling", "retrying", "last_error",
                 "last_error_at", "errors")

    def __init__(self, table: str, detail_type_prefix: str, bus: str) -> None:
        self.table = table
        self.detail_type_prefix = detail_type_prefix
        self.bus = bus
        self.stream_arn: str | None = None
        self.positioned = False
        self.start = ""  # how the current stream was joined: LATEST, checkpoint, TRIM_HORIZON
        self.records = 0  # records read from the stream
        self.relayed = 0  # records that reached every destination
        self.bus_put = 0
        self.webhook_posted = 0
        self.skipped = 0  # deliveries given up on (each is logged)
        self.last_record_at: str | None = None
        self.last_sequence: str | None = None
        self.polling = "fast"
        self.retrying = False
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.errors = 0

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class PipeStats:
    def __init__(self) -> None:
        self.tables: dict[str, TableStats] = {}
        self.lock = threading.Lock()

    def add(self, stats: TableStats) -> None:
        self.tables[stats.table] = stats

    def update(self, table: str, **changes: Any) -> None:
        with self.lock:
            entry = self.tables[table]
            for name, value in changes.items():
                setattr(entry, name, value)

    def bump(self, table: str, **increments: int) -> None:
        with self.lock:
            entry = self.tables[table]
            for name, value in increments.items():
                setattr(entry, name, getattr(entry, name) + value)

    def error(self, table: str, text: str) -> None:
        with self.lock:
            entry = self.tables[table]
            entry.last_error, entry.last_error_at = text, now_iso()
            entry.errors += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            tables = [t.as_dict() for t in self.tables.values()]
        latest = max((t for t in tables if t["last_error_at"]),
                     key=lambda t: t["last_error_at"], default=None)
        return {
            "relayed": sum(t["relayed"] for t in tables),
            "tables": tables,
            "lastError": None if latest is None else {
                "table": latest["table"], "error": latest["last_error"],
                "at": latest["last_error_at"],
            },
        }


class Checkpoints:
    """`{table: {"streamArn": ..., "shards": {shardId: lastSequenceNumber}}}` in one file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {}
        if path is not None:
            try:
                loaded = read_json(path, {})
            except (OSError, ValueError):
                loaded = {}  # a corrupt checkpoint costs a LATEST start, not a crash
            self.data = loaded if isinstance(loaded, dict) else {}

    def shards(self, table: str, stream_arn: str) -> dict[str, str]:
        with self._lock:
            entry = self.data.get(table) or {}
            if entry.get("streamArn") != stream_arn:
                return {}
            return {str(k): str(v) for k, v in (entry.get("shards") or {}).items()}

    def save(self, table: str, stream_arn: str, shards: dict[str, str]) -> None:
        with self._lock:
            self.data[table] = {"streamArn": stream_arn, "shards": dict(shards),
                                "savedAt": now_iso()}
            if self.path is not None:
                atomic_write_json(self.path, self.data, fsync=False)
