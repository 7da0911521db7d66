"""boto3 for the platform's provisioning job: retrying clients and one-sentence errors.

The orchestrator has its own, fuller door to AWS (hippo_tasks.events.aws, which also
explains SSO sessions, IAM permissions and throttling in real accounts); the platform
may not import it, and only ever talks to the local moto server, so this is the small
part provisioning needs. boto3 is imported inside functions: a service that imports
hippo_platform must not pay for loading it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_REGION = "us-east-1"
MAX_ATTEMPTS = 8
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b")
_SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


@dataclass
class AwsError(Exception):
    """An AWS failure, reduced to its kind and one sentence a person can act on."""

    kind: str
    sentence: str
    permission: str | None = None
    code: str | None = None

    def __str__(self) -> str:
        return self.message()

    def message(self) -> str:
        return self.sentence


def resolve_endpoint(endpoint_url: str | None = None) -> str | None:
    """The explicit endpoint wins; else AWS_ENDPOINT_URL; None means real AWS."""
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None


def is_loopback(endpoint_url: str | None) -> bool:
    host = urlsplit(endpoint_url).hostname if endpoint_url else None
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_LOCAL_KEPT = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                         "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
                         "AWS_EC2_METADATA_DISABLED"})


def local_only(endpoint_url: str, environ: MutableMapping[str, str]) -> list[str]:
    """Make a process's environment one for the local moto only: the shell's AWS settings
    for real accounts left out, and no proxy between it and the loopback endpoint.
    boto3 reads them before anything else: an `AWS_PROFILE` from a `.bashrc` naming no
    profile here, a bogus `AWS_STS_REGIONAL_ENDPOINTS` or an `HTTP_PROXY` without
    `NO_PROXY` failed `hd up --profile ecom` with a botocore traceback (adv28 k/8). For
    the provisioning job's own process (its `main`), never a library caller's. Returns
    the names left out."""
    if not is_loopback(endpoint_url):
        return []
    gone = no_account_settings(environ)
    host = urlsplit(endpoint_url).hostname or "127.0.0.1"
    for name in ("NO_PROXY", "no_proxy"):
        environ[name] = ",".join(filter(None, [environ.get(name, ""), host, "localhost",
                                               "127.0.0.1"]))
    return gone


def no_account_settings(environ: MutableMapping[str, str]) -> list[str]:
    """Leave out of a local process's environment the AWS settings that name a real
    account's configuration (a profile, config and credential files...): moto itself
    builds a botocore session to write its errors, and an `AWS_PROFILE` naming no profile
    made each of them a 500 (adv29 o/6). Returns the names left out."""
    gone = sorted(k for k in environ if k.startswith("AWS_") and k not in _LOCAL_KEPT
                  and not k.startswith("AWS_ENDPOINT_URL"))
    for name in gone:
        del environ[name]
    environ["AWS_CONFIG_FILE"] = environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    return gone


def new_session(region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 session; aimed at a loopback endpoint with no credentials configured, it
    uses dummy ones, which is all moto asks for."""
    try:
        import boto3
    except ImportError:
        raise AwsError("no-boto3", "boto3 is not installed, and provisioning needs it: "
                       "pip install 'hippodrome[aws]'.") from None
    session = boto3.session.Session(region_name=region)
    if is_loopback(resolve_endpoint(endpoint_url)) and session.get_credentials() is None:
        session = boto3.session.Session(region_name=region, **LOCAL_CREDENTIALS)
    return session


def client(service: str, endpoint_url: str | None = None, region: str | None = None, *,
           session: Any = None) -> Any:
    """A client with standard-mode retries (exponential backoff with jitter)."""
    shared = session if session is not None else new_session(region, endpoint_url)
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
                    connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S)
    return shared.client(service, endpoint_url=resolve_endpoint(endpoint_url),
                         region_name=region or shared.region_name or DEFAULT_REGION,
                         config=config)


def probe_endpoint(endpoint_url: str, timeout: float = 2.0) -> None:
    """Fail in seconds, not after eight backed-off retries, when moto is down."""
    parts = urlsplit(endpoint_url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        raise unreachable(endpoint_url, str(exc.strerror or exc)) from None


def unreachable(endpoint_url: str, reason: str = "") -> AwsError:
    base = _base_url(endpoint_url)
    why = f" ({reason})" if reason else ""
    return AwsError("unreachable", f"Could not reach the AWS endpoint {base}{why}: the local "
                    "stack's moto server may not be running: start it with `hd up "
                    "--profile ecom`, or pass the right --endpoint-url.")


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ClientError (`ResourceNotFoundException`...), else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None
    error = response.get("Error") or {}
    code = str(error.get("Code") or "") or None
    message = str(error.get("Message") or "")
    if code and code.isdigit():
        found = _XML_CODE.search(message)
        if found:
            return found.group(1)
    return code


def redact(text: str) -> str:
    """Blank out anything that looks like a credential before text reaches a person."""
    for name in _SECRET_ENV_VARS:
        value = os.environ.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "****")
    return _ACCESS_KEY_ID.sub("****", text)


def explain(exc: BaseException, service: str | None = None) -> AwsError:
    """Any botocore failure as an AwsError with one sentence."""
    if isinstance(exc, AwsError):
        return exc
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AwsError("no-credentials", "No AWS credentials found: export AWS_ACCESS_KEY_ID "
                        "and AWS_SECRET_ACCESS_KEY (any dummy values work against moto).")
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError):
        url = str(getattr(exc, "kwargs", {}).get("endpoint_url") or "")
        return unreachable(url, "connection failed after retries")
    if isinstance(exc, bx.ReadTimeoutError):
        url = str(getattr(exc, "kwargs", {}).get("endpoint_url") or "")
        return AwsError("timeout", f"The AWS endpoint {_base_url(url)} accepted the connection "
                        f"but did not answer within {READ_TIMEOUT_S:g}s, even after retries.")
    if isinstance(exc, bx.ClientError):
        code = error_code(exc) or "Unknown"
        call = getattr(exc, "operation_name", None) or "the AWS call"
        message = str((exc.response.get("Error") or {}).get("Message") or "")
        if message.lstrip().startswith("<"):
            found = _XML_MESSAGE.search(message)
            message = found.group(1) if found else ""
        detail = f": {message.rstrip('.')}" if message else ""
        permission = f"{service}:{call}" if service and call else None
        return AwsError("other", redact(f"{call} failed with {code}{detail}."),
                        permission=permission, code=code)
    return AwsError("other", redact(f"AWS call failed: {type(exc).__name__}: {exc}."))


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return url or "(unknown endpoint)"
