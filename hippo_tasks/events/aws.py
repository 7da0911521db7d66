"""The one door to AWS: clients that retry, and errors a person can act on.

Every AWS call in Hippodrome goes through `client()`, so retries, timeouts, the endpoint
(real AWS or the local stack's moto server) and the region are decided in one place.
botocore failures are turned into `AwsError`, whose message is one sentence that says
what went wrong and what to do: nobody should have to read a botocore traceback to
learn that their SSO session expired.

boto3 is imported inside functions only: the CLI imports every task module to list
commands, and most commands never touch AWS, so they must not pay for loading boto3
(nor fail where it is not installed).

Credentials never appear in a message: the sentences are built from error codes and
operation names, and any AWS-provided text is passed through `redact()` first.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from hippo_tasks.errors import HippoError

DEFAULT_REGION = "us-east-1"
MAX_ATTEMPTS = 8
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
LOCAL_READ_TIMEOUT_S = 10.0
LOCAL_ATTEMPTS = 2
"""A loopback endpoint is the stack's moto: it answers in milliseconds, or it is hung
(SIGSTOP, a deadlock), and eight 30-second waits per call made `events.validate` sit
silent for minutes after a first answer. Real AWS keeps READ_TIMEOUT_S and MAX_ATTEMPTS."""
ANSWER_WITHIN_S = 10.0
"""How long a local endpoint has to answer a first plain GET before set-up or checks
begin (probe_endpoint): moto answers in milliseconds once up, a second or so cold."""
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
"""What a loopback endpoint (the stack's moto) gets when no credentials are configured:
moto accepts any key, and no AWS account answers on a loopback address."""

# IAM actions whose name is not `<service>:<OperationName>`.
_PERMISSION_OVERRIDES = {
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "HeadObject"): "s3:GetObject",
}
_ACCESS_DENIED_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedException",
    "AuthorizationError",
}
_BAD_CREDENTIAL_CODES = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
}
_EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}
_THROTTLING_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
}
_SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b")
# moto's IAM enforcement answers JSON-protocol services with an XML error body, which
# botocore then reports with the HTTP status as the code.
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_PERFORM = re.compile(r"perform: ([a-z0-9-]+:[A-Za-z0-9*]+)")
"""AWS's own AccessDenied text names the action it refused (iam:PassRole on PutTargets)."""
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")

# Error kinds after which no other AWS call can succeed either: callers stop there.
FATAL_KINDS = frozenset(
    {
        "no-boto3",
        "no-credentials",
        "sso-expired",
        "bad-credentials",
        "expired-credentials",
        "unreachable",
        "bad-config",
    }
)


class AwsError(HippoError):
    """An AWS failure, reduced to what a person needs: its kind and one sentence."""

    def __init__(self, kind: str, sentence: str, permission: str | None = None,
                 code: str | None = None) -> None:
        self.kind = kind
        self.sentence = sentence
        self.permission = permission
        self.code = code

    def message(self) -> str:
        return self.sentence

    @property
    def fatal(self) -> bool:
        return self.kind in FATAL_KINDS


def resolve_endpoint(endpoint_url: str | None = None) -> str | None:
    """The explicit endpoint wins; else AWS_ENDPOINT_URL; None means real AWS."""
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None


def is_loopback(endpoint_url: str | None) -> bool:
    """True for http://127.0.0.1:9003, http://localhost:9003, http://[::1]:9003."""
    host = urlsplit(endpoint_url).hostname if endpoint_url else None
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _setting_up() -> Iterator[None]:
    """Where boto3 reads the AWS configuration: making a session (the profile, the
    config file), resolving credentials and making a client (the region). What it
    refuses there (ProfileNotFound, InvalidRegionError, PartialCredentialsError,
    ConfigParseError...) is raised before any call, outside every caller's handling of
    calls, and was a traceback: it is said here, once, as explain()'s sentence."""
    from botocore.exceptions import BotoCoreError

    try:
        yield
    except BotoCoreError as exc:
        raise explain(exc) from None


def new_session(region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 session; share one between the clients of a command (models load once).

    Aimed at a loopback endpoint (the local moto) with no credentials configured, it
    uses dummy ones, so `events.validate --endpoint-url http://127.0.0.1:9003` works in
    a shell with no AWS setup. Configured credentials are always used as they are."""
    try:
        import boto3
    except ImportError:
        raise AwsError(
            "no-boto3",
            "boto3 is not installed, and AWS commands need it: pip install 'hippodrome[aws]'.",
        ) from None
    # AWS_REGION, as the AWS CLI and the other SDKs read it (over AWS_DEFAULT_REGION):
    # this botocore reads only AWS_DEFAULT_REGION, and a user's AWS_REGION was ignored
    # without a word, the checks (and --enable-events' resources) in another region.
    region = region or os.environ.get("AWS_REGION") or None
    with _setting_up():
        session = boto3.session.Session(region_name=region)
        if is_loopback(resolve_endpoint(endpoint_url)) and _credentials(session) is None:
            session = boto3.session.Session(region_name=region, **LOCAL_CREDENTIALS)
        else:
            _credentials(session)  # resolved now, bounded; the session keeps them
    return session


CREDENTIALS_TIMEOUT_S = 15.0
"""How long the credential chain (a profile's credential_process, an SSO refresh) may
take: a helper that never returned held `events.validate` silent for ever."""


def _credentials(session: Any) -> Any:
    """The session's credentials, within CREDENTIALS_TIMEOUT_S, or an AwsError saying
    what of the configuration failed: a credential_process that printed no JSON object
    (or could not be run) was a JSONDecodeError / AttributeError / FileNotFoundError
    traceback at the first call."""
    from botocore.exceptions import BotoCoreError

    got: list[Any] = []
    failed: list[BaseException] = []

    def resolve() -> None:
        try:
            got.append(session.get_credentials())
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    helper = threading.Thread(target=resolve, name="aws-credentials", daemon=True)
    helper.start()
    helper.join(CREDENTIALS_TIMEOUT_S)
    if helper.is_alive():
        raise AwsError("bad-config", f"the AWS credentials did not come within "
                       f"{CREDENTIALS_TIMEOUT_S:g}s: the profile's credential_process (or "
                       "SSO helper) is still running, perhaps waiting for a prompt; run it "
                       f"by hand, or check the profile in {_config_file()}")
    if failed:
        exc = failed[0]
        if isinstance(exc, BotoCoreError):
            raise exc
        raise AwsError("bad-config", redact(
            f"Your AWS configuration cannot be used (getting credentials failed: "
            f"{type(exc).__name__}: {str(exc)[:200]}): check the profile's "
            f"credential_process in {_config_file()}")) from None
    return got[0]


def client(
    service: str,
    endpoint_url: str | None = None,
    region: str | None = None,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    session: Any = None,
) -> Any:
    """A boto3 client with standard-mode retries (exponential backoff with jitter).

    The region comes from the argument, else the usual boto3 chain (AWS_REGION,
    AWS_DEFAULT_REGION, the profile), else us-east-1, so a bare moto setup works.
    `max_attempts` counts every attempt, the first included.
    """
    # The endpoint decides the credentials (dummy ones for a loopback one): a clean-up
    # after a crash goes to the endpoint the registry recorded, which the shell's
    # AWS_ENDPOINT_URL may no longer name, and it got "No AWS credentials found".
    shared = session if session is not None else new_session(region, endpoint_url)
    from botocore.config import Config

    local = is_loopback(resolve_endpoint(endpoint_url))
    config = Config(
        retries={"mode": "standard",
                 "total_max_attempts": min(max_attempts, LOCAL_ATTEMPTS) if local
                 else max_attempts},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=LOCAL_READ_TIMEOUT_S if local else READ_TIMEOUT_S,
    )
    with _setting_up():
        return shared.client(
            service,
            endpoint_url=resolve_endpoint(endpoint_url),
            region_name=region or shared.region_name or DEFAULT_REGION,
            config=config,
        )


def endpoint_url_problem(endpoint_url: str) -> str:
    """What makes `endpoint_url` no endpoint at all, as a sentence; '' when it is one."""
    try:
        parts = urlsplit(endpoint_url)
        port = parts.port
        port = (443 if parts.scheme == "https" else 80) if port is None else port
    except ValueError:  # a port that is not a number or out of range, `http://[::1`
        parts, port = urlsplit(""), 0
    if parts.scheme not in ("http", "https") or not parts.hostname or not port or any(
            c.isspace() for c in parts.netloc):
        # `notaurl` was reported as "Connection refused" by localhost:80.
        return (f"The AWS endpoint {endpoint_url!r} is not an http:// or https:// URL with "
                "a host (and a port, if any, from 1 to 65535): for the local stack's moto, "
                "http://127.0.0.1:9003")
    return ""


def probe_endpoint(endpoint_url: str, timeout: float = 2.0,
                   answer_within: float | None = None) -> None:
    """Fail in seconds, not after eight backed-off retries, when a local endpoint is down;
    with `answer_within`, also when a plain-HTTP one accepts connections but answers
    nothing: every call then waited its read timeout eight times over, and
    `events.validate` sat silent for over 20 minutes."""
    problem = endpoint_url_problem(endpoint_url)
    if problem:
        raise AwsError("unreachable", problem)
    parts = urlsplit(endpoint_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if answer_within is None or parts.scheme != "http":
                return
            sock.settimeout(answer_within)
            try:
                sock.sendall(f"GET / HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                             "Connection: close\r\n\r\n".encode("ascii", "replace"))
                if sock.recv(1):  # any answer at all, a 404 included
                    return
                reason = "it closed the connection without answering"
            except TimeoutError:
                reason = (f"it accepts connections but did not answer within "
                          f"{answer_within:g} s")
    except OSError as exc:  # refused, or the connect timed out (a filtered port)
        reason = str(exc.strerror or exc)
    raise unreachable(endpoint_url, reason)


def unreachable(endpoint_url: str, reason: str = "") -> AwsError:
    """The sentence for an endpoint nobody answers on; local endpoints point at moto."""
    base = _base_url(endpoint_url)
    host = urlsplit(base).hostname or ""
    why = f" ({reason})" if reason else ""
    if host and ".amazonaws.com" not in host:
        advice = (
            "the local stack's moto server may not be running: start it with "
            "`hd up --profile ecom`, or name the right endpoint (AWS_ENDPOINT_URL; "
            "`--endpoint-url` for `events.validate`)"
        )
    else:
        advice = "check your network connection and proxy settings"
    return AwsError("unreachable", f"Could not reach the AWS endpoint {base}{why}: {advice}.")


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


def permission_for(service: str | None, operation: str | None) -> str | None:
    """The IAM action a call needs: ("events", "DescribeEventBus") -> events:DescribeEventBus."""
    if not service or not operation:
        return None
    return _PERMISSION_OVERRIDES.get((service, operation), f"{service}:{operation}")


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """Blank out anything that looks like a credential before text reaches a person."""
    env = os.environ if env is None else env
    for name in _SECRET_ENV_VARS:
        value = env.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "****")
    return _ACCESS_KEY_ID.sub("****", shown_url(text))


_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/@]*@")


def shown_url(text: str) -> str:
    """`text` with each URL's `user:password@` as `***@`: an endpoint written with a
    password in it (`http://gw:secret@host:port`) was printed in the validate header and
    the rule's line."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)


def explain(exc: BaseException, service: str | None = None) -> AwsError:
    """Turn any botocore failure into an AwsError with one actionable sentence.

    `service` is the IAM prefix of the client that failed (events, pipes, dynamodb...),
    used to name the missing permission on AccessDenied.
    """
    if isinstance(exc, AwsError):
        return exc
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError):
        return AwsError(
            "no-credentials",
            "No AWS credentials found: run `aws sso login` (or `aws configure`), set "
            "AWS_PROFILE, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(any dummy values work against the local moto stack).",
        )
    config = _explain_configuration(exc)
    if config is not None:
        return config
    if isinstance(exc, bx.SSOError) or (
        isinstance(exc, bx.TokenRetrievalError)
        and getattr(exc, "kwargs", {}).get("provider") == "sso"
    ):
        return AwsError(
            "sso-expired",
            "Your AWS SSO session has expired or was never started: run `aws sso login"
            + _profile_hint()
            + "` and try again.",
        )
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError):
        url = str(getattr(exc, "kwargs", {}).get("endpoint_url") or "")
        return unreachable(url, "connection failed after retries")
    if isinstance(exc, bx.ReadTimeoutError):
        url = str(getattr(exc, "kwargs", {}).get("endpoint_url") or "")
        if is_loopback(url):  # the stack's moto, hung: no later call will do better
            return unreachable(url, f"it stopped answering: no answer within "
                                    f"{LOCAL_READ_TIMEOUT_S:g} s, twice")
        return AwsError(
            "timeout",
            f"The AWS endpoint {_base_url(url)} accepted the connection but did not answer "
            f"within {READ_TIMEOUT_S:g}s, even after retries; try again later.",
        )
    if isinstance(exc, bx.ClientError):
        return _explain_client_error(exc, service)
    if isinstance(exc, bx.BotoCoreError):
        return AwsError("other", redact(f"AWS call failed: {exc}."))
    from botocore.parsers import ResponseParserError

    if isinstance(exc, KeyError | ResponseParserError | AttributeError | TypeError):
        # botocore could not read the answer as AWS's: a server that answers HTTP but is
        # not AWS (another app on moto's port). Said as `KeyError: 'GetRoleResult'`, and
        # a field of the wrong type (`"Table": "str"`) as botocore's AttributeError
        # (adv28 k/7).
        what = f"AWS {service.upper() if service == 'iam' else service}" if service else "AWS"
        why = (f"its answer lacks {exc}" if isinstance(exc, KeyError)
               else "its answer is not AWS's format")
        return AwsError("other", redact(
            f"the endpoint answered, but not as {what} does ({why}): check "
            "AWS_ENDPOINT_URL (for the local stack's moto, http://127.0.0.1:9003)."))
    return AwsError("other", redact(f"AWS call failed: {type(exc).__name__}: {exc}."))


def _explain_configuration(exc: BaseException) -> AwsError | None:
    """The AWS settings boto3 refuses before any call (a profile, region, credential or
    config file it cannot use), each as what to change; None for any other failure."""
    from botocore import exceptions as bx

    facts = getattr(exc, "kwargs", {})
    if isinstance(exc, bx.PartialCredentialsError):
        return AwsError(
            "no-credentials",
            f"Your AWS credentials are incomplete: {facts.get('provider')} has no "
            f"{facts.get('cred_var')}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "together, or neither (to use a profile or `aws sso login`).",
        )
    if isinstance(exc, bx.ProfileNotFound):
        return AwsError(
            "bad-config",
            f"AWS_PROFILE {facts.get('profile')!r} names no profile of the AWS config file "
            f"({_config_file()}): correct it (`aws configure list-profiles` lists them) "
            "or unset AWS_PROFILE.",
        )
    if isinstance(exc, bx.InvalidRegionError | bx.UnknownRegionError | bx.NoRegionError):
        region = facts.get("region_name")
        what = (f"The AWS region {region!r} is not a region name" if region
                else "No AWS region is set")
        return AwsError(
            "bad-config",
            f"{what}: set AWS_REGION or AWS_DEFAULT_REGION (or the profile's `region` in "
            f"{_config_file()}) to one such as us-east-1.",
        )
    if isinstance(exc, bx.ConfigParseError | bx.ConfigNotFound):
        return AwsError(
            "bad-config",
            f"The AWS config file {facts.get('path') or _config_file()} cannot be read "
            f"({'no such file' if isinstance(exc, bx.ConfigNotFound) else 'not INI syntax'}"
            "): correct it, or point AWS_CONFIG_FILE at another.",
        )
    if isinstance(exc, bx.InvalidConfigError | bx.InfiniteLoopConfigError
                  | bx.CredentialRetrievalError):
        return AwsError(
            "bad-config",
            redact(f"Your AWS configuration cannot be used ({str(exc).rstrip('.')}): check "
                   f"the AWS_* variables and the profile in {_config_file()}."),
        )
    return None


def _config_file() -> str:
    return os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"


def _explain_client_error(exc: Any, service: str | None) -> AwsError:
    code = error_code(exc) or "Unknown"
    operation = getattr(exc, "operation_name", None)
    permission = permission_for(service, operation)
    call = f"{operation}" if operation else "the AWS call"
    if code in _ACCESS_DENIED_CODES:
        named = _PERFORM.search(str((exc.response.get("Error") or {}).get("Message") or ""))
        if named:
            permission = named.group(1)
        needed = permission or "the permission for this call"
        return AwsError(
            "access-denied",
            f"Access denied for {call}: your AWS identity needs the IAM permission "
            f"{needed} (check the role or SSO permission set you are using).",
            permission=permission,
            code=code,
        )
    if code in _EXPIRED_CODES:
        return AwsError(
            "expired-credentials",
            f"Your AWS credentials have expired ({code}): refresh them, e.g. "
            f"`aws sso login{_profile_hint()}`, and try again.",
            code=code,
        )
    if code in _BAD_CREDENTIAL_CODES:
        return AwsError(
            "bad-credentials",
            f"AWS rejected your credentials ({code}) on {call}: check AWS_PROFILE and the "
            "access key in use, or run `aws sso login`.",
            code=code,
        )
    if code in _THROTTLING_CODES:
        return AwsError(
            "throttled",
            f"AWS throttled {call} ({code}) even after its retries with exponential "
            "backoff: wait a minute and run the command again.",
            permission=permission,
            code=code,
        )
    message = str((exc.response.get("Error") or {}).get("Message") or "")
    if message.lstrip().startswith("<"):
        found = _XML_MESSAGE.search(message)
        message = found.group(1) if found else ""  # an HTML page has no <Message>
    if code.isdigit() and not message:
        # No AWS error in the answer, only its HTTP status (botocore's code then): a web
        # app on a wrong endpoint's port (its 404 page, nginx's 502). It read
        # `DescribeEventBus failed with 404.`
        what = f"AWS {service.upper() if service == 'iam' else service}" if service else "AWS"
        return AwsError("not-aws", redact(
            f"the endpoint answered HTTP {code} to {call}, but not as {what} does (no AWS "
            "error in it)"), code=code)
    detail = f": {message.rstrip('.')}" if message else ""
    return AwsError(
        "other", redact(f"{call} failed with {code}{detail}."), permission=permission, code=code
    )


def _profile_hint() -> str:
    profile = os.environ.get("AWS_PROFILE")
    return f" --profile {profile}" if profile else ""


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return url or "(unknown endpoint)"
