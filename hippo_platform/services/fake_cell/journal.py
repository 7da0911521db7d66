"""Write-ahead journal plus snapshot: how fake_cell survives a restart and kill -9.

Each change is one JSON line appended to `journal.jsonl` (and fsynced, unless turned
off) before the request is answered. Rewriting a whole-state snapshot per write would
cost time proportional to the data (tens of ms at 10,000 documents); a line costs a
fraction of a millisecond (benchmarks/bench_fake_cell.py: a one-document write is
about 0.4 ms p50 without fsync, 0.7 ms with it). When the journal grows past the
size of the last snapshot (4 MB at least), or on a clean stop, the state is written
as `snapshot.json` with an atomic replace and the journal starts over; lines carry a
sequence number and the snapshot the last number it includes, so a crash between
those two steps replays nothing twice. A torn last line (killed mid-write, never
acknowledged) is cut off on load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from hippo_platform.services.common.log import log_error
from hippo_platform.services.common.state import (
    atomic_write_bytes,
    atomic_write_json,
    open_own,
    read_json,
    write_or_cut_back,
)

SNAPSHOT = "snapshot.json"
JOURNAL = "journal.jsonl"
MIN_COMPACT_BYTES = 4 * 1024 * 1024


class Journal:
    def __init__(
        self, folder: Path, *, fsync: bool = True, compact_at: int = MIN_COMPACT_BYTES
    ) -> None:
        self.folder = folder
        self.fsync = fsync
        self.compact_at = compact_at
        self.seq = 0
        self.snapshot_bytes = 0
        self.journal_bytes = 0
        self._handle: IO[bytes] | None = None

    @property
    def journal_path(self) -> Path:
        return self.folder / JOURNAL

    @property
    def snapshot_path(self) -> Path:
        return self.folder / SNAPSHOT

    def load(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The snapshot (or `{}`) and the ops after it; opens the journal for appends."""
        self.folder.mkdir(parents=True, exist_ok=True)
        snapshot = read_json(self.snapshot_path, default={}) or {}
        self.seq = int(snapshot.get("seq", 0))
        if self.snapshot_path.exists():
            self.snapshot_bytes = self.snapshot_path.stat().st_size
        ops: list[dict[str, Any]] = []
        good_end = 0
        try:
            with os.fdopen(open_own(self.journal_path, os.O_RDONLY), "rb") as handle:
                for line in handle:
                    try:
                        op = json.loads(line)
                    except (UnicodeDecodeError, json.JSONDecodeError):
                        log_error(f"fake_cell: journal cut at byte {good_end} (torn write)")
                        break
                    if not line.endswith(b"\n"):
                        break  # complete JSON but no newline: never acknowledged
                    good_end += len(line)
                    if op.get("seq", 0) > self.seq:
                        ops.append(op)
                        self.seq = op["seq"]
        except FileNotFoundError:
            pass
        self._handle = self._open_for_appends()  # kept open
        self._handle.truncate(good_end)
        self.journal_bytes = good_end
        return snapshot, ops

    def _open_for_appends(self) -> IO[bytes]:
        return os.fdopen(open_own(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT),
                         "ab", buffering=0)  # unbuffered: each line in the kernel at once

    def append(self, op: dict[str, Any]) -> None:
        """Write one op; on failure (disk full...) cut the partial line off again, so a
        later append cannot land behind garbage that would end the replay early."""
        assert self._handle is not None, "load() first"
        line = json.dumps({**op, "seq": self.seq + 1}, separators=(",", ":"), ensure_ascii=False)
        data = line.encode("utf-8") + b"\n"
        fd = self._handle.fileno()
        # unbuffered: in the kernel once this returns, which is what kill -9 spares
        write_or_cut_back(fd, data, self.journal_bytes, self.journal_path)
        try:
            if self.fsync:
                os.fsync(fd)  # on the disk: survives a power cut too
        except OSError:
            os.ftruncate(fd, self.journal_bytes)
            raise
        self.seq += 1
        self.journal_bytes += len(data)

    def deleted(self) -> bool:
        """The journal open for appends was deleted (its folder removed, `git clean
        -xdf`): every change acknowledged into it would be lost at the next kill -9."""
        return self._handle is not None and os.fstat(self._handle.fileno()).st_nlink == 0

    def has_entries(self) -> bool:
        return self.journal_bytes > 0

    def wants_compaction(self) -> bool:
        return self.journal_bytes > max(self.compact_at, self.snapshot_bytes)

    def compact(self, state: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.snapshot_path, {**state, "seq": self.seq}, fsync=self.fsync)
        self.snapshot_bytes = self.snapshot_path.stat().st_size
        # The old journal's handle is let go only once the empty one is in place: a
        # full disk here left it closed, and every later change answered 500.
        atomic_write_bytes(self.journal_path, b"", fsync=self.fsync)
        if self._handle is not None:
            self._handle.close()
        self._handle = self._open_for_appends()
        self.journal_bytes = 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
