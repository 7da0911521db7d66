"""`hd events.validate`: is the EventBridge plumbing for a table prefix in place?

Events reach the exporters only when all of it is there: both buses, both pipes
RUNNING, and both tables streaming new images (DESIGN section 6). When events do not
arrive, each missing piece is otherwise a separate trip through the AWS console, so
this prints exactly one line per check, then for each problem how to fix it, for real
AWS (deploy the CDK stacks) or for the local stack (moto, provisioned by `hd up`).

Checks are data (`Check`), rendering is separate, so the daemon could show the same
result without parsing text. AWS failures become the sentences of `aws.explain`:
a failure every call would share (no credentials, expired SSO, endpoint down) ends
the run with that one sentence; one denied permission spoils only its own check.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

from hippo_tasks.events import aws

GOOD_STREAM_VIEWS = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
_NOT_FOUND = {"ResourceNotFoundException", "NotFoundException"}
_PENDING_PIPE_STATES = {"CREATING", "STARTING", "UPDATING"}

# What deploys each piece in a real account (the reference's CDK stacks).
_CDK_ECOM = "deploy the CDK ecom stack: cd infra/ecom && npx cdk deploy --require-approval never"
_CDK_CONTROLLER = (
    "deploy the CDK controller stack: cd infra/controller && "
    "npx cdk deploy MerchandisingStack --require-approval never"
)
_CDK_BY_SUFFIX = {
    "EcomEventBus": _CDK_ECOM,
    "IndexSettingsEventPipe": _CDK_ECOM,
    "EcomIndexSettingsTable": _CDK_ECOM,
    "MerchandisingEventBus": _CDK_CONTROLLER,
    "MerchandisingEventPipe": _CDK_CONTROLLER,
    "MerchandisingTable": _CDK_CONTROLLER,
}


class Status(StrEnum):
    OK = "OK"
    MISSING = "MISSING"
    WARN = "WARN"


@dataclass(frozen=True)
class Check:
    """One check's outcome, with what --verbose shows and how to fix it."""

    status: Status
    summary: str
    details: dict[str, str] = field(default_factory=dict)
    fix: str | None = None


@dataclass(frozen=True)
class Target:
    """Where the checks run: the prefix, and the endpoint (None = real AWS)."""

    table_prefix: str
    endpoint_url: str | None

    @property
    def local(self) -> bool:
        return self.endpoint_url is not None

    def deploy_fix(self, suffix: str) -> str:
        if self.local:
            return (
                f"`hd up --profile ecom --table-prefix {shlex.quote(self.table_prefix)}` "
                "provisions it on moto"
            )
        return _CDK_BY_SUFFIX[suffix]

    def cli(self, command: str) -> str:
        """An AWS CLI command, aimed at the same endpoint as the checks."""
        suffix = (f" --endpoint-url {shlex.quote(aws.shown_url(self.endpoint_url or ''))}"
                  if self.local else "")
        return f"`aws {command}{suffix}`"


def validate(
    table_prefix: str, endpoint_url: str | None = None, verbose: bool = False
) -> tuple[list[str], bool]:
    """Run the six checks; return the lines to print and whether all of them are OK."""
    target = Target(table_prefix, aws.resolve_endpoint(endpoint_url))
    try:
        checks = run_checks(target)
    except aws.AwsError as exc:
        return [header(target), f"Cannot check EventBridge infrastructure: {exc.message()}"], False
    ok = all(c.status is Status.OK for c in checks)
    return [header(target), *render(checks, verbose), summary(checks)], ok


def header(target: Target) -> str:
    where = aws.shown_url(target.endpoint_url) if target.endpoint_url else \
        "AWS (default credential chain)"
    return f"EventBridge infrastructure for table prefix {target.table_prefix!r} on {where}:"


def summary(checks: list[Check]) -> str:
    bad = sum(c.status is not Status.OK for c in checks)
    if not bad:
        return f"All {len(checks)} checks passed."
    return f"{bad} of {len(checks)} checks need attention."


def render(checks: list[Check], verbose: bool) -> list[str]:
    """Exactly one `[STATUS]` line per check; details and fixes are indented under it."""
    lines: list[str] = []
    for check in checks:
        lines.append(f"[{check.status.value}] {check.summary}")
        if verbose:
            lines.extend(f"      {key}: {value}" for key, value in check.details.items())
        if check.fix:
            lines.append(f"      fix: {check.fix}")
    return lines


def run_checks(target: Target) -> list[Check]:
    """The six checks, in the reference's order: buses, pipes, table streams.

    Raises AwsError only for failures that would spoil every check alike.
    """
    if target.endpoint_url:
        aws.probe_endpoint(target.endpoint_url, answer_within=aws.ANSWER_WITHIN_S)
    shared = aws.new_session(endpoint_url=target.endpoint_url)
    events, pipes, ddb = (
        aws.client(service, endpoint_url=target.endpoint_url, session=shared)
        for service in ("events", "pipes", "dynamodb")
    )
    plan: list[tuple[str, Callable[[Any, Target, str], Check], Any, str]] = [
        ("event bus", check_bus, events, "EcomEventBus"),
        ("event bus", check_bus, events, "MerchandisingEventBus"),
        ("pipe", check_pipe, pipes, "IndexSettingsEventPipe"),
        ("pipe", check_pipe, pipes, "MerchandisingEventPipe"),
        ("table", check_stream, ddb, "EcomIndexSettingsTable"),
        ("table", check_stream, ddb, "MerchandisingTable"),
    ]
    return [
        _guard(partial(check, client, target, suffix), f"{what} {target.table_prefix}{suffix}")
        for what, check, client, suffix in plan
    ]


