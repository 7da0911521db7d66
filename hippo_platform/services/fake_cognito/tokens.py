"""HS256 tokens in the JWT compact form, on hashlib/hmac only.

Real Cognito signs with RS256 and publishes keys; a shared HMAC secret is enough for a
local stack and needs no key distribution: a verifier only needs the secret. The
verifier pins the algorithm (a token claiming `alg: none` or anything else is
refused), compares signatures in constant time, and checks `exp`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping
from typing import Any

from hippo_platform.services.common.messages import strict_json

ALGORITHM = "HS256"
DEFAULT_SECRET = "hippodrome-local-fake-cognito-secret"
SECRET_ENV = "FAKE_COGNITO_SECRET"
ISSUER = "hippodrome-fake-cognito"


class TokenError(ValueError):
    """Why a token was refused (malformed, bad signature, expired...)."""


def secret_from_env() -> str:
    return os.environ.get(SECRET_ENV) or DEFAULT_SECRET


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed token (bad base64)") from None


def _json_part(text: str) -> dict[str, Any]:
    try:  # read before the signature: anyone's 500 (adv28 k/5, adv29 o/1)
        value = strict_json(_b64decode(text).decode("utf-8"))
    except ValueError as exc:  # NotJson, UnicodeDecodeError
        raise TokenError(f"malformed token (bad JSON: {exc})") from None
    if not isinstance(value, dict):
        raise TokenError("malformed token (not a JSON object)")
    return value


def _sign(signing_input: str, secret: str) -> bytes:
    return hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()


def issue_token(
    claims: Mapping[str, Any], secret: str, *, ttl: int = 3600, now: float | None = None
) -> str:
    issued = int(time.time() if now is None else now)
    payload = {
        "iss": ISSUER,
        "jti": secrets.token_hex(8),
        **claims,
        "iat": issued,
        "exp": issued + ttl,
    }
    header = {"alg": ALGORITHM, "typ": "JWT"}
    head = _b64encode(json.dumps(header, separators=(",", ":")).encode())
    body = _b64encode(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{head}.{body}"
    return f"{signing_input}.{_b64encode(_sign(signing_input, secret))}"


def verify_token(
    token: str, secret: str, *, now: float | None = None, leeway: float = 0.0
) -> dict[str, Any]:
    """The token's claims, or TokenError saying why it is not acceptable."""
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts):
        raise TokenError("malformed token (want header.payload.signature)")
    if not token.isascii():  # base64url is ASCII; the signing input is encoded as such
        raise TokenError("malformed token (not base64url: a character outside ASCII)")
    header = _json_part(parts[0])
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"unsupported algorithm {header.get('alg')!r}")
    expected = _sign(f"{parts[0]}.{parts[1]}", secret)
    if not hmac.compare_digest(expected, _b64decode(parts[2])):
        raise TokenError("bad signature")
    claims = _json_part(parts[1])
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise TokenError("token has no expiry")
    if (time.time() if now is None else now) > exp + leeway:
        raise TokenError("token expired")
    return claims
