"""fake_cognito's routes: the token endpoint, and two ways to check a token.

`/oauth2/token` takes what Cognito clients send (form-encoded, client id in the body
or in HTTP Basic auth) and, for convenience in tests, JSON. It accepts any client and
any user: this is an identity stand-in, not a password store.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl

from hippo_platform.services.common import App, BadRequest, Request, Unauthorized, shapes
from hippo_platform.services.fake_cognito.tokens import TokenError, issue_token, verify_token

NAME = "fake_cognito"
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def _form_or_json(req: Request) -> dict[str, Any]:
    if "application/x-www-form-urlencoded" in (req.header("content-type") or ""):
        try:
            return dict(parse_qsl(req.body.decode("utf-8"), strict_parsing=False))
        except UnicodeDecodeError:
            raise BadRequest("form body is not UTF-8") from None
    return req.json_object()


def _basic_client_id(req: Request) -> str | None:
    auth = req.header("authorization") or ""
    if not auth.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed Basic authorization header") from None
    return decoded.partition(":")[0] or None


def _claims_for(body: dict[str, Any], basic_client: str | None) -> dict[str, Any]:
    grant = shapes.optional_str(body, "grant_type")
    client_id = shapes.optional_str(body, "client_id") or basic_client
    username = shapes.optional_str(body, "username")
    scope = shapes.optional_str(body, "scope")
    if grant not in ("", "client_credentials", "password"):
        raise BadRequest(f"unsupported_grant_type: {grant}")
    if grant == "client_credentials" or (not grant and client_id and not username):
        if not client_id:
            raise BadRequest("invalid_request: client_credentials needs a client_id")
        return {"sub": client_id, "client_id": client_id, "token_use": "access", "scope": scope}
    if username:
        claims = {"sub": username, "username": username, "token_use": "access"}
        return {**claims, "client_id": client_id, "scope": scope} if client_id else claims
    raise BadRequest(
        "invalid_request: give grant_type=client_credentials and client_id, or username"
    )


def build_app(secret: str, ttl: int, *, debug: bool = False) -> App:
    app = App(NAME, debug=debug)
    r = app.router

    def check(token: str) -> dict[str, Any]:
        try:
            return verify_token(token, secret)
        except TokenError as exc:
            raise Unauthorized(f"invalid token: {exc}", headers=_BEARER_CHALLENGE) from None

    @r.post("/oauth2/token")
    def token(req: Request) -> dict[str, Any]:
        claims = _claims_for(_form_or_json(req), _basic_client_id(req))
        return {
            "access_token": issue_token(claims, secret, ttl=ttl),
            "token_type": "Bearer",
            "expires_in": ttl,
        }

    @r.post("/validate")
    def validate(req: Request) -> dict[str, Any]:
        return {
            "active": True,
            "claims": check(shapes.require_str(req.json_object(), "token", max_len=8192)),
        }

    @r.get("/userinfo")
    def userinfo(req: Request) -> dict[str, Any]:
        auth = req.header("authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("missing Bearer token", headers={"WWW-Authenticate": "Bearer"})
        return check(value.strip())

    return app
