"""A small AWS client on the standard library, for services that talk to the local moto.

Why not boto3: importing boto3 and building a client costs each long-running service
about 25 MB of resident memory and 1.5-2 s of start-up, on the stack's critical path,
for a handful of calls: DynamoDB and DynamoDB Streams (JSON 1.0 protocol), EventBridge
PutEvents (JSON 1.1) and a few S3 object calls (REST). Each is one signed HTTP request
(aws_lite_sigv4), so this module is a transport with the parts of botocore those
services relied on: keep-alive connections, timeouts, retries with backoff, and one
error type carrying AWS's error code and message.

It only ever talks to an explicit endpoint (`AWS_ENDPOINT_URL`): there is no region
endpoint resolution, on purpose, so a service can never write into a real account.
The CLI (validate) and the provisioning job keep boto3 (hippo_tasks.events.aws and
hippo_platform.boto_client).

Connections: a small pool of keep-alive connections shared by all threads, rather than
one per thread, because the services answer on a thread per client connection: a
per-thread connection would be opened for every browser or curl that calls in. A
pooled connection idle for longer than moto's server might keep it is replaced before
use, and a failure on a reused connection is retried once, at once, on a fresh one
(that is what a server closing an idle socket looks like); it does not count as an
attempt. Retries: a refused or reset connection, a 5xx, a 429 or a throttling code,
with doubling, jittered delays. A timeout is not retried: the request may have been
applied, and the caller (often a request handler) should not wait for it twice.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from hippo_contract.http_client import BadAnswer, Connection, request_bytes
from hippo_platform.services import tls_context
from hippo_platform.services.common.aws_lite_sigv4 import Credentials, encode_query, sign

__all__ = ["AwsClient", "AwsConfig", "AwsConfigError", "AwsError", "Credentials", "Reply"]

DEFAULT_REGION = "us-east-1"
MAX_IDLE_S = 4.0  # werkzeug (moto) and most servers keep idle sockets longer than this

# Codes of errors that are not the caller's fault and were not applied.
UNREACHABLE = "Unreachable"
TIMEOUT = "Timeout"
INVALID_RESPONSE = "InvalidResponse"
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "ProvisionedThroughputExceededException", "RequestThrottled",
    "RequestThrottledException", "SlowDown", "LimitExceededException",
})
_XML_CODE = re.compile(r"<Code>([^<]*)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


class AwsConfigError(Exception):
    """The environment does not say where, or as whom, to call: fix it and restart."""


class AwsError(Exception):
    """A call that failed, with AWS's error code (`ResourceNotFoundException`,
    `NoSuchBucket`...) or one of UNREACHABLE, TIMEOUT, INVALID_RESPONSE, and its message.
    `str()` is one sentence fit for an HTTP error body or a log line."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        operation: str,
        endpoint: str,
        status: int | None = None,
        attempts: int = 1,
    ) -> None:
        self.code = code
        self.message = message
        self.operation = operation
        self.endpoint = endpoint
        self.status = status
        self.attempts = attempts
        super().__init__(self.sentence)

    @property
    def sentence(self) -> str:
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        if self.code == UNREACHABLE:
            return (f"{self.operation}: cannot reach the AWS endpoint {self.endpoint}{tries} "
                    f"({self.message}): is the local moto server running? (`hd status` "
                    "shows it; `hd start --service moto` starts it in a running stack, "
                    "`hd up --profile ecom` with the stack)")
        if self.code in (TIMEOUT, INVALID_RESPONSE):
            return f"{self.operation}: the AWS endpoint {self.endpoint} {self.message}{tries}"
        detail = f": {self.message.rstrip('.')}" if self.message else ""
        return f"{self.operation} failed with {self.code}{detail}{tries}."


class AwsConfig(NamedTuple):
    endpoint: str
    region: str
    credentials: Credentials

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AwsConfig:
        """AWS_ENDPOINT_URL (required), AWS_REGION / AWS_DEFAULT_REGION (else us-east-1),
        AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (required) / AWS_SESSION_TOKEN."""
        env = os.environ if env is None else env
        endpoint = env.get("AWS_ENDPOINT_URL") or ""
        if not endpoint:
            raise AwsConfigError("AWS_ENDPOINT_URL is not set: this service only talks to the "
                                 "local moto server, never to a real AWS account")
        access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise AwsConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set "
                                 "(any dummy values work against moto)")
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        creds = Credentials(access, secret, env.get("AWS_SESSION_TOKEN") or None)
        return cls(endpoint, region, creds)


