"""AWS Signature Version 4 on the standard library: the one signer of the services.

Why not botocore's: importing botocore costs a service about 25 MB of resident memory
and a second or more of start-up, to sign a handful of calls to the local moto server.
SigV4 is a canonical request, a string to sign and four HMACs; tests/test_aws_lite.py
checks the result against botocore's SigV4Auth and S3SigV4Auth for the same requests.

Two details differ between services and are easy to get wrong, so they are named here:
S3 signs the path exactly as sent (it is not escaped a second time), every other
service signs it escaped twice; and S3 wants the payload's hash in its own header
(x-amz-content-sha256), signed with the rest.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# botocore leaves these out of the signature: proxies and the SDK itself change them.
_UNSIGNED = frozenset({"expect", "user-agent", "x-amzn-trace-id", "authorization"})


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:  # a log line or traceback must never show the secret
        return f"Credentials(access_key={self.access_key!r}, secret_key='****')"


def amz_now() -> str:
    return datetime.now(UTC).strftime(TIMESTAMP_FORMAT)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_uri(path: str, *, s3: bool) -> str:
    """The path as signed: S3's verbatim, the others' dot segments and doubled slashes
    removed (RFC 3986 5.2.4, as botocore does) and escaped again."""
    path = path or "/"
    if s3:
        return path
    kept: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if kept:
                kept.pop()
        elif part and part != ".":
            kept.append(part)
    last = "/" if path.endswith("/") and kept else ""
    return quote("/" + "/".join(kept) + last, safe="/~")


def encode_query(params: Mapping[str, str]) -> str:
    """The query string, sent and signed alike: sorted, every byte but -_.~ escaped."""
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_request(
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    payload_hash: str,
    *,
    s3: bool,
) -> tuple[str, str]:
    """The canonical request and its signed header names (`a;b;c`). `headers` has
    lower-case names; all of them are signed except the few botocore never signs."""
    names = sorted(n for n in headers if n not in _UNSIGNED)
    lines = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names)
    signed = ";".join(names)
    text = "\n".join(
        [method, canonical_uri(path, s3=s3), encode_query(params), lines, signed, payload_hash]
    )
    return text, signed


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def authorization(
    creds: Credentials, service: str, region: str, amz_date: str, canonical: str, signed: str
) -> str:
    """The Authorization header's value for a canonical request."""
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, sha256_hex(canonical.encode("utf-8"))])
    key = _hmac(("AWS4" + creds.secret_key).encode("utf-8"), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return (f"{ALGORITHM} Credential={creds.access_key}/{scope}, SignedHeaders={signed}, "
            f"Signature={signature}")


def sign(
    creds: Credentials,
    *,
    service: str,
    region: str,
    method: str,
    host: str,
    path: str = "/",
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    payload: bytes = b"",
    amz_date: str | None = None,
    s3: bool = False,
) -> dict[str, str]:
    """Every header to send (lower-case names): `headers`, host, x-amz-date, the session
    token if any, S3's payload hash, and the Authorization that signs them all.

    `host` is what goes in the Host header (`127.0.0.1:5000`, no default port), `path`
    is already URL-escaped as it will be sent, `params` the query's raw values (sent
    as `encode_query(params)`).
    """
    amz_date = amz_date or amz_now()
    payload_hash = sha256_hex(payload)
    sent = {name.lower(): value for name, value in (headers or {}).items()}
    sent["host"] = host
    sent["x-amz-date"] = amz_date
    if creds.token:
        sent["x-amz-security-token"] = creds.token
    if s3:
        sent["x-amz-content-sha256"] = payload_hash
    canonical, signed = canonical_request(method, path, params or {}, sent, payload_hash, s3=s3)
    sent["authorization"] = authorization(creds, service, region, amz_date, canonical, signed)
    return sent