def _guard(run: Callable[[], Check], what: str) -> Check:
    """A per-check AWS failure becomes a [WARN] line; a universal one stops the run."""
    try:
        return run()
    except aws.AwsError as exc:
        if exc.fatal:
            raise
        return Check(Status.WARN, f"Could not check {what}: {exc.message()}",
                     fix=NOT_AWS_FIX if exc.kind == "not-aws" else None)


def _call(service: str, method: Callable[..., Any], **kwargs: Any) -> dict[str, Any] | None:
    """One AWS call; None when the resource does not exist, AwsError for other failures."""
    try:
        result: dict[str, Any] = method(**kwargs)
    except Exception as exc:
        if aws.error_code(exc) in _NOT_FOUND:
            return None
        raise aws.explain(exc, service) from None
    return result


def _not_aws(what: str, service: str, key: str) -> Check:
    """An answer without the field every real one has: a web app on a wrong
    --endpoint-url answers 200 with JSON too, and was reported as `[OK] ... exists`."""
    return Check(Status.WARN, f"Could not check {what}: the endpoint answered, but not as "
                              f"AWS {service} does (no {key} in it)",
                 fix=NOT_AWS_FIX)


NOT_AWS_FIX = ("check --endpoint-url (or AWS_ENDPOINT_URL): it must be the AWS API or a "
               "stand-in of it, such as moto")


def check_bus(events: Any, target: Target, suffix: str) -> Check:
    name = target.table_prefix + suffix
    bus = _call("events", events.describe_event_bus, Name=name)
    if bus is None:
        return Check(
            Status.MISSING, f"Event bus {name} does not exist", fix=target.deploy_fix(suffix)
        )
    if not bus.get("Arn"):
        return _not_aws(f"event bus {name}", "EventBridge", "Arn")
    return Check(Status.OK, f"Event bus {name} exists", {"arn": str(bus["Arn"])})


def check_pipe(pipes: Any, target: Target, suffix: str) -> Check:
    name = target.table_prefix + suffix
    pipe = _call("pipes", pipes.describe_pipe, Name=name)
    if pipe is None:
        return Check(Status.MISSING, f"Pipe {name} does not exist", fix=target.deploy_fix(suffix))
    if not pipe.get("Arn"):
        return _not_aws(f"pipe {name}", "EventBridge Pipes", "Arn")
    state = str(pipe.get("CurrentState") or "UNKNOWN")
    details = {
        "arn": str(pipe["Arn"]),
        "state": f"{state} (desired {pipe.get('DesiredState', '?')})",
        "source": str(pipe.get("Source", "?")),
        "target": str(pipe.get("Target", "?")),
    }
    if pipe.get("StateReason"):
        details["reason"] = str(pipe["StateReason"])
    if state == "RUNNING":
        return Check(Status.OK, f"Pipe {name} is RUNNING", details)
    if state in _PENDING_PIPE_STATES:
        fix = f"wait a minute for it to finish {state.lower()}, then validate again"
    else:
        fix = (
            f"start it with {target.cli(f'pipes start-pipe --name {name}')}; if it does not "
            "stay RUNNING, look for permission or configuration errors in the pipe's "
            "CloudWatch logs (log groups with 'Pipes' in the name)"
        )
    return Check(Status.WARN, f"Pipe {name} is {state}, not RUNNING", details, fix)


def check_stream(ddb: Any, target: Target, suffix: str) -> Check:
    name = target.table_prefix + suffix
    found = _call("dynamodb", ddb.describe_table, TableName=name)
    if found is None:
        return Check(Status.MISSING, f"Table {name} does not exist", fix=target.deploy_fix(suffix))
    # Each level checked for its shape: `"Table": "str"` from a stand-in was said as
    # `AWS call failed: AttributeError: 'str' object has no attribute 'get'` (adv28 k/7)
    table = found.get("Table") if isinstance(found, dict) else None
    if not isinstance(table, dict) or not table.get("TableArn"):
        return _not_aws(f"table {name}", "DynamoDB", "Table.TableArn")
    spec = table.get("StreamSpecification")
    spec = spec if isinstance(spec, dict) else {}
    enabled = bool(spec.get("StreamEnabled"))
    view = str(spec.get("StreamViewType") or "none")
    details = {
        "arn": str(table["TableArn"]),
        "stream": f"{'enabled' if enabled else 'disabled'}, view type {view}",
    }
    if enabled and table.get("LatestStreamArn"):
        details["stream arn"] = str(table["LatestStreamArn"])
    if enabled and view in GOOD_STREAM_VIEWS:
        return Check(Status.OK, f"Table {name} streams {view}", details)
    enable = target.cli(
        f"dynamodb update-table --table-name {name} --stream-specification "
        "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
    )
    if not enabled:
        fix = f"enable it with {enable}, then point the pipe at the new stream ARN"
        if target.local:
            fix = (
                "moto cannot re-enable a stream a table once had: restart the local stack "
                "(`hd down`, then `hd up --profile ecom`) to provision it afresh"
            )
        return Check(Status.WARN, f"Table {name} has no stream enabled", details, fix)
    return Check(
        Status.WARN,
        f"Table {name} streams {view}, but the pipe needs NEW_IMAGE or NEW_AND_OLD_IMAGES",
        details,
        f"disable the stream, re-enable it with {enable}, then point the pipe at the new "
        "stream ARN",
    )