class Reply(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class _JsonService(NamedTuple):
    target_prefix: str
    json_version: str
    signing_name: str


JSON_SERVICES = {
    "dynamodb": _JsonService("DynamoDB_20120810", "1.0", "dynamodb"),
    "dynamodbstreams": _JsonService("DynamoDBStreams_20120810", "1.0", "dynamodb"),
    "events": _JsonService("AWSEvents", "1.1", "events"),
    "sqs": _JsonService("AmazonSQS", "1.0", "sqs"),  # SQS's JSON protocol (common/sqs.py)
}


class AwsClient:
    def __init__(
        self,
        config: AwsConfig,
        *,
        attempts: int = 3,
        timeout: float = 10.0,
        backoff: float = 0.1,
        max_idle: int = 8,
    ) -> None:
        parts = urlsplit(config.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
            raise AwsConfigError(f"bad AWS endpoint URL {config.endpoint!r}: expected "
                                 "http(s)://host:port")
        self.config = config
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.attempts = max(1, attempts)
        self.timeout = timeout
        self.backoff = backoff
        self.max_idle = max_idle
        self._https = parts.scheme == "https"
        # Made now, so a service without TLS fails at its start, saying why.
        self._tls = tls_context() if self._https else None
        default_port = 443 if self._https else 80
        self._host = parts.hostname
        self._port = parts.port or default_port
        # As botocore signs it: the port only when it is not the scheme's default.
        self._host_header = parts.netloc if parts.port not in (None, default_port) else (
            parts.hostname)
        self._lock = threading.Lock()
        self._idle: list[tuple[Connection, float]] = []
        self._secrets = [s for s in (config.credentials.secret_key, config.credentials.token)
                         if s and len(s) >= 4]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> AwsClient:
        return cls(AwsConfig.from_env(env), **options)

    # -- JSON protocols: DynamoDB, DynamoDB Streams, EventBridge --------------------

    def call(self, service: str, operation: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`call("dynamodb", "GetItem", {...})`: the decoded answer, or AwsError."""
        spec = JSON_SERVICES[service]
        headers = {
            "content-type": f"application/x-amz-json-{spec.json_version}",
            "x-amz-target": f"{spec.target_prefix}.{operation}",
        }
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        reply = self.send(operation, spec.signing_name, "POST", "/", headers=headers,
                          payload=payload)
        try:
            answer = json.loads(reply.body) if reply.body.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            answer = None
        if not isinstance(answer, dict):
            raise AwsError(INVALID_RESPONSE, f"answered {reply.status} with a body that is not "
                           "a JSON object", operation=operation, endpoint=self.endpoint,
                           status=reply.status)
        return answer

    # -- S3 (path-style addressing, which moto and every local endpoint accept) -----

    def put_object(self, bucket: str, key: str, body: bytes,
                   content_type: str = "application/octet-stream") -> str:
        """The object's ETag."""
        reply = self.send("PutObject", "s3", "PUT", _s3_path(bucket, key),
                          headers={"content-type": content_type}, payload=body, s3=True)
        return reply.headers.get("etag", "")

    def get_object(self, bucket: str, key: str) -> bytes:
        return self.send("GetObject", "s3", "GET", _s3_path(bucket, key), s3=True).body

    def delete_object(self, bucket: str, key: str) -> None:
        """Idempotent, as in S3: deleting a key that is not there succeeds."""
        self.send("DeleteObject", "s3", "DELETE", _s3_path(bucket, key), s3=True)

    def head_bucket(self, bucket: str) -> None:
        """NoSuchBucket when it is missing (a HEAD answer has no body to say so)."""
        try:
            self.send("HeadBucket", "s3", "HEAD", _s3_path(bucket), s3=True)
        except AwsError as exc:
            if exc.status != 404:
                raise
            raise AwsError("NoSuchBucket", f"the bucket {bucket} does not exist",
                           operation="HeadBucket", endpoint=self.endpoint, status=404) from None

    # -- the transport -------------------------------------------------------------

    def send(
        self,
        operation: str,
        service: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        payload: bytes = b"",
        s3: bool = False,
    ) -> Reply:
        """One signed request, retried as the module says; a 2xx reply, else AwsError.
        `path` is URL-escaped already; `params` are the raw query values."""
        target = path + (f"?{encode_query(params)}" if params else "")
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            sent = sign(self.config.credentials, service=service, region=self.config.region,
                        method=method, host=self._host_header, path=path, params=params,
                        headers=headers, payload=payload, s3=s3)
            try:
                reply = self._exchange(method, target, sent, payload)
            except TimeoutError:
                raise AwsError(TIMEOUT, f"did not answer within {self.timeout:g}s",
                               operation=operation, endpoint=self.endpoint,
                               attempts=attempt) from None
            except (OSError, BadAnswer) as exc:
                error = AwsError(UNREACHABLE, f"{type(exc).__name__}: {exc}",
                                 operation=operation, endpoint=self.endpoint, attempts=attempt)
            else:
                if reply.status < 300:
                    return reply
                error = self._error(reply, operation, attempt)
                if not _retryable(error):
                    raise error
            if attempt == self.attempts:
                raise error
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _error(self, reply: Reply, operation: str, attempts: int) -> AwsError:
        code, message = "", ""
        text = reply.body.decode("utf-8", "replace").strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                data = {}
            if isinstance(data, dict):
                code = str(data.get("__type") or data.get("code") or data.get("Code") or "")
                message = str(data.get("message") or data.get("Message") or "")
        elif text.startswith("<"):  # S3, and moto's IAM refusals on any protocol
            from html import unescape  # only here: html.entities is 0.47 MB per service

            found_code, found_message = _XML_CODE.search(text), _XML_MESSAGE.search(text)
            code = unescape(found_code.group(1)) if found_code else ""
            message = unescape(found_message.group(1)) if found_message else ""
        code = code or reply.headers.get("x-amzn-errortype", "").partition(":")[0]
        code = code.rpartition("#")[2] or str(reply.status)
        for secret in self._secrets:
            message = message.replace(secret, "****")
        return AwsError(code, message, operation=operation, endpoint=self.endpoint,
                        status=reply.status, attempts=attempts)

    def _exchange(self, method: str, target: str, headers: dict[str, str],
                  payload: bytes) -> Reply:
        body = payload if payload or method in ("PUT", "POST") else None
        sent = headers if "host" in (k.lower() for k in headers) else {
            "Host": self._host_header, **headers}
        request = request_bytes(method, target, sent, body)
        for retry_fresh in (False, True):
            conn, reused = self._new_connection() if retry_fresh else self._checkout()
            try:
                answer = conn.exchange(request, head=method == "HEAD")
            except (OSError, BadAnswer) as exc:
                conn.close()
                if reused and not isinstance(exc, TimeoutError):
                    continue
                raise
            if answer.keep_alive:
                self._checkin(conn)
            else:
                conn.close()
            return Reply(answer.status, answer.headers, answer.body)
        raise AssertionError("unreachable")

    def _new_connection(self) -> tuple[Connection, bool]:
        return Connection(self._host, self._port, self.timeout, self._tls), False

    def _checkout(self) -> tuple[Connection, bool]:
        now = time.monotonic()
        stale = []
        found = None
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()
                if now - since <= MAX_IDLE_S and not conn.idle_dead():
                    found = conn
                    break
                stale.append(conn)
        for conn in stale:
            conn.close()
        return (found, True) if found is not None else self._new_connection()

    def _checkin(self, conn: Connection) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()


def _retryable(error: AwsError) -> bool:
    status = error.status or 0
    return status >= 500 or status == 429 or error.code in THROTTLING_CODES


def _s3_path(bucket: str, key: str = "") -> str:
    """botocore's escaping: the bucket whole, the key with its slashes kept."""
    path = "/" + quote(bucket, safe="")
    return path + "/" + quote(key, safe="/~") if key else path
