"""A DynamoDB Scan on the standard library: SigV4-signed JSON over one connection.

Why not boto3: importing it and building one client costs global_worker about 40 MB of
resident memory, for one read-only call made at most once a second. Scan over the
DynamoDB JSON protocol is one POST, and Signature Version 4 is a few HMACs; the tests
check the signature against botocore's own signer and run the scan on a real moto
server. Credentials come from the environment only (the stack sets dummy ones).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

SERVICE = "dynamodb"
TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"


class DynamoError(Exception):
    """A scan that did not succeed; the message names the endpoint and the reason."""


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise DynamoError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
        return cls(access, secret, env.get("AWS_SESSION_TOKEN") or None)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sign(
    creds: Credentials,
    region: str,
    host: str,
    headers: dict[str, str],
    payload: bytes,
    amz_date: str,
) -> str:
    """The Authorization header for `POST /` with `headers` (lower-case names, which are
    all signed, plus host and x-amz-date)."""
    signed = {**headers, "host": host, "x-amz-date": amz_date}
    names = sorted(signed)
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            "".join(f"{n}:{' '.join(signed[n].split())}\n" for n in names),
            ";".join(names),
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + creds.secret_key).encode(), amz_date[:8])
    for part in (region, SERVICE, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )


def plain(value: Mapping[str, Any]) -> Any:
    """One DynamoDB-typed attribute value as plain JSON (the types rules use)."""
    kind, inner = next(iter(value.items()))
    if kind in ("S", "B"):
        return inner
    if kind == "N":
        try:
            return int(inner)
        except ValueError:
            return float(inner)
    if kind == "BOOL":
        return bool(inner)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: plain(v) for k, v in inner.items()}
    if kind in ("L", "SS", "NS"):
        return [plain(v) if isinstance(v, dict) else v for v in inner]
    return inner


class DynamoClient:
    def __init__(
        self, endpoint: str, region: str, creds: Credentials, *, timeout: float = 5.0
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DynamoError(f"bad AWS endpoint URL {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self.creds = creds
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._netloc = parts.netloc
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        headers = {"content-type": CONTENT_TYPE, "x-amz-target": TARGET_PREFIX + operation}
        if self.creds.token:
            headers["x-amz-security-token"] = self.creds.token
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        auth = sign(self.creds, self.region, self._netloc, headers, payload, amz_date)
        sent = {**headers, "host": self._netloc, "x-amz-date": amz_date, "authorization": auth}
        with self._lock:
            status, data = self._send(payload, sent)
        try:
            answer: dict[str, Any] = json.loads(data) if data.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DynamoError(f"{self.endpoint} answered {status} with a non-JSON body") from None
        if status != 200:
            kind = str(answer.get("__type", "")).rpartition("#")[2] or f"HTTP {status}"
            message = answer.get("message") or answer.get("Message") or ""
            raise DynamoError(f"{operation} on {self.endpoint} failed: {kind}: {message}")
        return answer

    def _send(self, payload: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """One keep-alive connection; a stale one is replaced once."""
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                self._conn = cls(self._host, self._port, timeout=self.timeout)
            try:
                self._conn.request("POST", "/", body=payload, headers=headers)
                raw = self._conn.getresponse()
                status, data = raw.status, raw.read()
                if raw.will_close:
                    self.close()
                return status, data
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused and attempt == 0 and not isinstance(exc, TimeoutError):
                    continue
                raise DynamoError(
                    f"cannot reach the AWS endpoint {self.endpoint}: {type(exc).__name__}: {exc}"
                ) from None
        raise AssertionError("unreachable")

    def scan_all(self, table: str) -> list[dict[str, Any]]:
        """Every item of `table`, as plain dicts, following pagination."""
        items: list[dict[str, Any]] = []
        body: dict[str, Any] = {"TableName": table}
        while True:
            page = self.call("Scan", body)
            items.extend({k: plain(v) for k, v in item.items()} for item in page["Items"])
            if not page.get("LastEvaluatedKey"):
                return items
            body["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
