"""Where exports go: objects in the exports bucket on moto, and a short memory of them.

The S3 calls go through common.aws_lite, not boto3: two object calls do not justify
boto3's 25 MB and 1.5 s of import in a process that runs all day. A request handler
cannot wait through eight backed-off attempts while the webhook waits for it, so the
client makes two. S3 trouble becomes an HTTP error naming the bucket and endpoint: a
missing bucket is a 503 pointing at provisioning, an unreachable moto a 502.
"""

from __future__ import annotations

import decimal
import json
import secrets
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hippo_platform.services.common import BadGateway, ServiceUnavailable
from hippo_platform.services.common.aws_lite import AwsClient, AwsError

RECENT_KEPT = 500
S3_ATTEMPTS = 2


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def exact_json(document: Any) -> str:
    """JSON with each Decimal written as its own digits (json writes no Decimal, and a
    float would round a 38-digit DynamoDB number): each goes in as a unique marker
    string, and the quoted marker is replaced by the number's text."""
    nonce = secrets.token_hex(8)
    numbers: list[str] = []

    def marker(value: Any) -> str:
        if not isinstance(value, decimal.Decimal):
            raise TypeError(f"{type(value).__name__} is not JSON")
        numbers.append(str(value))  # `1.5E-10` and `12345.6789...` are JSON numbers both
        return f"@{nonce}:{len(numbers) - 1}@"

    text = json.dumps(document, sort_keys=True, ensure_ascii=False, default=marker)
    for n, digits in enumerate(numbers):
        text = text.replace(f'"@{nonce}:{n}@"', digits, 1)
    return text


class ExportStore:
    def __init__(self, bucket: str, s3: AwsClient) -> None:
        self.bucket = bucket
        self.endpoint_url = s3.endpoint
        self.s3 = s3
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_KEPT)
        self._lock = threading.Lock()
        self.count = 0

    def put(self, key: str, document: dict[str, Any]) -> int:
        data = exact_json(document).encode("utf-8")
        self._call("PutObject", lambda: self.s3.put_object(self.bucket, key, data,
                                                           "application/json"))
        return len(data)

    def delete(self, key: str) -> None:
        """S3 deletes are idempotent: removing an object never exported is fine."""
        self._call("DeleteObject", lambda: self.s3.delete_object(self.bucket, key))

    def _call(self, operation: str, call: Callable[[], object]) -> None:
        try:
            call()
        except AwsError as problem:
            if problem.code == "NoSuchBucket":
                raise ServiceUnavailable(
                    f"the exports bucket '{self.bucket}' does not exist on {self.endpoint_url}: "
                    "provisioning (the aws_provision job, or `python -m "
                    "hippo_platform.provision`) has not run for this table prefix",
                    extra={"bucket": self.bucket},
                ) from None
            raise BadGateway(
                f"S3 {operation} on {self.endpoint_url} failed: {problem.sentence}",
                extra={"peer": "moto", "url": self.endpoint_url},
            ) from None

    def remember(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._recent.appendleft(entry)
            self.count += 1

    def recent(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for _, e in zip(range(limit), self._recent, strict=False)]
