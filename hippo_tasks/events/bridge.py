"""`up --enable-events`: real AWS EventBridge events delivered to the local webhook.

A session makes, in this order (DESIGN section 6):

1. nothing yet: it checks that a tunnel tool is on PATH and which of the table prefix's
   buses (`{P}EcomEventBus`, `{P}MerchandisingEventBus`) exist, so the common mistakes
   fail before anything is created;
2. the IAM role `local-stack-eventbridge-api-dest-role` EventBridge assumes to call API
   destinations: created once per account, then reused, never deleted;
3. the tunnel (cloudflared, else ngrok) to the daemon's port, for a public HTTPS URL;
4. a connection `local-stack-webhook-{id}` (API_KEY auth: header
   `x-hippodrome-webhook-token` = the webhook token, which the daemon checks);
5. an API destination `local-stack-webhook-{id}` POSTing to `<URL>/webhook/eventbridge`;
6. per existing bus, a rule `local-stack-webhook-{id}` matching events whose
   `detail.tableName` starts with the prefix, and its target (the destination, the role).

A rule belongs to one bus, so there is one rule per bus; they share one name, since
rule names are per bus and one name is easier to find in the console. A missing bus
is a warning (only the ecom or only the controller stack may be deployed); no bus at all
is an error.

Each AWS resource is recorded in the registry before the call that creates it, the
tunnel as soon as its process exists (`bridge_records`); all of it but the role is
deleted by `close()`, or after a crash by `cleanup_recorded()`. A start that fails
half-way deletes what it made before raising. The token and the credentials are never
printed: only the public URL and the rule name are.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
from collections.abc import Callable
from typing import Any

from hippo_contract.aws_names import BUS_SUFFIXES
from hippo_contract.webhook import TOKEN_HEADER
from hippo_tasks.events import aws
from hippo_tasks.events import bridge_records as rec
from hippo_tasks.events import tunnel as tunnels
from hippo_tasks.events.bridge_records import cleanup_recorded
from hippo_tasks.registry.store import Registry

__all__ = ["TOKEN_HEADER", "BridgeError", "EventsSession", "cleanup_recorded", "event_pattern",
           "new_token"]

WEBHOOK_PATH = "/webhook/eventbridge"
NAME_PREFIX = "local-stack-webhook-"
ROLE_NAME = "local-stack-eventbridge-api-dest-role"
ROLE_POLICY_NAME = "invoke-local-stack-api-destinations"
TARGET_ID = "hippodrome-webhook"
CONNECTION_WAIT_S = 30.0
# EventBridge retries a failed delivery for up to 24 h by default; events that old are
# of no use to a local stack that has since stopped, so give up after 15 minutes.
RETRY_POLICY = {"MaximumRetryAttempts": 20, "MaximumEventAgeInSeconds": 900}
_GONE = {"NoSuchEntity", "ResourceNotFoundException"}
_DESCRIPTION_MAX = 512

Say = Callable[[str], None]


class BridgeError(aws.AwsError):
    """A step of `--enable-events` that failed, naming what could not be made."""

    def __init__(self, kind: str, sentence: str, permission: str | None = None,
                 code: str | None = None, step: str = "") -> None:
        super().__init__(kind, sentence, permission, code)
        self.step = step

    @classmethod
    def of(cls, err: aws.AwsError, step: str) -> BridgeError:
        return cls(err.kind, err.sentence, err.permission, err.code, step=step)

    def message(self) -> str:
        return f"--enable-events: could not {self.step}: {self.sentence}"


def new_token() -> str:
    """A webhook token: give the same one to the daemon (HIPPODROME_WEBHOOK_TOKEN)."""
    return secrets.token_urlsafe(32)


def event_pattern(table_prefix: str) -> dict[str, Any]:
    """Events about the prefix's tables (the pipes put `tableName` in `detail`)."""
    return {"detail": {"tableName": [{"prefix": table_prefix}]}}


