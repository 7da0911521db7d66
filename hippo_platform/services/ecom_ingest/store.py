"""What a batch is, the interface both stores implement, and the in-memory store.

A batch moves `pending -> done` (acknowledged by the indexer) or `pending -> failed`
(the cell refused it for good, e.g. an unknown index). Done batches keep their metadata
but drop their documents: the documents now live in the cell, and keeping them would
make a long-running buffer grow without bound.

Every document gets an `_id` at acceptance when it has none. The indexer delivers at
least once (a crash between the cell's answer and the ack re-sends the batch), and
fixed ids make a re-sent batch overwrite itself instead of duplicating documents.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

from hippo_platform.services.common.errors import ServiceUnavailable

PENDING = "pending"
DONE = "done"
FAILED = "failed"
STATUSES = (PENDING, DONE, FAILED)
DONE_KEPT = 10_000  # done batches the memory store remembers (counts stay exact)


class StoreUnavailable(ServiceUnavailable):
    """The store cannot be reached right now (a 503: the caller may retry)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_batch_id() -> str:
    return "bat_" + uuid.uuid4().hex


def with_ids(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d if "_id" in d else {"_id": uuid.uuid4().hex, **d} for d in documents]


class NewBatch:
    """A batch as accepted, before the store has it; ids are decided here so a retried
    insert is recognisably the same batch."""

    __slots__ = ("index", "account_id", "api_key", "documents", "batch_id")

    def __init__(self, index: str, account_id: str, api_key: str,
                 documents: list[dict[str, Any]], batch_id: str | None = None) -> None:
        self.index = index
        self.account_id = account_id
        self.api_key = api_key
        self.documents = with_ids(documents)
        self.batch_id = batch_id or new_batch_id()


class Batch:
    __slots__ = ("batch_id", "index", "account_id", "api_key", "count", "status",
                 "created_at", "updated_at", "documents", "error")

    def __init__(self, batch_id: str, index: str, account_id: str, api_key: str, count: int,
                 status: str, created_at: str, updated_at: str,
                 documents: list[dict[str, Any]] | None = None,
                 error: str | None = None) -> None:
        self.batch_id = batch_id
        self.index = index
        self.account_id = account_id
        self.api_key = api_key
        self.count = count
        self.status = status
        self.created_at = created_at
        self.updated_at = updated_at
        self.documents = documents
        self.error = error

    def __repr__(self) -> str:  # never the API key
        return f"Batch({self.batch_id}, {self.index}, {self.count} documents, {self.status})"

    def view(self) -> dict[str, Any]:
        """The JSON form. It carries the uploader's API key because the indexer writes
        the batch to the cell as that account; ecom_ingest listens on loopback only."""
        out: dict[str, Any] = {
            "batchId": self.batch_id,
            "index": self.index,
            "accountId": self.account_id,
            "apiKey": self.api_key,
            "count": self.count,
            "status": self.status,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "error": self.error,
        }
        if self.documents is not None:
            out["documents"] = self.documents
        return out


class BatchStore(Protocol):
    kind: str

    def add(self, batch: NewBatch) -> Batch:
        """Durable when it returns: only then may the caller answer 201."""
        ...

    def list(self, status: str | None, limit: int) -> list[Batch]:
        """Oldest first."""
        ...

    def get(self, batch_id: str) -> Batch | None: ...

    def ack(self, batch_id: str) -> Batch | None:
        """Mark done (idempotent); None when unknown."""
        ...

    def fail(self, batch_id: str, error: str) -> Batch | None:
        """Mark a pending batch failed; other states are returned unchanged."""
        ...

    def counts(self) -> dict[str, int]:
        """Batches per status, plus `pendingDocuments`."""
        ...

    def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot serve."""
        ...

    def close(self) -> None: ...


class MemoryStore:
    """Everything in one process's memory: fast, and gone on restart by design."""

    kind = "memory"

    def __init__(self, done_kept: int = DONE_KEPT) -> None:
        self._lock = threading.Lock()
        self._batches: dict[str, Batch] = {}
        self._pending: dict[str, None] = {}  # insertion-ordered set: oldest first
        self._done: deque[str] = deque()
        self._done_kept = done_kept
        self._done_total = 0

    def add(self, batch: NewBatch) -> Batch:
        stamp = now_iso()
        docs = batch.documents
        stored = Batch(
            batch.batch_id,
            batch.index,
            batch.account_id,
            batch.api_key,
            len(docs),
            PENDING,
            stamp,
            stamp,
            docs,
        )
        with self._lock:
            existing = self._batches.get(batch.batch_id)
            if existing is not None:
                return existing
            self._batches[batch.batch_id] = stored
            self._pending[batch.batch_id] = None
        return stored

    def list(self, status: str | None, limit: int) -> list[Batch]:
        with self._lock:
            if status == PENDING:
                ids: Any = self._pending
            elif status == DONE:
                ids = self._done
            else:
                ids = self._batches
            found = []
            for batch_id in ids:
                batch = self._batches[batch_id]
                if status is None or batch.status == status:
                    found.append(batch)
                    if len(found) >= limit:
                        break
            return found

    def get(self, batch_id: str) -> Batch | None:
        with self._lock:
            return self._batches.get(batch_id)

    def ack(self, batch_id: str) -> Batch | None:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch.status == DONE:
                return batch
            self._pending.pop(batch_id, None)
            batch.status, batch.documents, batch.updated_at = DONE, None, now_iso()
            self._done.append(batch_id)
            self._done_total += 1
            while len(self._done) > self._done_kept:
                self._batches.pop(self._done.popleft(), None)
            return batch

    def fail(self, batch_id: str, error: str) -> Batch | None:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch.status != PENDING:
                return batch
            self._pending.pop(batch_id, None)
            batch.status, batch.error, batch.updated_at = FAILED, error, now_iso()
            return batch

    def counts(self) -> dict[str, int]:
        with self._lock:
            failed = sum(1 for b in self._batches.values() if b.status == FAILED)
            pending_docs = sum(self._batches[i].count for i in self._pending)
            return {
                PENDING: len(self._pending),
                DONE: self._done_total,
                FAILED: failed,
                "pendingDocuments": pending_docs,
            }

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None
