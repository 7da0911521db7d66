"""hippo_tasks.events.aws against real botocore failures: a moto server, a moto server
enforcing IAM, an empty credential environment, expired SSO caches, a closed port."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import moto_server
import pytest
from moto_server import DUMMY_CREDENTIALS, free_port, isolate_aws_env, running_moto

from hippo_tasks.events import aws

# The real-moto fixtures, made visible to this module (one server per module).
moto_server_url = moto_server.moto_server_url
moto_endpoint = moto_server.moto_endpoint

REPO = Path(__file__).resolve().parents[1]
SSO_TOKEN = "hippo-test-sso-access-token"


def subprocess_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


# --- clients -----------------------------------------------------------------------


def test_importing_the_events_layer_does_not_import_boto3() -> None:
    code = (
        "import sys, hippo_tasks.events, hippo_tasks.events.aws, hippo_tasks.events.validate,"
        " hippo_platform.provision, hippo_tasks.tasks.events;"
        " print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_without_boto3_aws_commands_say_how_to_install_it(tmp_path: Path) -> None:
    shadow = tmp_path / "boto3"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('boto3 hidden by the test')\n")
    code = (
        "from hippo_tasks.events.validate import validate\n"
        "lines, ok = validate('x-', None); print(ok); print(lines[-1])\n"
    )
    env = subprocess_env(PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "False",
        "Cannot check EventBridge infrastructure: boto3 is not installed, and AWS commands "
        "need it: pip install 'hippodrome[aws]'.",
    ]


def test_client_takes_endpoint_from_env_retries_and_defaults_region(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    events = aws.client("events")
    assert events.meta.endpoint_url == moto_endpoint
    assert events.meta.region_name == "us-east-1"
    # A loopback endpoint is the stack's moto: 2 attempts of 10 s (it answers at once or
    # is hung); real AWS keeps 8 attempts and 30 s reads.
    assert events.meta.config.retries == {
        "mode": "standard",
        "total_max_attempts": aws.LOCAL_ATTEMPTS,
    }
    assert events.meta.config.read_timeout == aws.LOCAL_READ_TIMEOUT_S
    assert aws.MAX_ATTEMPTS == 8
    real = aws.client("events", "https://events.us-east-1.amazonaws.com")
    assert real.meta.config.retries["total_max_attempts"] == aws.MAX_ATTEMPTS
    assert real.meta.config.read_timeout == aws.READ_TIMEOUT_S
    assert isinstance(events.list_event_buses()["EventBuses"], list)


def test_explicit_endpoint_and_region_win(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    ddb = aws.client("dynamodb", endpoint_url=moto_endpoint, region="ap-southeast-2")
    assert ddb.meta.endpoint_url == moto_endpoint
    assert ddb.meta.region_name == "ap-southeast-2"
    assert aws.client("dynamodb").meta.region_name == "eu-west-1"
    assert "TableNames" in ddb.list_tables()


# --- error sentences from real failures ----------------------------------------------


def test_no_credentials_sentence(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real AWS (no endpoint): the call fails as it is signed, before anything is sent.
    (A loopback endpoint, the local moto, gets dummy credentials instead.)"""
    for name in DUMMY_CREDENTIALS:
        monkeypatch.delenv(name)
    with pytest.raises(Exception) as caught:
        aws.client("events").describe_event_bus(Name="any")
    err = aws.explain(caught.value, "events")
    assert err.kind == "no-credentials" and err.fatal
    assert err.message().startswith("No AWS credentials found")
    assert "aws sso login" in err.message()
    assert "\n" not in err.message()


def test_unreachable_endpoint_sentence_from_a_real_connection_failure(
    moto_endpoint: str,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Exception) as caught:
        aws.client("events", url, max_attempts=1).describe_event_bus(Name="any")
    err = aws.explain(caught.value, "events")
    assert err.kind == "unreachable" and err.fatal
    assert url in err.message()
    assert "moto server may not be running" in err.message()
    # `up --enable-events` has no --endpoint-url: the advice names what it reads too
    assert "AWS_ENDPOINT_URL" in err.message()


def test_probe_fails_fast_with_the_same_sentence() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(aws.AwsError) as caught:
        aws.probe_endpoint(url)
    assert time.monotonic() - started < 2
    assert caught.value.kind == "unreachable"
    assert f"Could not reach the AWS endpoint {url}" in caught.value.message()


