"""Getting one event to its two destinations: the event bus and the daemon's webhook.

Each destination is tried on its own, with exponential backoff for failures that
waiting can fix (moto or the webhook down or answering 5xx/429, a timeout) and at once
for those it cannot (a 4xx: the event will never be accepted; a bus that does not
exist). A delivery is never retried forever: one table's stream must not stall behind
a target that stays down, so after the last attempt the event is given up on and the
caller logs exactly what was skipped. A success at one destination is never repeated
because the other failed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from hippo_contract.webhook import TOKEN_HEADER
from hippo_platform.services.common import HttpError
from hippo_platform.services.common.aws_lite import AwsClient, AwsError
from hippo_platform.services.common.client import JsonClient

RETRY_STATUSES = frozenset({408, 429})


class DeliveryError(Exception):
    def __init__(self, message: str, *, retryable: bool, patient: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.patient = patient
        """Worth retrying for as long as an API destination would (WEBHOOK_BACKOFF): the
        receiver is down or its route's service is, not broken."""


class Backoff(NamedTuple):
    """Delays between attempts: first, doubling, capped; `attempts` counts the first."""

    attempts: int = 6
    first: float = 0.2
    cap: float = 5.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.cap)


WEBHOOK_BACKOFF = Backoff(attempts=185, first=0.2, cap=5.0)
"""About 15 minutes, as an EventBridge API destination retries (185 attempts): the webhook
answers 503 while the route's service is down (stopped, restarting, backing off after a
crash), and after the six tries of AWS calls (~6 s) the change was skipped and lost for
good, however soon the exporter came back. Changes after it wait behind it, in order."""


class Outcome(NamedTuple):
    destination: str
    ok: bool
    text: str  # what happened, for the log line
    attempts: int


def attempt(
    destination: str, send: Callable[[], str], backoff: Backoff, stop: threading.Event,
    patient: Backoff | None = None,
) -> Outcome:
    """Run `send` until it succeeds, fails for good, runs out of attempts, or we stop;
    an error that says the receiver is only away (`patient`) is tried for longer."""
    tries = 0
    while True:
        tries += 1
        try:
            text = send()
            return Outcome(destination, True, text + (f" (attempt {tries})" if tries > 1 else ""),
                           tries)
        except DeliveryError as exc:
            if not exc.retryable:
                return Outcome(destination, False, str(exc), tries)
            plan = patient if exc.patient and patient is not None else backoff
            if tries >= plan.attempts:
                return Outcome(destination, False, f"{exc} (gave up after {tries} attempts)",
                               tries)
            if stop.wait(min(plan.first * 2 ** (tries - 1), plan.cap)):
                return Outcome(destination, False, f"{exc} (stopping)", tries)


class Bus:
    """EventBridge PutEvents, as the pipe's target would do it."""

    def __init__(self, aws: AwsClient) -> None:
        self.aws = aws

    def put(self, event: dict[str, Any], bus: str) -> str:
        entry = {
            "Source": event["source"],
            "DetailType": event["detail-type"],
            "Detail": json.dumps(event["detail"]),
            "EventBusName": bus,
            "Resources": event["resources"],
        }
        try:
            answer = self.aws.call("events", "PutEvents", {"Entries": [entry]})
        except AwsError as problem:
            permanent = problem.code in ("ResourceNotFoundException", "ValidationException")
            raise DeliveryError(f"put_events on {bus}: {problem.sentence}",
                                retryable=not permanent) from None
        failed = [e for e in answer.get("Entries", []) if e.get("ErrorCode")]
        if answer.get("FailedEntryCount") or failed:
            first = failed[0] if failed else {}
            raise DeliveryError(
                f"put_events on {bus} rejected the entry: {first.get('ErrorCode')}: "
                f"{first.get('ErrorMessage')}",
                retryable=first.get("ErrorCode") in ("ThrottlingException", "InternalException"),
            )
        ids = [e.get("EventId") for e in answer.get("Entries", [])]
        return f"bus {bus} ok ({ids[0] if ids else 'no id'})"


class Webhook:
    """POST the whole event to the daemon's webhook, as an API destination would."""

    def __init__(self, url: str, token: str = "", timeout: float = 10.0) -> None:
        self.url = url
        self.client = JsonClient(url, peer="webhook", timeout=timeout)
        self.headers = {TOKEN_HEADER: token} if token else {}

    def post(self, event: dict[str, Any]) -> str:
        started = time.perf_counter()
        try:
            answer = self.client.request("POST", "", body=event, headers=self.headers)
        except HttpError as exc:  # unreachable, or an answer that is not JSON
            raise DeliveryError(f"webhook {self.url}: {exc.message}", retryable=True,
                                patient=True) from None  # the daemon restarting, say
        ms = (time.perf_counter() - started) * 1000
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.ok:
            how = body.get("webhook_status") or body.get("status") or "ok"
            target = body.get("target") or body.get("reason") or ""
            return f"webhook {answer.status} {how} {target}".rstrip() + f" in {ms:.0f}ms"
        text = f"webhook {self.url} answered {answer.status}: {answer.error_text()}"
        if answer.status == 401:
            text += " (is HIPPODROME_WEBHOOK_TOKEN the daemon's token?)"
        retryable = answer.status >= 500 or answer.status in RETRY_STATUSES
        raise DeliveryError(text, retryable=retryable, patient=answer.status == 503)