class EventsSession:
    """The tunnel and EventBridge resources of one `up --enable-events`."""

    def __init__(
        self,
        *,
        registry: Registry,
        table_prefix: str,
        token: str,
        clients: tuple[Any, Any],
        endpoint_url: str | None,
        owner: dict[str, Any],
        say: Say,
    ) -> None:
        self.session_id = secrets.token_hex(4)
        self.name = f"{NAME_PREFIX}{self.session_id}"
        self.registry = registry
        self.table_prefix = table_prefix
        self.token = token
        self._events, self._iam = clients
        self.region: str = self._events.meta.region_name
        self.endpoint_url = endpoint_url
        self.say = say
        self.ledger = rec.Ledger(registry, self.session_id, owner)
        self.tunnel: tunnels.Tunnel | None = None
        self.public_url = ""
        self.buses: list[str] = []
        self.role_arn = ""
        self._closed = False

    def __repr__(self) -> str:  # never the token
        return f"EventsSession({self.name!r}, url={self.public_url!r}, buses={self.buses!r})"

    @property
    def rule_name(self) -> str:
        """The rule's name, the same on every bus in `buses`."""
        return self.name

    @property
    def webhook_url(self) -> str:
        return f"{self.public_url}{WEBHOOK_PATH}"

    @classmethod
    def start(
        cls,
        *,
        registry: Registry,
        local_url: str,
        table_prefix: str,
        say: Say,
        token: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        owner_pid: int | None = None,
        tunnel_timeout: float = tunnels.URL_TIMEOUT_S,
    ) -> EventsSession:
        """Make everything, or nothing: a failure undoes what was made, then raises.

        Raises TunnelError (no tool, no URL) or BridgeError/AwsError (one sentence).
        `owner_pid` (default: this process) is the process whose death lets
        `cleanup_recorded` delete the session.
        """
        if not table_prefix:
            raise aws.AwsError("usage", "--enable-events needs a non-empty --table-prefix.")
        tunnels.loopback_address(local_url)
        tool = tunnels.find_tool()
        endpoint = aws.resolve_endpoint(endpoint_url)
        if endpoint:
            aws.probe_endpoint(endpoint, answer_within=aws.ANSWER_WITHIN_S)
        boto = aws.new_session(region, endpoint)
        clients = (
            aws.client("events", endpoint, region, session=boto),
            aws.client("iam", endpoint, region, session=boto),
        )
        owner = rec.owner_of(owner_pid or os.getpid())
        self = cls(
            registry=registry,
            table_prefix=table_prefix,
            token=token or new_token(),
            clients=clients,
            endpoint_url=endpoint,
            owner=owner,
            say=say,
        )
        try:
            self._open(tool, local_url, tunnel_timeout)
        except BaseException:
            for line in self.close():
                say(line)
            raise
        return self

    def close(self) -> list[str]:
        """End the tunnel, delete all but the role; lines saying what happened. Idempotent."""
        if self._closed:
            return []
        self._closed = True
        clients = {(self.region, self.endpoint_url): self._events}
        return rec.unmake(self.registry, list(self.ledger.entries), self.tunnel, clients)

    def hand_over(self, pid: int) -> None:
        """Make another process (e.g. the detached daemon) the owner.

        After this, `cleanup_recorded` deletes the session once *that* process is gone;
        the caller may exit without `close()`.
        """
        try:
            self.ledger.hand_over(rec.owner_of(pid))
        finally:  # the daemon's guard covers the tunnel's mark now, recorded or not
            if self.tunnel is not None:
                self.tunnel.release_guard()

    # ---- the steps ----------------------------------------------------------------
    def _open(self, tool: tuple[str, str], local_url: str, timeout: float) -> None:
        self.buses = self._existing_buses()
        self.role_arn = self._ensure_role()
        self._start_tunnel(tool, local_url, timeout)
        connection_arn = self._create_connection()
        destination_arn = self._create_destination(connection_arn)
        for bus in self.buses:
            self._create_rule(bus)
            self._put_target(bus, destination_arn)
        where = f"{self.region}" + (f" at {aws.shown_url(self.endpoint_url)}"
                                    if self.endpoint_url else "")
        self.say(
            f"[eventbridge] Rule '{self.rule_name}' created on {', '.join(self.buses)} for "
            f"table prefix {self.table_prefix} ({where}); deleted when the stack stops"
        )

    def _call(self, step: str, service: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # every botocore failure, as one sentence
            raise BridgeError.of(rec.explain(exc, service, self.token), step) from None

    def _existing_buses(self) -> list[str]:
        found, missing = [], []
        for suffix in BUS_SUFFIXES:
            bus = f"{self.table_prefix}{suffix}"
            try:
                self._events.describe_event_bus(Name=bus)
                found.append(bus)
            except Exception as exc:
                if aws.error_code(exc) not in _GONE:
                    err = rec.explain(exc, "events")
                    raise BridgeError.of(err, f"look up event bus {bus}") from None
                missing.append(bus)
        fix = (
            f"deploy the CDK stacks for this prefix, or check --table-prefix; `hd "
            f"events.validate --table-prefix {shlex.quote(self.table_prefix)}` shows what "
            "is missing"
        )
        if not found:
            raise BridgeError.of(
                aws.AwsError(
                    "missing-bus",
                    f"neither {' nor '.join(missing)} exists in {self.region}: {fix}.",
                ),
                "find the table prefix's event buses",
            )
        for bus in missing:
            self.say(
                f"[eventbridge] warning: event bus {bus} does not exist, so its events "
                f"will not reach the stack ({fix})"
            )
        return found

    def _ensure_role(self) -> str:
        """The shared role: reused when there; its inline policy restored if missing."""
        iam = self._iam
        step = f"set up the IAM role {ROLE_NAME}"
        try:
            arn = str(iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"])
            created = False
        except Exception as exc:
            if aws.error_code(exc) not in _GONE:
                raise BridgeError.of(rec.explain(exc, "iam"), step) from None
            arn = self._call(step, "iam", self._create_role)
            created = True
        if created or self._role_policy_missing():
            self._call(step, "iam", lambda: self._put_role_policy(arn))
        self.say(f"[eventbridge] {'created' if created else 'using'} IAM role {ROLE_NAME}")
        return arn

    def _create_role(self) -> str:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        try:
            role = self._iam.create_role(
                RoleName=ROLE_NAME,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description=(
                    "Lets EventBridge call the API destinations of Hippodrome local stacks "
                    f"({NAME_PREFIX}*). Created once by `hd up --enable-events` and "
                    "shared by every run."
                ),
            )["Role"]
        except Exception as exc:  # another `up` created it a moment ago
            if aws.error_code(exc) != "EntityAlreadyExists":
                raise
            role = self._iam.get_role(RoleName=ROLE_NAME)["Role"]
        self.ledger.add(rec.ROLE, ROLE_NAME, arn=role["Arn"], keep=True, **self._where())
        return str(role["Arn"])

    def _role_policy_missing(self) -> bool:
        try:
            self._iam.get_role_policy(RoleName=ROLE_NAME, PolicyName=ROLE_POLICY_NAME)
        except Exception as exc:
            # Not allowed to look: assume it is fine, as it is on every run but the first.
            return aws.error_code(exc) in _GONE
        return False

    def _put_role_policy(self, role_arn: str) -> None:
        partition = role_arn.split(":")[1]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "events:InvokeApiDestination",
                    "Resource": f"arn:{partition}:events:*:*:api-destination/{NAME_PREFIX}*/*",
                }
            ],
        }
        self._iam.put_role_policy(
            RoleName=ROLE_NAME, PolicyName=ROLE_POLICY_NAME, PolicyDocument=json.dumps(policy)
        )

    def _start_tunnel(self, tool: tuple[str, str], local_url: str, timeout: float) -> None:
        log = rec.tunnel_log_path(self.registry, self.session_id)
        self.say(f"[tunnel] starting {tool[0]} for {local_url} (output: {log})")
        self.tunnel = tunnels.launch(local_url, log, tool)
        entry = self.ledger.add(rec.TUNNEL, tool[0], **self.tunnel.record())
        self.public_url = self.tunnel.wait_for_url(timeout)
        self.ledger.set(entry, public_url=self.public_url)
        self.say(f"[tunnel] EventBridge webhook exposed at {self.webhook_url}")

    def _create_connection(self) -> str:
        entry = self.ledger.add(rec.CONNECTION, self.name, arn=None, **self._where())
        answer = self._call(
            f"create the EventBridge connection {self.name}",
            "events",
            lambda: self._events.create_connection(
                Name=self.name,
                Description=self._description("API key for"),
                AuthorizationType="API_KEY",
                AuthParameters={
                    "ApiKeyAuthParameters": {"ApiKeyName": TOKEN_HEADER, "ApiKeyValue": self.token}
                },
            ),
        )
        arn = str(answer["ConnectionArn"])
        self.ledger.set(entry, arn=arn)
        if answer.get("ConnectionState") not in ("AUTHORIZED", "ACTIVE"):
            self._wait_authorized()
        return arn

    def _wait_authorized(self) -> None:
        """Real AWS may answer CREATING/AUTHORIZING first; the destination needs it ready."""
        state = ""
        step = f"authorize the EventBridge connection {self.name}"

        def ready() -> bool:
            nonlocal state
            answer = self._call(
                step, "events", lambda: self._events.describe_connection(Name=self.name)
            )
            state = str(answer.get("ConnectionState"))  # nothing else of it: it has the key
            if state in ("DEAUTHORIZED", "FAILED_CONNECTIVITY"):
                raise BridgeError.of(
                    aws.AwsError("other", f"the connection is {state}; try again."), step
                )
            return state in ("AUTHORIZED", "ACTIVE")

        if not rec.wait_until(ready, CONNECTION_WAIT_S):
            raise BridgeError.of(
                aws.AwsError(
                    "timeout",
                    f"it was still {state} after {CONNECTION_WAIT_S:g}s; try again later.",
                ),
                step,
            )

    def _create_destination(self, connection_arn: str) -> str:
        entry = self.ledger.add(rec.DESTINATION, self.name, arn=None, **self._where())
        answer = self._call(
            f"create the EventBridge API destination {self.name}",
            "events",
            lambda: self._events.create_api_destination(
                Name=self.name,
                Description=self._description("Webhook of"),
                ConnectionArn=connection_arn,
                InvocationEndpoint=self.webhook_url,
                HttpMethod="POST",
            ),
        )
        arn = str(answer["ApiDestinationArn"])
        self.ledger.set(entry, arn=arn)
        return arn

    def _create_rule(self, bus: str) -> None:
        entry = self.ledger.add(rec.RULE, self.name, arn=None, bus=bus, **self._where())
        answer = self._call(
            f"create the EventBridge rule {self.name} on {bus}",
            "events",
            lambda: self._events.put_rule(
                Name=self.name,
                EventBusName=bus,
                EventPattern=json.dumps(event_pattern(self.table_prefix)),
                State="ENABLED",
                Description=self._description("Forwards table events to"),
            ),
        )
        self.ledger.set(entry, arn=str(answer["RuleArn"]))

    def _put_target(self, bus: str, destination_arn: str) -> None:
        step = f"add the API destination as target of rule {self.name} on {bus}"
        entry = self.ledger.add(
            rec.TARGET, TARGET_ID, arn=None, bus=bus, rule=self.name, **self._where()
        )
        target = {
            "Id": TARGET_ID,
            "Arn": destination_arn,
            "RoleArn": self.role_arn,
            "RetryPolicy": RETRY_POLICY,
        }
        answer = self._call(
            step,
            "events",
            lambda: self._events.put_targets(Rule=self.name, EventBusName=bus, Targets=[target]),
        )
        for failure in answer.get("FailedEntries") or []:
            text = f"{failure.get('ErrorCode')}: {failure.get('ErrorMessage')}"
            raise BridgeError.of(aws.AwsError("other", aws.redact(text) + "."), step)
        self.ledger.set(entry, arn=destination_arn)

    def _where(self) -> dict[str, Any]:
        return {"region": self.region, "endpoint": self.endpoint_url}

    def _description(self, what: str) -> str:
        text = (
            f"{what} a Hippodrome local stack (table prefix {self.table_prefix}, "
            f"{self.public_url or 'tunnel'}) made by `hd up --enable-events` on "
            f"{socket.gethostname()} at {rec.now_iso()}. Temporary: deleted when that stack "
            "stops. Safe to delete manually (a rule's target first)."
        )
        return text[:_DESCRIPTION_MAX]