@pytest.fixture(scope="module")
def iam_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second moto server that enforces IAM after three unauthenticated setup calls."""
    log_path = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    yield from running_moto(log_path, {"INITIAL_NO_AUTH_ACTION_COUNT": "3"})


def test_access_denied_names_the_permission(
    iam_moto: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws_env(monkeypatch, tmp_path)
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    iam = aws.client("iam", iam_moto)
    iam.create_user(UserName="reader")
    allow_sqs = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="reader", PolicyName="p", PolicyDocument=json.dumps(allow_sqs))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])

    aws.client("sqs", iam_moto).list_queues()  # allowed: the credentials do work
    calls = [
        ("events", "describe_event_bus", {"Name": "b"}),
        ("dynamodb", "describe_table", {"TableName": "t"}),
    ]
    for service, method, kwargs in calls:
        with pytest.raises(Exception) as caught:
            getattr(aws.client(service, iam_moto), method)(**kwargs)
        err = aws.explain(caught.value, service)
        assert err.kind == "access-denied" and not err.fatal
        expected = {"events": "events:DescribeEventBus", "dynamodb": "dynamodb:DescribeTable"}
        assert err.permission == expected[service]
        assert expected[service] in err.message()
        assert key["SecretAccessKey"] not in err.message()
        assert key["AccessKeyId"] not in err.message()


def write_expired_sso(home: Path, start_url: str) -> Path:
    """An SSO profile of each flavour whose cached token expired in 2020."""
    aws_dir = home / ".aws"
    cache = aws_dir / "sso" / "cache"
    cache.mkdir(parents=True)
    config = aws_dir / "config"
    config.write_text(
        f"[profile legacy]\nsso_start_url = {start_url}\nsso_region = us-east-1\n"
        "sso_account_id = 123456789012\nsso_role_name = Dev\nregion = us-east-1\n\n"
        "[profile session]\nsso_session = corp\nsso_account_id = 123456789012\n"
        "sso_role_name = Dev\nregion = us-east-1\n\n"
        f"[sso-session corp]\nsso_start_url = {start_url}\nsso_region = us-east-1\n"
    )
    token = {
        "startUrl": start_url,
        "region": "us-east-1",
        "accessToken": SSO_TOKEN,
        "expiresAt": "2020-01-01T00:00:00Z",
    }
    for key in (start_url, "corp"):
        (cache / f"{hashlib.sha1(key.encode()).hexdigest()}.json").write_text(json.dumps(token))
    return config


@pytest.mark.parametrize("profile", ["legacy", "session"])
def test_expired_sso_token_says_aws_sso_login(
    moto_endpoint: str, tmp_path: Path, profile: str
) -> None:
    # botocore fixes the SSO cache folder from HOME at import time: a fresh process.
    config = write_expired_sso(tmp_path, "https://example.awsapps.com/start")
    env = {k: v for k, v in subprocess_env().items() if k not in DUMMY_CREDENTIALS}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(config), AWS_PROFILE=profile)
    code = (
        "import sys; from hippo_tasks.events import aws\n"
        "try:\n"
        f"    aws.client('events', {moto_endpoint!r}).describe_event_bus(Name='b')\n"
        "except Exception as exc:\n"
        "    err = aws.explain(exc, 'events'); print(err.kind); print(err.message())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    kind, message = out.stdout.strip().split("\n")
    assert kind == "sso-expired"
    assert f"`aws sso login --profile {profile}`" in message
    assert SSO_TOKEN not in out.stdout + out.stderr


# --- sentences for failures moto cannot produce, on real botocore exceptions ------------


def client_error(code: str, operation: str, message: str = "") -> Exception:
    from botocore.exceptions import ClientError

    error: Exception = ClientError({"Error": {"Code": code, "Message": message}}, operation)
    return error


def test_throttling_says_it_was_already_retried() -> None:
    err = aws.explain(client_error("ThrottlingException", "DescribePipe", "Rate exceeded"), "pipes")
    assert err.kind == "throttled" and not err.fatal
    assert "DescribePipe" in err.message()
    # its retries, not a count: a loopback endpoint gets 2 attempts, AWS 8
    assert "even after its retries with exponential backoff" in err.message()


@pytest.mark.parametrize(
    ("service", "operation", "permission"),
    [
        ("pipes", "DescribePipe", "pipes:DescribePipe"),
        ("events", "PutRule", "events:PutRule"),
        ("iam", "CreateRole", "iam:CreateRole"),
        ("s3", "HeadBucket", "s3:ListBucket"),
    ],
)
def test_access_denied_permission_names(service: str, operation: str, permission: str) -> None:
    err = aws.explain(client_error("AccessDeniedException", operation), service)
    assert err.permission == permission
    assert f"needs the IAM permission {permission}" in err.message()


def test_unknown_errors_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-1234")
    text = "key AKIAABCDEFGHIJKLMNOP and s3cr3t-value-1234 leaked"
    err = aws.explain(client_error("WeirdError", "PutEvents", text), "events")
    assert "s3cr3t-value-1234" not in err.message()
    assert "AKIAABCDEFGHIJKLMNOP" not in err.message()
    assert err.message().startswith("PutEvents failed with WeirdError")


def test_an_answer_that_is_not_aws_is_a_sentence_not_a_python_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another app on moto's port answers 200 with HTML: botocore's reader raised
    KeyError('GetRoleResult'), said as `AWS call failed: KeyError: 'GetRoleResult'`."""
    from scripted_http import serving

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with serving([(200, {"hello": "world"}, 0.0)] * 10) as app, \
            pytest.raises(Exception) as caught:
        aws.client("iam", app.url, max_attempts=1).get_role(RoleName="x")
    err = aws.explain(caught.value, "iam")
    assert "the endpoint answered, but not as AWS IAM does" in err.message(), err.message()
    assert "Error" not in err.message() and "AWS_ENDPOINT_URL" in err.message()
    # Well-formed XML that is not AWS's: botocore's reader raised KeyError('GetRoleResult')
    err = aws.explain(KeyError("GetRoleResult"), "iam")
    assert "not as AWS IAM does (its answer lacks 'GetRoleResult')" in err.message()
