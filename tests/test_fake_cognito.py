"""fake_cognito: the importable token functions, and the service as a real process
(issue, validate, userinfo, tampering refused with 401)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from service_process import ServiceProcess, ServiceStarter

from hippo_platform.services.fake_cognito.tokens import (
    DEFAULT_SECRET,
    TokenError,
    issue_token,
    verify_token,
)

SECRET = "test-secret"


def _b64(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def tampered(token: str) -> str:
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    return f"{head}.{_b64(claims)}.{sig}"


def test_round_trip_and_refusals() -> None:
    token = issue_token({"sub": "alice", "scope": "read"}, SECRET, ttl=60, now=1000)
    claims = verify_token(token, SECRET, now=1030)
    assert claims["sub"] == "alice" and claims["exp"] == 1060 and claims["iat"] == 1000
    with pytest.raises(TokenError, match="bad signature"):
        verify_token(tampered(token), SECRET, now=1030)
    with pytest.raises(TokenError, match="bad signature"):
        verify_token(token, "other-secret", now=1030)
    with pytest.raises(TokenError, match="expired"):
        verify_token(token, SECRET, now=1061)
    assert verify_token(token, SECRET, now=1061, leeway=5)["sub"] == "alice"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "not.a.token",
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': 'x', 'exp': 9e12})}.c2ln",
        f"{_b64({'alg': 'HS512'})}.{_b64({'sub': 'x'})}.c2ln",
    ],
)
def test_malformed_and_other_algorithms_are_refused(token: str) -> None:
    with pytest.raises(TokenError):
        verify_token(token, SECRET)


@pytest.fixture(scope="module")
def cognito(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with ServiceStarter(tmp_path_factory.mktemp("cognito")) as start:
        yield start.start("fake_cognito", env={"FAKE_COGNITO_SECRET": SECRET})


def token_for(cognito: ServiceProcess, **kw: Any) -> requests.Response:
    return requests.post(f"{cognito.base_url}/oauth2/token", timeout=10, **kw)


def test_issue_by_username_and_verify_in_process(cognito: ServiceProcess) -> None:
    response = token_for(cognito, json={"username": "alice"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    claims = verify_token(body["access_token"], SECRET)  # what admin_server will do
    assert claims["sub"] == "alice" and claims["username"] == "alice"
    with pytest.raises(TokenError):
        verify_token(body["access_token"], DEFAULT_SECRET)


def test_client_credentials_form_and_basic_auth(cognito: ServiceProcess) -> None:
    form = token_for(cognito, data={"grant_type": "client_credentials", "client_id": "svc"})
    assert verify_token(form.json()["access_token"], SECRET)["client_id"] == "svc"
    basic = token_for(cognito, data={"grant_type": "client_credentials"}, auth=("svc2", "secret"))
    assert verify_token(basic.json()["access_token"], SECRET)["sub"] == "svc2"


@pytest.mark.parametrize(
    ("kw", "status"),
    [
        ({"json": {}}, 400),
        ({"data": {"grant_type": "client_credentials"}}, 400),
        ({"data": {"grant_type": "authorization_code", "code": "x"}}, 400),
        ({"data": b"{broken", "headers": {"Content-Type": "application/json"}}, 400),
    ],
)
def test_bad_token_requests(cognito: ServiceProcess, kw: dict[str, Any], status: int) -> None:
    response = token_for(cognito, **kw)
    assert response.status_code == status and response.json()["error"]


def test_validate_and_userinfo(cognito: ServiceProcess) -> None:
    token = token_for(cognito, json={"username": "bob"}).json()["access_token"]
    base = cognito.base_url
    ok = requests.post(f"{base}/validate", json={"token": token}).json()
    assert ok["active"] is True and ok["claims"]["sub"] == "bob"
    bad = requests.post(f"{base}/validate", json={"token": tampered(token)})
    assert bad.status_code == 401 and "bad signature" in bad.json()["error"]
    assert requests.post(f"{base}/validate", json={}).status_code == 400
    me = requests.get(f"{base}/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["username"] == "bob"
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {token}"}):
        response = requests.get(f"{base}/userinfo", headers=headers)
        assert response.status_code == 401 and "WWW-Authenticate" in response.headers
    forged = requests.get(
        f"{base}/userinfo", headers={"Authorization": f"Bearer {tampered(token)}"}
    )
    assert forged.status_code == 401
    assert requests.get(f"{base}/oauth2/token").status_code == 405


DEEP = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).rstrip(b"=").decode()
HEAD = _b64({"alg": "HS256", "typ": "JWT"})


DIGITS = base64.urlsafe_b64encode(b'{"alg": ' + b"1" * 5000 + b"}").rstrip(b"=").decode()


@pytest.mark.parametrize("token", [f"{DEEP}.e30.x", f"{HEAD}.{DEEP}.x", f"{HEAD}.\u00e9.x",
                                   f"{HEAD}.e30.\u00e9", "\u00e9.e30.x", f"{DIGITS}.e30.AAAA"])
def test_a_malformed_token_is_a_401_never_a_500(cognito: ServiceProcess, token: str) -> None:
    """A header 3,000 levels deep was a RecursionError, a payload with é a
    UnicodeEncodeError: a 500 and a traceback in the log for anyone, unauthenticated,
    here and at admin_server, which asks the same code (adv28 k/5)."""
    with pytest.raises(TokenError, match="malformed token"):
        verify_token(token, SECRET)
    answer = requests.post(f"{cognito.base_url}/validate", json={"token": token})
    assert answer.status_code == 401 and "malformed token" in answer.json()["error"], \
        answer.text


def test_secret_is_not_logged(cognito: ServiceProcess) -> None:
    out = cognito.output()
    assert "FAKE_COGNITO_SECRET" in out and SECRET not in out
