"""Create the ecom profile's AWS resources on the local moto server, idempotently.

The stack runs this as a `kind = "job"` after moto is healthy (DESIGN section 5), and
`hd up` may run it again on every start, so each step first looks for what exists
and only creates what is missing: running it twice is harmless. Failures name the
resource that could not be made, since "provisioning failed" alone sends people
grepping moto's log.

What moto 5.2.1 does and does not do here (checked against the real server):
- EventBridge Pipes are supported: a new pipe reports CREATING from CreatePipe and
  RUNNING from the first DescribePipe; StopPipe/StartPipe move it to STOPPED/RUNNING.
- moto's pipes only store their definition: no record ever flows from the DynamoDB
  stream to the bus. The stack's `event_pipe` service does that relaying instead.
- moto does not check that a pipe's source, target or role exist or allow anything,
  and CreatePipe on an existing name silently replaces it (real AWS answers
  ConflictException), which is why pipes are described before being created.
- moto refuses to re-enable a stream on a table that once had one (ResourceInUseException
  "Cannot enable stream"); real AWS allows it. Provisioning then keeps the table as it
  is, notes it, and `events.validate` reports the disabled stream.
- With IAM enforcement on (INITIAL_NO_AUTH_ACTION_COUNT), moto rejects signed Pipes
  requests with SignatureDoesNotMatch; plain local use has no enforcement.

Refusing to run without an endpoint is deliberate: the same calls against a real
account would create real, billed resources.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hippo_contract.aws_names import BUS_SUFFIXES, PIPES, TABLE_SUFFIXES
from hippo_platform import boto_client as aws
from hippo_platform.resource_names import bucket_name, role_name

__all__ = ["BUS_SUFFIXES", "PIPES", "TABLE_SUFFIXES", "ProvisionError", "Resource",
           "bucket_name", "main", "provision", "provision_resources", "role_name"]
QUEUE_SUFFIXES = ("ecom-ingest", "ecom-indexer")
SECRET_SUFFIX = "marqo-api-key-secret"
STREAM_VIEW = "NEW_AND_OLD_IMAGES"
EVENT_SOURCE = "marqo.dynamodb"

_NOT_FOUND = {"ResourceNotFoundException", "NotFoundException", "NoSuchEntity", "NoSuchBucket"}


@dataclass(frozen=True)
class Resource:
    """One provisioned resource; `created` is False when it was already there."""

    kind: str
    name: str
    arn: str
    created: bool
    note: str = ""


@dataclass
class ProvisionError(aws.AwsError):
    """A resource that could not be created, named so the fix is obvious."""

    resource: str = ""

    def message(self) -> str:
        return f"Could not provision {self.resource}: {self.sentence}"


def provision(table_prefix: str, endpoint_url: str) -> dict[str, str]:
    """Make sure every ecom resource exists on the endpoint; return names -> ARNs."""
    return {r.name: r.arn for r in provision_resources(table_prefix, endpoint_url)}


def provision_resources(
    table_prefix: str,
    endpoint_url: str,
    on_resource: Callable[[Resource], None] | None = None,
    region: str | None = None,
) -> list[Resource]:
    """Like `provision`, keeping whether each resource was created or already there.

    `on_resource` hears about each resource as soon as it is ready, so a job's log
    shows progress rather than one burst at the end.
    """
    aws.probe_endpoint(endpoint_url)
    done: list[Resource] = []

    def add(resource: Resource) -> Resource:
        done.append(resource)
        if on_resource is not None:
            on_resource(resource)
        return resource

    shared = aws.new_session(region, endpoint_url)

    def clients(service: str) -> Any:
        return aws.client(service, endpoint_url=endpoint_url, region=region, session=shared)

    ddb, events = clients("dynamodb"), clients("events")
    streams: dict[str, str] = {}
    for suffix in TABLE_SUFFIXES:
        table, stream_arn = _ensure_table(ddb, table_prefix + suffix)
        streams[suffix] = stream_arn
        add(table)
    add(_ensure_bucket(clients("s3"), bucket_name(table_prefix)))
    sqs = clients("sqs")
    for suffix in QUEUE_SUFFIXES:
        add(_ensure_queue(sqs, table_prefix + suffix))
    add(_ensure_secret(clients("secretsmanager"), table_prefix + SECRET_SUFFIX))
    buses = {suffix: add(_ensure_bus(events, table_prefix + suffix)).arn for suffix in BUS_SUFFIXES}
    role = add(_ensure_role(clients("iam"), role_name(table_prefix)))
    pipes = clients("pipes")
    for suffix, (table_suffix, bus_suffix) in PIPES.items():
        add(
            _ensure_pipe(
                pipes, table_prefix + suffix, streams[table_suffix], buses[bus_suffix], role.arn
            )
        )
    return done


def _guarded(kind: str, name: str, service: str, step: Callable[[], Resource]) -> Resource:
    try:
        return step()
    except Exception as exc:  # every botocore failure, turned into one sentence
        err = aws.explain(exc, service)
        raise ProvisionError(
            err.kind, err.sentence, err.permission, err.code, resource=f"{kind} {name}"
        ) from None


def _ensure_table(ddb: Any, name: str) -> tuple[Resource, str]:
    """A pk/sk table with a NEW_AND_OLD_IMAGES stream; a disabled stream is switched on.

    An existing stream with another view type is left alone: changing it means a new
    stream ARN under whatever already reads the old one; `events.validate` warns instead.
    """
    stream_arn = ""

    def step() -> Resource:
        nonlocal stream_arn
        created = False
        try:
            table = ddb.describe_table(TableName=name)["Table"]
        except Exception as exc:
            if aws.error_code(exc) not in _NOT_FOUND:
                raise
            table = ddb.create_table(
                TableName=name,
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": STREAM_VIEW},
            )["TableDescription"]
            created = True
        if table.get("TableStatus") != "ACTIVE":
            ddb.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
        note = ""
        if not (table.get("StreamSpecification") or {}).get("StreamEnabled"):
            try:
                table = ddb.update_table(
                    TableName=name,
                    StreamSpecification={"StreamEnabled": True, "StreamViewType": STREAM_VIEW},
                )["TableDescription"]
            except Exception as exc:
                # moto never re-enables a stream a table once had; keep the old stream ARN.
                if aws.error_code(exc) != "ResourceInUseException" or not table.get(
                    "LatestStreamArn"
                ):
                    raise
                note = "stream is disabled and could not be re-enabled"
        stream_arn = str(table["LatestStreamArn"])
        return Resource("dynamodb table", name, str(table["TableArn"]), created, note)

    resource = _guarded("DynamoDB table", name, "dynamodb", step)
    return resource, stream_arn


def _ensure_bucket(s3: Any, name: str) -> Resource:
    def step() -> Resource:
        try:
            s3.head_bucket(Bucket=name)
            created = False
        except Exception as exc:
            if aws.error_code(exc) not in (_NOT_FOUND | {"404"}):
                raise
            region = s3.meta.region_name
            extra = (
                {}
                if region == "us-east-1"
                else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            )
            s3.create_bucket(Bucket=name, **extra)
            created = True
        return Resource("s3 bucket", name, f"arn:aws:s3:::{name}", created)

    return _guarded("S3 bucket", name, "s3", step)


def _ensure_queue(sqs: Any, name: str) -> Resource:
    def step() -> Resource:
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            created = False
        except Exception as exc:
            if aws.error_code(exc) not in {
                "AWS.SimpleQueueService.NonExistentQueue",
                "QueueDoesNotExist",
            }:
                raise
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            created = True
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return Resource("sqs queue", name, str(attrs["Attributes"]["QueueArn"]), created)

    return _guarded("SQS queue", name, "sqs", step)


def _ensure_secret(sm: Any, name: str) -> Resource:
    """The API-key secret; its value is MARQO_API_KEY_SECRET or random, never printed.

    An existing secret keeps its value: rotating it on every start would invalidate
    every API key encrypted with it.
    """

    def step() -> Resource:
        try:
            arn = sm.describe_secret(SecretId=name)["ARN"]
            created = False
        except Exception as exc:
            if aws.error_code(exc) not in _NOT_FOUND:
                raise
            value = os.environ.get("MARQO_API_KEY_SECRET") or secrets.token_urlsafe(32)
            arn = sm.create_secret(Name=name, SecretString=value)["ARN"]
            created = True
        return Resource("secret", name, str(arn), created)

    return _guarded("secret", name, "secretsmanager", step)


def _ensure_bus(events: Any, name: str) -> Resource:
    def step() -> Resource:
        try:
            return Resource("event bus", name, events.describe_event_bus(Name=name)["Arn"], False)
        except Exception as exc:
            if aws.error_code(exc) not in _NOT_FOUND:
                raise
        return Resource("event bus", name, events.create_event_bus(Name=name)["EventBusArn"], True)

    return _guarded("event bus", name, "events", step)


def _ensure_role(iam: Any, name: str) -> Resource:
    """One role both pipes assume, allowed to read the streams and put on the buses."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "pipes.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                ],
                "Resource": "*",
            },
            {"Effect": "Allow", "Action": "events:PutEvents", "Resource": "*"},
        ],
    }

    def step() -> Resource:
        try:
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
            created = False
        except Exception as exc:
            if aws.error_code(exc) not in _NOT_FOUND:
                raise
            arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))[
                "Role"
            ]["Arn"]
            created = True
        iam.put_role_policy(
            RoleName=name, PolicyName="event-pipes", PolicyDocument=json.dumps(policy)
        )
        return Resource("iam role", name, str(arn), created)

    return _guarded("IAM role", name, "iam", step)


