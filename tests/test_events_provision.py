"""hippo_platform.provision on a real moto server: what it makes, twice, and its CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import moto_server
import pytest
from moto_server import DUMMY_CREDENTIALS, free_port

from hippo_platform.provision import (
    bucket_name,
    main,
    provision,
    provision_resources,
    role_name,
)
from hippo_tasks.events import aws

# The real-moto fixtures, made visible to this module (one server per module).
moto_server_url = moto_server.moto_server_url
moto_endpoint = moto_server.moto_endpoint

REPO = Path(__file__).resolve().parents[1]


def expected_names(prefix: str) -> list[str]:
    return [
        f"{prefix}EcomIndexSettingsTable",
        f"{prefix}MerchandisingTable",
        bucket_name(prefix),
        f"{prefix}ecom-ingest",
        f"{prefix}ecom-indexer",
        f"{prefix}marqo-api-key-secret",
        f"{prefix}EcomEventBus",
        f"{prefix}MerchandisingEventBus",
        role_name(prefix),
        f"{prefix}IndexSettingsEventPipe",
        f"{prefix}MerchandisingEventPipe",
    ]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hippo_platform.provision", *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_provision_creates_every_resource(moto_endpoint: str) -> None:
    prefix = "prov-all-"
    made = provision(prefix, moto_endpoint)
    assert list(made) == expected_names(prefix)

    ddb = aws.client("dynamodb", moto_endpoint)
    stream_arns = {}
    for suffix in ("EcomIndexSettingsTable", "MerchandisingTable"):
        table = ddb.describe_table(TableName=prefix + suffix)["Table"]
        assert made[prefix + suffix] == table["TableArn"]
        assert table["StreamSpecification"] == {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        keys = {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]}
        assert keys == {"pk": "HASH", "sk": "RANGE"}
        stream_arns[suffix] = table["LatestStreamArn"]

    aws.client("s3", moto_endpoint).head_bucket(Bucket="prov-all-exports")
    assert made["prov-all-exports"] == "arn:aws:s3:::prov-all-exports"
    sqs = aws.client("sqs", moto_endpoint)
    for queue in ("ecom-ingest", "ecom-indexer"):
        assert made[prefix + queue].startswith("arn:aws:sqs:")
        sqs.get_queue_url(QueueName=prefix + queue)
    secret = aws.client("secretsmanager", moto_endpoint).describe_secret(
        SecretId=f"{prefix}marqo-api-key-secret"
    )
    assert made[f"{prefix}marqo-api-key-secret"] == secret["ARN"]

    events = aws.client("events", moto_endpoint)
    pipes = aws.client("pipes", moto_endpoint)
    for pipe, table, bus in (
        ("IndexSettingsEventPipe", "EcomIndexSettingsTable", "EcomEventBus"),
        ("MerchandisingEventPipe", "MerchandisingTable", "MerchandisingEventBus"),
    ):
        assert events.describe_event_bus(Name=prefix + bus)["Arn"] == made[prefix + bus]
        described = pipes.describe_pipe(Name=prefix + pipe)
        assert described["Arn"] == made[prefix + pipe]
        assert described["CurrentState"] == "RUNNING"
        assert described["Source"] == stream_arns[table]
        assert described["Target"] == made[prefix + bus]
        assert described["RoleArn"] == made[role_name(prefix)]


def test_provision_twice_is_harmless(moto_endpoint: str) -> None:
    prefix = "prov-twice-"
    first = provision_resources(prefix, moto_endpoint)
    sm = aws.client("secretsmanager", moto_endpoint)
    value = sm.get_secret_value(SecretId=f"{prefix}marqo-api-key-secret")["SecretString"]
    second = provision_resources(prefix, moto_endpoint)
    assert all(r.created for r in first)
    assert not any(r.created for r in second)
    assert [(r.name, r.arn) for r in first] == [(r.name, r.arn) for r in second]
    # The secret keeps its value: keys encrypted with it must stay readable.
    assert sm.get_secret_value(SecretId=f"{prefix}marqo-api-key-secret")["SecretString"] == value


def test_provision_goes_on_when_a_disabled_stream_cannot_be_re_enabled(
    moto_endpoint: str,
) -> None:
    # Real AWS re-enables the stream; moto refuses ("Cannot enable stream"), so the
    # table is kept as it is and the resource carries a note.
    prefix = "prov-stream-"
    provision(prefix, moto_endpoint)
    ddb = aws.client("dynamodb", moto_endpoint)
    table = f"{prefix}MerchandisingTable"
    ddb.update_table(TableName=table, StreamSpecification={"StreamEnabled": False})
    again = {r.name: r for r in provision_resources(prefix, moto_endpoint)}
    assert again[table].note == "stream is disabled and could not be re-enabled"
    assert again[f"{prefix}EcomIndexSettingsTable"].note == ""
    assert not any(r.created for r in again.values())


@pytest.mark.parametrize(
    ("prefix", "bucket"),
    [
        ("dev-main-", "dev-main-exports"),
        ("dev-feature-add-auth-", "dev-feature-add-auth-exports"),
        ("Dev_Feature/X-", "dev-feature-x-exports"),
        ("my..team--", "my-team-exports"),
        ("xn--odd-", "xn-odd-exports"),
        ("-", "exports"),
    ],
)
def test_bucket_name_rule(prefix: str, bucket: str) -> None:
    assert bucket_name(prefix) == bucket


def test_long_bucket_names_are_cut_with_a_hash() -> None:
    one, other = bucket_name("a" * 70 + "-one-"), bucket_name("a" * 70 + "-two-")
    assert len(one) == len(other) == 63
    assert one != other
    assert one[-9] == "-" and one[0] == "a"


def test_cli_prints_one_line_per_resource_and_no_secret(moto_endpoint: str) -> None:
    prefix = "prov-cli-"
    out = run_cli("--table-prefix", prefix, "--endpoint-url", moto_endpoint)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    names = expected_names(prefix)
    assert len(lines) == len(names) + 1
    for line, name in zip(lines, names, strict=False):
        assert line.startswith("created") and f" {name} " in line and "arn:aws:" in line
    assert lines[-1].startswith(f"provisioned {len(names)} resources")

    again = run_cli("--table-prefix", prefix, "--endpoint-url", moto_endpoint)
    assert again.returncode == 0, again.stderr
    assert all(line.startswith("exists") for line in again.stdout.splitlines()[:-1])

    secret = aws.client("secretsmanager", moto_endpoint).get_secret_value(
        SecretId=f"{prefix}marqo-api-key-secret"
    )["SecretString"]
    for text in (out.stdout, out.stderr, again.stdout, again.stderr):
        assert secret not in text
        for value in DUMMY_CREDENTIALS.values():
            assert value not in text


def test_the_shells_aws_settings_for_real_accounts_do_not_reach_the_local_job(
        moto_endpoint: str, tmp_path: Path) -> None:
    """A `.bashrc` exporting AWS_PROFILE (no such profile here), a bogus
    AWS_STS_REGIONAL_ENDPOINTS or a proxy without NO_PROXY failed `hd up --profile
    ecom` in this job with a botocore traceback (adv28 k/8): none is for the local moto."""
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default]\ncredential_process = false\n")
    out = subprocess.run(
        [sys.executable, "-m", "hippo_platform.provision", "--table-prefix", "prov-shell-",
         "--endpoint-url", moto_endpoint],
        env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
             "AWS_PROFILE": "work", "AWS_STS_REGIONAL_ENDPOINTS": "bogus",
             "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"},
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and out.stdout.startswith("created"), out.stdout


def test_cli_names_the_resource_that_failed(moto_endpoint: str) -> None:
    """SQS refuses a queue name with a space or '!': the error names that queue. (With no
    credentials at all, a loopback endpoint gets dummy ones: test_events_validate.)"""
    out = subprocess.run(
        [sys.executable, "-m", "hippo_platform.provision", "--table-prefix", "prov bad!"]
        + ["--endpoint-url", moto_endpoint],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.startswith(
        "provision: Could not provision SQS queue prov bad!ecom-ingest: CreateQueue failed "
        "with InvalidParameterValue"
    ), out.stderr
    assert "Traceback" not in out.stderr


def test_cli_on_a_closed_port_says_moto_may_not_be_running(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["--table-prefix", "prov-down-", "--endpoint-url", url]) == 1
    err = capsys.readouterr().err
    assert f"Could not reach the AWS endpoint {url}" in err
    assert "moto server may not be running" in err


def test_cli_refuses_real_aws(moto_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--table-prefix", "prov-real-"]) == 2
    assert "refusing to create resources in a real AWS account" in capsys.readouterr().err
