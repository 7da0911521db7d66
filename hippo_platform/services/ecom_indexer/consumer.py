"""The consume loop: upload batches from the `{prefix}ecom-indexer` queue into the cell.

What the reference ran as a Lambda on an SQS event source runs here as a long-poll
loop, with the same contract: a message is deleted only once the cell took its
documents, so a cell that is down (or answers 5xx) leaves it on the queue and it comes
back after the visibility timeout, while a cell refusing it with a 4xx (unknown index,
revoked key, bad document) will not change by retrying: the message is deleted and
counted as failed, so one bad batch never blocks the others. A body that is not a
batch at all is dropped the same way, with a log line naming it. A batch the cell
answers 5xx for is released, and the others of the same receive are still tried: a
batch it always fails on is retried (and counted in `retries`) without holding back
the ones behind it. Not for ever: such a batch was retried as long as the service ran,
a log line and a longer backoff for every batch behind it each time. Once the cell has
answered it 5xx POISON_AFTER times, each after another batch went in since the last
(so the cell works, and it is this batch it fails on), it is deleted and counted as
failed, as SQS's redrive policy would move it to a dead-letter queue. Answers in a row
with nothing going in between count once: a batch that waited through an outage of
the whole cell was dropped by one more 5xx after it (adv31 s/2). The answers that say
"later" (429, 502, 503, 504) never count: after five rate limits a good batch was
called this batch's fault (adv31 s/5). A lone poison batch, with nothing else coming,
is retried at the backoff's pace, 5 s, for as long as that lasts.

A batch left on the queue is made visible again after a second (ChangeMessageVisibility)
rather than after the queue's 30 s visibility timeout, so a cell back from a restart
gets it at once. Delivery is at least once; admin_server gives every document an `_id`, so a re-sent
batch overwrites itself in the cell.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any

from hippo_platform.services.common.aws_lite import AwsError
from hippo_platform.services.common.client import JsonClient, segment
from hippo_platform.services.common.errors import HttpError
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.sqs import Message, Queue, QueueMissing
from hippo_platform.services.common.worker import BackgroundLoop
from hippo_platform.services.ecom_indexer_service.drainer import PERMANENT, Backoff, _now


class Stats:
    """Counters the consumer thread writes and /stats reads, under `lock`."""

    def __init__(self) -> None:
        self.delivered = 0
        self.documents = 0
        self.failed = 0
        self.retries = 0
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.lock = threading.Lock()

    def view(self) -> dict[str, Any]:
        with self.lock:
            return {"delivered": self.delivered, "documents": self.documents,
                    "failed": self.failed, "retries": self.retries,
                    "lastError": self.last_error, "lastErrorAt": self.last_error_at}


POISON_AFTER = 5
"""5xx answers to one batch, each after another batch went in, before it is dropped."""
TRANSIENT = frozenset({429, 502, 503, 504})
"""The cell says "not now", not "not this": never counted against a batch."""
TRIES_KEPT = 10_000
"""Batches whose 5xx answers are counted at once; the oldest count is forgotten past it."""


class Retry(Exception):
    """Leave the message on the queue and back off: a peer is down or answered 5xx.
    `whole`: the cell is unreachable, so the rest of the receive would fail too."""

    def __init__(self, text: str, whole: bool = False) -> None:
        super().__init__(text)
        self.whole = whole


def check_batch(body: Any) -> tuple[str, str, list[Any], str]:
    """(batchId, index, documents, apiKey), or ValueError naming what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    index, key, docs = body.get("index"), body.get("apiKey"), body.get("documents")
    if not isinstance(index, str) or not index:
        raise ValueError("field 'index' missing or not a string")
    if not isinstance(key, str) or not key:
        raise ValueError("field 'apiKey' missing or not a string")
    if not isinstance(docs, list) or not docs:
        raise ValueError("field 'documents' missing, empty or not a list")
    return str(body.get("batchId") or "-"), index, docs, key