def _ensure_pipe(pipes: Any, name: str, stream_arn: str, bus_arn: str, role_arn: str) -> Resource:
    def step() -> Resource:
        try:
            return Resource("pipe", name, pipes.describe_pipe(Name=name)["Arn"], False)
        except Exception as exc:
            if aws.error_code(exc) not in _NOT_FOUND:
                raise
        arn = pipes.create_pipe(
            Name=name,
            Source=stream_arn,
            SourceParameters={"DynamoDBStreamParameters": {"StartingPosition": "LATEST"}},
            Target=bus_arn,
            TargetParameters={"EventBridgeEventBusParameters": {"Source": EVENT_SOURCE}},
            RoleArn=role_arn,
            DesiredState="RUNNING",
        )["Arn"]
        return Resource("pipe", name, str(arn), True)

    return _guarded("EventBridge pipe", name, "pipes", step)


def main(argv: Sequence[str] | None = None, own_process: bool = False) -> int:
    """`python -m hippo_platform.provision`: one line per resource, exit 1 on failure.
    `own_process`: run as that command, whose environment it may change (local_only)."""
    parser = argparse.ArgumentParser(
        prog="python -m hippo_platform.provision",
        description="Create the ecom profile's AWS resources on a moto server (idempotent).",
    )
    parser.add_argument("--table-prefix", help="default: HIPPODROME_TABLE_PREFIX")
    parser.add_argument("--endpoint-url", help="default: AWS_ENDPOINT_URL")
    parser.add_argument("--region", help="default: AWS_REGION / AWS_DEFAULT_REGION / us-east-1")
    args = parser.parse_args(argv)
    endpoint = aws.resolve_endpoint(args.endpoint_url)
    if not endpoint:
        print(
            "provision: refusing to create resources in a real AWS account: pass "
            "--endpoint-url http://127.0.0.1:9003 (the local moto server) or set "
            "AWS_ENDPOINT_URL.",
            file=sys.stderr,
        )
        return 2
    prefix = args.table_prefix
    if prefix is None:
        prefix = os.environ.get("HIPPODROME_TABLE_PREFIX")
    if prefix is None:
        print("provision: no table prefix: pass --table-prefix (e.g. dev-local-) or set "
              "HIPPODROME_TABLE_PREFIX, as the stack does.", file=sys.stderr)
        return 2

    if own_process:
        aws.local_only(endpoint, os.environ)

    def show(r: Resource) -> None:
        note = f"  ({r.note})" if r.note else ""
        print(f"{'created' if r.created else 'exists '}  {r.kind:<14}  {r.name}  {r.arn}{note}")
        sys.stdout.flush()

    try:
        resources = provision_resources(prefix, endpoint, on_resource=show, region=args.region)
    except aws.AwsError as exc:
        print(f"provision: {exc.message()}", file=sys.stderr)
        return 1
    print(f"provisioned {len(resources)} resources for table prefix {prefix!r} at {endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main(own_process=True))
