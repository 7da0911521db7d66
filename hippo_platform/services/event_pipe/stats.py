"""What /stats and /healthz show, and where the pipe keeps its place between runs.

Counters are per table and guarded by one lock: two follower threads write them, the
HTTP threads read them. Checkpoints are the last sequence number relayed per shard,
written atomically after every batch, so a restarted event_pipe resumes right after
the last record it relayed instead of losing what was written while it was down.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hippo_platform.services.common.state import atomic_write_json, read_json


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class TableStats:
    table: str
    detail_type_prefix: str
    bus: str
    stream_arn: str | None = None
    positioned: bool = False
    start: str = ""  # how the current stream was joined: LATEST, checkpoint, TRIM_HORIZON
    records: int = 0  # records read from the stream
    relayed: int = 0  # records that reached every destination
    bus_put: int = 0
    webhook_posted: int = 0
    skipped: int = 0  # deliveries given up on (each is logged)
    last_record_at: str | None = None
    last_sequence: str | None = None
    polling: str = "fast"
    retrying: bool = False
    last_error: str | None = None
    last_error_at: str | None = None
    errors: int = 0


@dataclass
class PipeStats:
    tables: dict[str, TableStats] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

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
            tables = [asdict(t) for t in self.tables.values()]
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
