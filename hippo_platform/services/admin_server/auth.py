"""Who is calling: a controller-issued API key or a fake_cognito token, as a Bearer.

The two are told apart by shape: a token is three dot-separated parts (JWT compact
form); an API key never contains a dot. Tokens are checked locally with the shared
secret, so fake_cognito being down never locks anyone out; keys are checked against the
cell (`GET /account`), the one place that knows them, and a valid key is remembered for
a few seconds so a burst of requests costs one round trip rather than one each.
Unknown keys are never cached: a key created a moment ago works at once.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

from hippo_platform.services.common import Request, Unauthorized
from hippo_platform.services.common.client import JsonClient
from hippo_platform.services.fake_cognito.tokens import TokenError, verify_token

KEY_CACHE_TTL_S = 10.0
KEY_CACHE_MAX = 1024
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Principal(NamedTuple):
    kind: str  # "apiKey" or "cognito"
    subject: str  # the account id for a key, the token's `sub` for a token
    account_id: str | None = None
    api_key: str | None = None


class Authenticator:
    def __init__(self, cell: JsonClient, secret: str, *, ttl: float = KEY_CACHE_TTL_S) -> None:
        self.cell = cell
        self.secret = secret
        self.ttl = ttl
        self._lock = threading.Lock()
        self._known: dict[str, tuple[str, float]] = {}  # key -> (account id, expiry)

    def principal(self, req: Request) -> Principal:
        scheme, _, value = (req.header("authorization") or "").partition(" ")
        token = value.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(
                "missing credentials: send Authorization: Bearer <API key or token>",
                headers=_CHALLENGE,
            )
        if token.count(".") == 2:
            try:
                claims = verify_token(token, self.secret)
            except TokenError as exc:
                raise Unauthorized(f"invalid token: {exc}", headers=_CHALLENGE) from None
            return Principal("cognito", str(claims.get("sub") or claims.get("client_id") or ""))
        return self.key_principal(token)

    def key_principal(self, key: str) -> Principal:
        """The account owning `key`, per the cell; 401 when the cell does not know it."""
        now = time.monotonic()
        with self._lock:
            known = self._known.get(key)
        if known is not None and known[1] > now:
            return Principal("apiKey", known[0], known[0], key)
        answer = self.cell.request("GET", "/account", headers={"x-api-key": key})
        if answer.status == 401:
            raise Unauthorized("invalid API key", headers=_CHALLENGE)
        account_id = str(self.cell.check(answer)["accountId"])
        with self._lock:
            if len(self._known) >= KEY_CACHE_MAX:
                self._known.clear()
            self._known[key] = (account_id, now + self.ttl)
        return Principal("apiKey", account_id, account_id, key)

    def uploader(self, req: Request, principal: Principal) -> Principal:
        """The account documents are written to. A token names a person, not an account,
        so an upload with one must also carry the account's key as `x-api-key`."""
        if principal.api_key is not None:
            return principal
        key = req.header("x-api-key")
        if not key:
            raise Unauthorized(
                "document uploads with a Cognito token also need the account's API key "
                "in the x-api-key header (the cell stores documents per account)"
            )
        return self.key_principal(key)