class Consumer(BackgroundLoop):
    def __init__(self, queue: Queue, cell: JsonClient, *, wait_s: int = 1,
                 backoff: Backoff | None = None) -> None:
        self.queue = queue
        self.cell = cell
        self.wait_s = wait_s
        self.backoff = backoff or Backoff()
        self.stats = Stats()
        self._in_flight: dict[str, Message] = {}
        """Received and not yet deleted or released, by receipt: what a stop hands back."""
        self._fails: dict[str, tuple[int, int]] = {}
        """Message id -> (the cell's counted 5xx answers to it, deliveries at the last)."""
        super().__init__("consumer")

    def run(self) -> None:
        while not self.stop_event.is_set():
            delay = 0.0
            try:
                self.deliver_all(self.queue.receive(wait_s=self.wait_s))
                self.backoff.reset()
            except (Retry, QueueMissing, AwsError) as exc:
                delay = self.backoff.next_delay()
                self._error(f"{exc}; retrying in {delay:.1f}s", retry=True)
            except Exception as exc:  # a malformed answer must not end the loop for good
                log_error(traceback.format_exc().rstrip())
                delay = self.backoff.next_delay()
                self._error(f"{type(exc).__name__}: {exc}; retrying in {delay:.1f}s", retry=True)
            self.stop_event.wait(delay)

    def deliver_all(self, received: list[Message]) -> None:
        """Each message of one receive on its own: one the cell answers 5xx is released
        and the next is tried. The first such answer had ended the receive, leaving
        the rest invisible for the queue's 30 s, and then behind it again (adv28 k/4).
        Retry (the last one) once all were tried; an unreachable cell releases the rest
        at once, as every one of them would fail the same way."""
        retry: Retry | None = None
        self._in_flight = {m.receipt: m for m in received}
        for n, message in enumerate(received):
            if self.stop_event.is_set():  # stopping: the rest back in a second, not 30 s
                for rest in received[n:]:
                    self._release(rest)
                break
            try:
                self.deliver(message)
            except Retry as exc:
                retry = exc
                if exc.whole:
                    for rest in received[n + 1:]:
                        self._release(rest)
                    break
            finally:
                self._in_flight.pop(message.receipt, None)
        self._in_flight = {}
        if retry is not None:
            raise retry

    def stop(self, timeout: float = 1.0) -> None:
        """SIGTERM: the batch under way gets a second to finish; one held by a slow cell
        is handed back (visible again in a second), and the service exits within its
        stop_timeout. It waited 5 s for the thread, was killed at the same 5 s, and the
        batch came back only after the queue's 30 s (adv31 s/4)."""
        super().stop(timeout)
        if self.thread.is_alive():
            for message in list(self._in_flight.values()):
                self._release(message)

    def deliver(self, message: Message) -> None:
        try:
            batch_id, index, docs, key = check_batch(message.body)
        except ValueError as exc:
            self.queue.delete(message.receipt)
            self._failed(f"dropped a message that is not an upload batch ({exc}): "
                         f"{message.raw[:200]!r}")
            return
        try:
            answer = self.cell.request("POST", f"/indexes/{segment(index)}/documents",
                                       body={"documents": docs}, headers={"x-api-key": key})
        except HttpError as exc:  # unreachable: the client's 502 names the cell
            self._release(message)
            raise Retry(f"batch {batch_id}: {exc.message}", whole=True) from None
        if answer.ok:
            self.queue.delete(message.receipt)
            self._fails.pop(message.id, None)
            with self.stats.lock:
                self.stats.delivered += 1
                self.stats.documents += len(docs)
            log_line(f"batch {batch_id}: {len(docs)} docs from SQS into '{index}'")
            return
        reason = f"cell answered {answer.status}: {answer.error_text()}"
        if answer.status not in PERMANENT and not self._poison(message, answer.status):
            self._release(message)
            raise Retry(f"batch {batch_id}: {reason}")
        self.queue.delete(message.receipt)
        self._fails.pop(message.id, None)
        if answer.status not in PERMANENT:
            reason += (f", {POISON_AFTER} times, each after other batches went in: it is "
                       "this batch the cell fails on")
        self._failed(f"batch {batch_id} for index '{index}' failed for good: {reason}")

    def _poison(self, message: Message, status: int) -> bool:
        """One more 5xx answer to `message`: whether that makes it a batch to drop."""
        if not message.id or status in TRANSIENT:
            return False
        with self.stats.lock:
            delivered = self.stats.delivered
        counted, last = self._fails.pop(message.id, (0, -1))
        if last < delivered:  # its first, or another batch went in since the last counted
            counted, last = counted + 1, delivered
        if counted >= POISON_AFTER:
            return True
        self._fails[message.id] = (counted, last)  # now the newest
        while len(self._fails) > TRIES_KEPT:
            del self._fails[next(iter(self._fails))]
        return False

    def _release(self, message: Message) -> None:
        try:
            self.queue.release(message.receipt)
        except AwsError as exc:  # it still comes back, after the visibility timeout
            log_error(f"ecom_indexer: could not release a message early: {exc}")

    def _failed(self, text: str) -> None:
        with self.stats.lock:
            self.stats.failed += 1
        self._error(text)

    def _error(self, text: str, *, retry: bool = False) -> None:
        with self.stats.lock:
            self.stats.last_error, self.stats.last_error_at = text, _now()
            if retry:
                self.stats.retries += 1
        log_error(f"ecom_indexer: {text}")
