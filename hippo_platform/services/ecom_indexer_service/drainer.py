"""The drain loop: pending batches from ecom_ingest into the cell, then acknowledged.

How the API key travels: admin_server validates the uploader's key (or, for a Cognito
token, the `x-api-key` sent alongside it) and sends it to ecom_ingest as the
`x-api-key` header of `POST /batches`; ecom_ingest stores it with the batch and lists
it as the batch's `apiKey`; this loop writes the batch to the cell with that key as
`x-api-key`. The indexer has no key of its own, so it can only ever write into the
account that uploaded.

Failures split in two. The cell (or ecom_ingest) being down or answering 5xx is
transient: the batch stays pending, the loop backs off (doubling, capped) and tries
again, in order. The cell refusing the batch with a 4xx (unknown index, revoked key,
bad document) will not change by retrying: the batch is marked failed with the cell's
answer, so one bad batch never blocks the ones behind it.

Delivery is at least once (a crash between the cell's answer and the ack re-sends the
batch); ecom_ingest gives every document an `_id`, so a re-send overwrites itself.
"""

from __future__ import annotations

import threading
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from hippo_platform.services.common.client import JsonClient, segment
from hippo_platform.services.common.errors import HttpError
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.worker import BackgroundLoop

PERMANENT = frozenset({400, 401, 403, 404, 409, 413, 422})
BATCH_LIMIT = 50


class Transient(Exception):
    """Try again later: a peer is down or answered 5xx."""


class Backoff:
    __slots__ = ("initial", "maximum", "failures")

    def __init__(self, initial: float = 0.2, maximum: float = 5.0, failures: int = 0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = failures

    def next_delay(self) -> float:
        self.failures += 1
        return float(min(self.maximum, self.initial * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0


class Stats:
    """Counters the drain thread writes and /stats reads, under `lock`."""

    def __init__(self) -> None:
        self.drained = 0
        self.documents = 0
        self.failed = 0
        self.retries = 0
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.last_drain_at: str | None = None
        self.lock = threading.Lock()

    def view(self) -> dict[str, Any]:
        with self.lock:
            return {
                "drained": self.drained,
                "documents": self.documents,
                "failed": self.failed,
                "retries": self.retries,
                "lastError": self.last_error,
                "lastErrorAt": self.last_error_at,
                "lastDrainAt": self.last_drain_at,
            }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Drainer(BackgroundLoop):
    def __init__(
        self,
        ingest: JsonClient,
        cell: JsonClient,
        *,
        poll_interval: float = 0.1,
        batch_limit: int = BATCH_LIMIT,
        backoff: Backoff | None = None,
    ) -> None:
        self.ingest = ingest
        self.cell = cell
        self.poll_interval = poll_interval
        self.batch_limit = batch_limit
        self.backoff = backoff or Backoff()
        self.stats = Stats()
        super().__init__("drainer")

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                full_page = self.drain_once()
            except Transient as exc:
                delay = self.backoff.next_delay()
                self._error(f"{exc}; retrying in {delay:.1f}s", retry=True)
            except Exception as exc:  # a malformed answer must not end the loop for good
                log_error(traceback.format_exc().rstrip())
                delay = self.backoff.next_delay()
                self._error(f"{type(exc).__name__}: {exc}; retrying in {delay:.1f}s", retry=True)
            else:
                self.backoff.reset()
                delay = 0.0 if full_page else self.poll_interval
            self.stop_event.wait(delay)

    def drain_once(self) -> bool:
        """Send every pending batch of one page; True when the page was full (more wait)."""
        batches = self._call_ingest("GET", f"/batches?status=pending&limit={self.batch_limit}")
        pending: list[dict[str, Any]] = batches["batches"]
        for batch in pending:
            if self.stop_event.is_set():
                break
            self._deliver(batch)
        return len(pending) >= self.batch_limit

    def _deliver(self, batch: dict[str, Any]) -> None:
        batch_id, index = batch["batchId"], batch["index"]
        started = time.perf_counter()
        try:
            answer = self.cell.request(
                "POST",
                f"/indexes/{segment(index)}/documents",
                body={"documents": batch.get("documents") or []},
                headers={"x-api-key": batch.get("apiKey") or ""},
            )
        except HttpError as exc:  # unreachable: the client's 502 names the cell
            raise Transient(exc.message) from None
        if answer.ok:
            self._call_ingest("POST", f"/batches/{segment(batch_id)}/ack")
            with self.stats.lock:
                self.stats.drained += 1
                self.stats.documents += int(batch.get("count") or 0)
                self.stats.last_drain_at = _now()
            ms = (time.perf_counter() - started) * 1000
            log_line(f"batch {batch_id}: {batch.get('count')} docs into '{index}' in {ms:.0f}ms")
            return
        reason = f"cell answered {answer.status}: {answer.error_text()}"
        if answer.status not in PERMANENT:
            raise Transient(f"batch {batch_id}: {reason}")
        self._call_ingest("POST", f"/batches/{segment(batch_id)}/fail", body={"error": reason})
        with self.stats.lock:
            self.stats.failed += 1
        self._error(f"batch {batch_id} for index '{index}' failed for good: {reason}")

    def _call_ingest(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return self.ingest.call(method, path, body=body, passthrough=())
        except HttpError as exc:
            raise Transient(exc.message) from None

    def _error(self, text: str, *, retry: bool = False) -> None:
        with self.stats.lock:
            self.stats.last_error, self.stats.last_error_at = text, _now()
            if retry:
                self.stats.retries += 1
        log_error(f"ecom_indexer_service: {text}")
