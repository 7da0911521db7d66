"""hippo_tasks.events.bridge against a real moto server, with fake tunnel tools on PATH.

What moto shows: the names, pattern, endpoint, target, role and API key that are made,
that they are all recorded and then deleted (all but the role), crash recovery after
`kill -9`, and AccessDenied under moto's IAM enforcement. What only real AWS shows:
deliveries actually reaching the tunnel, iam:PassRole, and connection authorization.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import moto_server
import pytest
from moto_server import DUMMY_CREDENTIALS, isolate_aws_env, running_moto
from test_events_tunnel import FakeTools, gone_within

from hippo_tasks.events import aws
from hippo_tasks.events import bridge_records as rec
from hippo_tasks.events.bridge import (
    NAME_PREFIX,
    ROLE_NAME,
    ROLE_POLICY_NAME,
    TARGET_ID,
    TOKEN_HEADER,
    WEBHOOK_PATH,
    BridgeError,
    EventsSession,
    cleanup_recorded,
    event_pattern,
)
from hippo_tasks.events.tunnel import TunnelError
from hippo_tasks.registry.store import Registry, identity, is_same_process

# The real-moto fixtures, made visible to this module (one server per module).
moto_server_url = moto_server.moto_server_url
moto_endpoint = moto_server.moto_endpoint

REPO = Path(__file__).resolve().parents[1]
LOCAL_URL = "http://127.0.0.1:9000"
BUS_SUFFIXES = ("EcomEventBus", "MerchandisingEventBus")


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTools]:
    """Fake cloudflared first on PATH; every fake ended by PID afterwards."""
    tools = FakeTools(tmp_path).install("cloudflared")
    monkeypatch.setenv("FAKE_TUNNEL_STATE", str(tools.state))
    monkeypatch.setenv("PATH", f"{tools.bin}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("FAKE_TUNNEL_MODE", raising=False)
    try:
        yield tools
    finally:
        tools.kill_all()


@pytest.fixture
def registry(tmp_path: Path, fake_tools: FakeTools) -> Iterator[Registry]:
    """A project registry; whatever a test leaves recorded is cleaned up after it."""
    (tmp_path / "proj").mkdir()  # a project folder exists: the registry never makes one
    reg = Registry(tmp_path / "proj")
    try:
        yield reg
    finally:
        cleanup_recorded(reg, force=True)


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}-"


def make_buses(endpoint: str, prefix: str, suffixes: tuple[str, ...] = BUS_SUFFIXES) -> list[str]:
    events = client("events", endpoint)
    for suffix in suffixes:
        events.create_event_bus(Name=prefix + suffix)
    return [prefix + s for s in suffixes]


def leftovers(endpoint: str, name: str, buses: list[str]) -> dict[str, list[str]]:
    """What of a session's EventBridge resources still exists on the server."""
    events = client("events", endpoint)
    out: dict[str, list[str]] = {
        "connections": [
            c["Name"] for c in events.list_connections()["Connections"] if c["Name"] == name
        ],
        "destinations": [
            d["Name"]
            for d in events.list_api_destinations()["ApiDestinations"]
            if d["Name"] == name
        ],
        "rules": [],
    }
    for bus in buses:
        rules = events.list_rules(EventBusName=bus)["Rules"]
        out["rules"] += [f"{bus}/{r['Name']}" for r in rules if r["Name"] == name]
    return out


def connection_api_key(endpoint: str, name: str) -> str:
    """The key as EventBridge stores it: in the connection's Secrets Manager secret."""
    arn = client("events", endpoint).describe_connection(Name=name)["SecretArn"]
    secret = client("secretsmanager", endpoint).get_secret_value(SecretId=arn)
    value: str = json.loads(secret["SecretString"])["api_key_value"]
    return value


_SESSIONS: dict[tuple[str, ...], Any] = {}


def client(service: str, endpoint: str) -> Any:
    """A client for checks, with the current credentials; sessions are cached per
    credentials, since a fresh one loads the service models again (0.3 s each)."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    key = tuple(os.environ.get(name, "") for name in names)
    if key not in _SESSIONS:
        import boto3

        _SESSIONS[key] = boto3.session.Session(
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            aws_session_token=key[2] or None,
            region_name="us-east-1",
        )
    return aws.client(service, endpoint, session=_SESSIONS[key])


NOTHING: dict[str, list[str]] = {"connections": [], "destinations": [], "rules": []}


def start(registry: Registry, endpoint: str, prefix: str, said: list[str], **kw: Any) -> Any:
    return EventsSession.start(
        registry=registry,
        local_url=LOCAL_URL,
        table_prefix=prefix,
        say=said.append,
        endpoint_url=endpoint,
        **kw,
    )


# --- what a session makes ------------------------------------------------------------


def test_start_makes_connection_destination_rules_targets_and_role(
    moto_endpoint: str, registry: Registry, fake_tools: FakeTools
) -> None:
    prefix = new_prefix()
    buses = make_buses(moto_endpoint, prefix)
    said: list[str] = []
    session = start(registry, moto_endpoint, prefix, said)
    events = client("events", moto_endpoint)
    iam = client("iam", moto_endpoint)

    assert session.rule_name.startswith(NAME_PREFIX) and len(session.rule_name) <= 64
    assert session.buses == buses
    assert session.tunnel is not None and session.tunnel.tool == "cloudflared"
    assert session.public_url == f"https://fake-{session.tunnel.pid}-quick-tunnel.trycloudflare.com"

    connection = events.describe_connection(Name=session.rule_name)
    assert connection["AuthorizationType"] == "API_KEY"
    api_key = connection["AuthParameters"]["ApiKeyAuthParameters"]
    assert api_key["ApiKeyName"] == TOKEN_HEADER == "x-hippodrome-webhook-token"
    key_is_token = connection_api_key(moto_endpoint, session.rule_name) == session.token
    assert key_is_token, "the connection's API key is not the session's webhook token"
    assert "safe to delete manually" in connection["Description"].lower()

    destination = events.describe_api_destination(Name=session.rule_name)
    assert destination["InvocationEndpoint"] == session.public_url + WEBHOOK_PATH
    assert destination["InvocationEndpoint"].endswith("/webhook/eventbridge")
    assert destination["HttpMethod"] == "POST"
    assert destination["ConnectionArn"] == connection["ConnectionArn"]

    role = iam.get_role(RoleName=ROLE_NAME)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
    policy = iam.get_role_policy(RoleName=ROLE_NAME, PolicyName=ROLE_POLICY_NAME)
    statement = policy["PolicyDocument"]["Statement"][0]
    assert statement["Action"] == "events:InvokeApiDestination"
    assert statement["Resource"] == f"arn:aws:events:*:*:api-destination/{NAME_PREFIX}*/*"

    for bus in buses:
        rule = events.describe_rule(Name=session.rule_name, EventBusName=bus)
        assert json.loads(rule["EventPattern"]) == event_pattern(prefix)
        assert json.loads(rule["EventPattern"]) == {"detail": {"tableName": [{"prefix": prefix}]}}
        assert rule["State"] == "ENABLED"
        assert "Safe to delete manually" in rule["Description"]
        (target,) = events.list_targets_by_rule(Rule=session.rule_name, EventBusName=bus)["Targets"]
        assert target["Id"] == TARGET_ID
        assert target["Arn"] == destination["ApiDestinationArn"]
        assert target["RoleArn"] == role["Arn"]

    # printed: the public URL and the rule name; never the token or a credential
    output = "\n".join(said)
    assert f"[tunnel] EventBridge webhook exposed at {session.public_url}{WEBHOOK_PATH}" in output
    assert f"[eventbridge] Rule '{session.rule_name}' created on {', '.join(buses)}" in output
    for secret in (session.token, *DUMMY_CREDENTIALS.values()):
        assert secret not in output
    assert session.token not in repr(session)
    session.close()


def test_every_resource_is_recorded_with_where_and_when(
    moto_endpoint: str, registry: Registry
) -> None:
    prefix = new_prefix()
    buses = make_buses(moto_endpoint, prefix)
    session = start(registry, moto_endpoint, prefix, [])
    entries = rec.recorded(registry)
    kinds = sorted(e["kind"] for e in entries if e["kind"] != rec.ROLE)
    assert kinds == sorted(
        ["tunnel", "connection", "api-destination"] + ["rule", "rule-target"] * 2
    )
    for entry in entries:
        assert entry["session"] == session.session_id
        assert entry["owner"] == {"pid": os.getpid(), "create_time": identity(os.getpid())}
        assert entry["created_at"].endswith("+00:00")
        if entry["kind"] == rec.TUNNEL:
            assert entry["pid"] == entry["pgid"] == session.tunnel.pid
            assert is_same_process(entry["pid"], entry["create_time"])
            assert entry["public_url"] == session.public_url
            continue
        assert entry["region"] == "us-east-1" and entry["endpoint"] == moto_endpoint
        assert entry["arn"].startswith("arn:aws:")
    rules = {e["bus"]: e["arn"] for e in entries if e["kind"] == rec.RULE}
    assert sorted(rules) == buses
    assert session.token not in registry.path.read_text()
    session.close()


def test_close_deletes_all_but_the_role_and_ends_the_tunnel(
    moto_endpoint: str, registry: Registry
) -> None:
    prefix = new_prefix()
    buses = make_buses(moto_endpoint, prefix)
    session = start(registry, moto_endpoint, prefix, [])
    assert leftovers(moto_endpoint, session.rule_name, buses) != NOTHING
    tunnel = session.tunnel
    assert tunnel is not None

    lines = session.close()

    assert leftovers(moto_endpoint, session.rule_name, buses) == NOTHING
    assert tunnel.popen is not None and tunnel.popen.returncode is not None
    assert not is_same_process(tunnel.pid, tunnel.create_time)
    assert rec.recorded(registry) == []
    assert client("iam", moto_endpoint).get_role(RoleName=ROLE_NAME)["Role"]["Arn"]
    assert lines[0] == f"[tunnel] cloudflared tunnel (pid {tunnel.pid}): ended"
    assert lines[1].startswith(f"[eventbridge] deleted rule {session.rule_name} and its targets")
    assert not any("could not" in line for line in lines)
    assert session.close() == []  # idempotent
    assert cleanup_recorded(registry) == []


def test_a_second_run_reuses_the_role(moto_endpoint: str, registry: Registry) -> None:
    prefix = new_prefix()
    make_buses(moto_endpoint, prefix)
    start(registry, moto_endpoint, prefix, []).close()
    iam = client("iam", moto_endpoint)
    role_id = iam.get_role(RoleName=ROLE_NAME)["Role"]["RoleId"]
    said: list[str] = []
    second = start(registry, moto_endpoint, prefix, said)
    assert f"[eventbridge] using IAM role {ROLE_NAME}" in said
    assert iam.get_role(RoleName=ROLE_NAME)["Role"]["RoleId"] == role_id
    assert not [e for e in rec.recorded(registry) if e["kind"] == rec.ROLE]
    second.close()


def test_a_role_that_lost_its_policy_gets_it_back(moto_endpoint: str, registry: Registry) -> None:
    prefix = new_prefix()
    make_buses(moto_endpoint, prefix)
    start(registry, moto_endpoint, prefix, []).close()
    iam = client("iam", moto_endpoint)
    iam.delete_role_policy(RoleName=ROLE_NAME, PolicyName=ROLE_POLICY_NAME)
    start(registry, moto_endpoint, prefix, []).close()
    assert iam.get_role_policy(RoleName=ROLE_NAME, PolicyName=ROLE_POLICY_NAME)["PolicyDocument"]


def test_the_given_token_is_used(moto_endpoint: str, registry: Registry) -> None:
    prefix = new_prefix()
    make_buses(moto_endpoint, prefix)
    session = start(registry, moto_endpoint, prefix, [], token="given-webhook-token")
    key_is_token = connection_api_key(moto_endpoint, session.rule_name) == "given-webhook-token"
    assert key_is_token and session.token == "given-webhook-token"
    session.close()


def test_ngrok_is_used_when_cloudflared_is_missing(
    moto_endpoint: str, registry: Registry, fake_tools: FakeTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake_tools.bin / "cloudflared").unlink()
    fake_tools.install("ngrok")
    monkeypatch.setenv("PATH", str(fake_tools.bin))
    prefix = new_prefix()
    make_buses(moto_endpoint, prefix)
    said: list[str] = []
    session = start(registry, moto_endpoint, prefix, said)
    assert session.tunnel is not None and session.tunnel.tool == "ngrok"
    assert session.public_url.endswith(".ngrok-free.app")
    destination = client("events", moto_endpoint).describe_api_destination(Name=session.rule_name)
    assert destination["InvocationEndpoint"] == f"{session.public_url}/webhook/eventbridge"
    assert any(line.startswith("[tunnel] starting ngrok for") for line in said)
    lines = session.close()
    assert lines[0] == f"[tunnel] ngrok tunnel (pid {session.tunnel.pid}): ended"


def test_a_missing_bus_is_a_warning_and_no_bus_an_error(
    moto_endpoint: str, registry: Registry, fake_tools: FakeTools
) -> None:
    prefix = new_prefix()
    (bus,) = make_buses(moto_endpoint, prefix, ("MerchandisingEventBus",))
    said: list[str] = []
    session = start(registry, moto_endpoint, prefix, said)
    assert session.buses == [bus]
    assert any(f"warning: event bus {prefix}EcomEventBus does not exist" in line for line in said)
    session.close()

    other = new_prefix()
    with pytest.raises(BridgeError) as caught:
        start(registry, moto_endpoint, other, [])
    text = caught.value.message()
    assert f"neither {other}EcomEventBus nor {other}MerchandisingEventBus exists" in text
    assert f"hd events.validate --table-prefix {other}" in text
    assert len(fake_tools.started()) == 1  # only the first session's tunnel
    assert rec.recorded(registry) == []


# --- nothing left behind when start fails -------------------------------------------------


def test_no_tunnel_tool_creates_nothing(
    moto_endpoint: str, registry: Registry, fake_tools: FakeTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake_tools.empty))
    prefix = new_prefix()
    make_buses(moto_endpoint, prefix)
    events = client("events", moto_endpoint)
    before = (
        len(events.list_connections()["Connections"]),
        len(events.list_api_destinations()["ApiDestinations"]),
    )
    with pytest.raises(TunnelError, match="neither cloudflared nor ngrok is on PATH"):
        start(registry, moto_endpoint, prefix, [])
    after = (
        len(events.list_connections()["Connections"]),
        len(events.list_api_destinations()["ApiDestinations"]),
    )
    assert after == before
    for bus in (prefix + s for s in BUS_SUFFIXES):
        assert events.list_rules(EventBusName=bus)["Rules"] == []
    assert rec.recorded(registry) == [] and not registry.path.exists()


def test_a_tunnel_without_url_undoes_the_start(
    moto_endpoint: str,
    registry: Registry,
    fake_tools: FakeTools,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_TUNNEL_MODE", "silent")
    prefix = new_prefix()
    buses = make_buses(moto_endpoint, prefix)
    said: list[str] = []
    with pytest.raises(TunnelError, match="printed no public URL within 0.3s"):
        start(registry, moto_endpoint, prefix, said, tunnel_timeout=0.3)
    # The pid from what was said: on a loaded machine the fake may be ended within its
    # 0.3 s before it got to record itself.
    pid = int(said[-1].split("(pid ", 1)[1].split(")")[0])
    assert set(fake_tools.started()) <= {pid}
    assert gone_within(pid, None)
    assert rec.recorded(registry) == []
    session_id = said[-2].rsplit("tunnel-", 1)[1].split(".log")[0]
    assert said[-1] == f"[tunnel] cloudflared tunnel (pid {pid}): already gone"
    assert leftovers(moto_endpoint, NAME_PREFIX + session_id, buses) == NOTHING


# --- crash recovery ------------------------------------------------------------------------

CHILD = """
import sys, time
from pathlib import Path
from hippo_tasks.events.bridge import EventsSession
from hippo_tasks.registry.store import Registry
session = EventsSession.start(
    registry=Registry(Path(sys.argv[1])), local_url=sys.argv[2], table_prefix=sys.argv[3],
    say=lambda line: None, endpoint_url=sys.argv[4],
)
print("READY", session.rule_name, session.tunnel.pid, flush=True)
time.sleep(120)
"""


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


def test_kill_9_of_the_owner_then_cleanup_recorded_removes_everything(
    moto_endpoint: str, registry: Registry
) -> None:
    prefix = new_prefix()
    buses = make_buses(moto_endpoint, prefix)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(registry.root), LOCAL_URL, prefix, moto_endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = read_line(child, 30)
        assert line.startswith("READY"), (line, child.stderr and child.stderr.read())
        _, rule_name, tunnel_pid = line.split()
        # while the owner runs, its session is left alone
        assert cleanup_recorded(registry) == []
        assert leftovers(moto_endpoint, rule_name, buses) != NOTHING
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    (tunnel,) = [e for e in rec.recorded(registry) if e["kind"] == rec.TUNNEL]
    assert tunnel["pid"] == int(tunnel_pid)
    assert is_same_process(tunnel["pid"], tunnel["create_time"])  # orphaned, still running

    lines = cleanup_recorded(registry)

    assert leftovers(moto_endpoint, rule_name, buses) == NOTHING
    assert gone_within(tunnel["pid"], tunnel["create_time"])
    assert rec.recorded(registry) == []
    assert lines[0].endswith(f"(its process {child.pid} is gone)")
    assert f"[tunnel] cloudflared tunnel (pid {tunnel_pid}): ended" in lines
    assert cleanup_recorded(registry) == []


def test_force_cleans_a_session_whose_owner_still_runs(
    moto_endpoint: str, registry: Registry
) -> None:
    prefix = new_prefix()
    buses = make_buses(moto_endpoint, prefix)
    session = start(registry, moto_endpoint, prefix, [])
    assert cleanup_recorded(registry) == []  # we are the owner, and alive
    lines = cleanup_recorded(registry, force=True)
    assert lines[0].endswith("(forced)")
    assert leftovers(moto_endpoint, session.rule_name, buses) == NOTHING
    # close() afterwards: everything already gone is not an error
    assert not any("could not" in line for line in session.close())


def test_the_owner_itself_may_clean_its_sessions_when_it_ends(
    moto_endpoint: str, registry: Registry
) -> None:
    prefix = new_prefix()
    buses = make_buses(moto_endpoint, prefix)
    session = start(registry, moto_endpoint, prefix, [])
    assert cleanup_recorded(registry, owner_pid=os.getpid() + 1) == []  # not the owner
    lines = cleanup_recorded(registry, owner_pid=os.getpid())
    assert lines[0].endswith("(its owner is ending)")
    assert leftovers(moto_endpoint, session.rule_name, buses) == NOTHING
    assert rec.recorded(registry) == []


def test_hand_over_makes_another_process_the_owner(moto_endpoint: str, registry: Registry) -> None:
    prefix = new_prefix()
    buses = make_buses(moto_endpoint, prefix)
    session = start(registry, moto_endpoint, prefix, [])
    keeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        session.hand_over(keeper.pid)
        owners = {e["owner"]["pid"] for e in rec.recorded(registry)}
        assert owners == {keeper.pid}
        assert cleanup_recorded(registry) == []  # the new owner lives
    finally:
        keeper.kill()
        keeper.wait()
    assert cleanup_recorded(registry)
    assert leftovers(moto_endpoint, session.rule_name, buses) == NOTHING


def test_resources_deleted_by_hand_are_not_an_error(moto_endpoint: str, registry: Registry) -> None:
    prefix = new_prefix()
    buses = make_buses(moto_endpoint, prefix)
    session = start(registry, moto_endpoint, prefix, [])
    events = client("events", moto_endpoint)
    for bus in buses:
        events.remove_targets(Rule=session.rule_name, EventBusName=bus, Ids=[TARGET_ID])
        events.delete_rule(Name=session.rule_name, EventBusName=bus)
    events.delete_api_destination(Name=session.rule_name)
    events.delete_connection(Name=session.rule_name)
    lines = session.close()
    assert not any("could not" in line for line in lines)
    assert rec.recorded(registry) == []


def aim_records_at(registry: Registry, endpoint: str) -> None:
    """Point every recorded AWS resource at `endpoint`, as if it had been made there."""
    def change(data: dict[str, Any]) -> None:
        for entry in data["resources"]:
            if entry.get("endpoint"):
                entry["endpoint"] = endpoint

    registry.update(change)


def test_a_failed_delete_stays_recorded_for_the_next_run(
    moto_endpoint: str, registry: Registry
) -> None:
    """An answer no later call can get past (expired credentials) stops the clean-up at
    its first resource; the rest are named, not tried, and all stay for the next run.
    (Removing the credentials no longer makes it fail: a loopback endpoint gets dummy
    ones, as `up` gave it.)"""
    from scripted_http import serving

    prefix = new_prefix()
    buses = make_buses(moto_endpoint, prefix)
    session = start(registry, moto_endpoint, prefix, [])
    expired = (400, {"__type": "ExpiredTokenException", "message": "token expired"}, 0.0)
    with serving([expired] * 20) as gone_bad:
        aim_records_at(registry, gone_bad.url)
        lines = cleanup_recorded(registry, force=True)
    failures = [line for line in lines if "could not delete" in line]
    assert len(failures) == 2, lines  # the first failure, then the rest not tried after it
    assert "Your AWS credentials have expired (ExpiredTokenException)" in failures[0]
    assert "not tried after that error" in failures[1]
    assert "the next `hd up` or `hd down` tries again" in failures[0]
    assert "safe to delete by hand" in failures[0]
    kinds = {e["kind"] for e in rec.recorded(registry)}
    assert kinds == {"rule-target", "rule", "api-destination", "connection"}  # tunnel ended
    assert rec.left_behind(registry, force=True) == 6

    aim_records_at(registry, moto_endpoint)
    lines = cleanup_recorded(registry, force=True)
    assert not any("could not" in line for line in lines)
    assert leftovers(moto_endpoint, session.rule_name, buses) == NOTHING
    assert rec.recorded(registry) == []
    assert rec.left_behind(registry, force=True) == 0
    assert not any("could not" in line for line in session.close())


def test_a_loopback_endpoint_gets_dummy_credentials_without_aws_endpoint_url(
    moto_endpoint: str, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint recorded for each resource decides the credentials, not the shell:
    with none configured, a clean-up after a crash got "No AWS credentials found"."""
    prefix = new_prefix()
    buses = make_buses(moto_endpoint, prefix)
    session = start(registry, moto_endpoint, prefix, [])
    for name in DUMMY_CREDENTIALS:
        monkeypatch.delenv(name)
    assert "AWS_ENDPOINT_URL" not in os.environ
    lines = cleanup_recorded(registry, force=True)
    assert not any("could not" in line for line in lines), lines
    for name, value in DUMMY_CREDENTIALS.items():  # for the test's own look
        monkeypatch.setenv(name, value)
    assert leftovers(moto_endpoint, session.rule_name, buses) == NOTHING


def test_records_on_a_local_endpoint_that_is_gone_are_dropped(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_aws_env(monkeypatch, tmp_path)
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    dead = f"http://127.0.0.1:{moto_server.free_port()}"
    ledger = rec.Ledger(registry, "deadbeef", {"pid": 999_999_999, "create_time": 1.0})
    ledger.add(rec.CONNECTION, "local-stack-webhook-deadbeef", region="us-east-1", endpoint=dead)
    lines = cleanup_recorded(registry)
    assert lines[-1] == (
        f"[eventbridge] {dead} no longer answers; the resources recorded there went with it"
    )
    assert rec.recorded(registry) == []


# --- AccessDenied under moto's IAM enforcement --------------------------------------------


@pytest.fixture(scope="module")
def iam_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server enforcing IAM after three unauthenticated calls (an admin's setup)."""
    log_path = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    yield from running_moto(log_path, {"INITIAL_NO_AUTH_ACTION_COUNT": "3"})


@pytest.fixture(scope="module")
def admin_keys(iam_moto: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An admin user on the enforcing server, made with its three free calls."""
    with pytest.MonkeyPatch.context() as patch:
        isolate_aws_env(patch, tmp_path_factory.mktemp("aws-home"))
        for name, value in DUMMY_CREDENTIALS.items():
            patch.setenv(name, value)
        iam = client("iam", iam_moto)
        iam.create_user(UserName="admin")
        allow_all = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        document = json.dumps({"Version": "2012-10-17", "Statement": [allow_all]})
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=document)
        key = iam.create_access_key(UserName="admin")["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


@pytest.fixture
def iam_admin(
    admin_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    """This test runs as the admin of the enforcing server (a hermetic environment)."""
    isolate_aws_env(monkeypatch, tmp_path)
    use(monkeypatch, admin_keys)
    return admin_keys


def restricted_user(endpoint: str, name: str, denied: list[str]) -> dict[str, str]:
    """A user allowed events:* and iam:*, except the actions in `denied` (as admin)."""
    iam = client("iam", endpoint)
    iam.create_user(UserName=name)
    statements = [
        {"Effect": "Allow", "Action": ["events:*", "iam:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": denied, "Resource": "*"},
    ]
    document = json.dumps({"Version": "2012-10-17", "Statement": statements})
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=document)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def keys_of(key: dict[str, str]) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def use(monkeypatch: pytest.MonkeyPatch, credentials: dict[str, str]) -> None:
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)


def test_access_denied_on_the_role_names_iam_create_role_and_starts_no_tunnel(
    iam_moto: str,
    iam_admin: dict[str, str],
    registry: Registry,
    fake_tools: FakeTools,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = new_prefix()
    make_buses(iam_moto, prefix)
    iam = client("iam", iam_moto)
    try:  # a role left by another test on this server would skip CreateRole
        iam.delete_role_policy(RoleName=ROLE_NAME, PolicyName=ROLE_POLICY_NAME)
        iam.delete_role(RoleName=ROLE_NAME)
    except Exception as exc:
        assert aws.error_code(exc) == "NoSuchEntity"
    use(monkeypatch, restricted_user(iam_moto, f"u{uuid.uuid4().hex[:6]}", ["iam:CreateRole"]))
    with pytest.raises(BridgeError) as caught:
        start(registry, iam_moto, prefix, [])
    err = caught.value
    assert err.kind == "access-denied" and err.permission == "iam:CreateRole"
    assert err.message().startswith(f"--enable-events: could not set up the IAM role {ROLE_NAME}")
    assert "needs the IAM permission iam:CreateRole" in err.message()
    assert fake_tools.started() == {}
    assert rec.recorded(registry) == []


def test_access_denied_half_way_names_the_permission_and_undoes_the_rest(
    iam_moto: str,
    iam_admin: dict[str, str],
    registry: Registry,
    fake_tools: FakeTools,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = new_prefix()
    buses = make_buses(iam_moto, prefix)
    use(monkeypatch, restricted_user(iam_moto, f"u{uuid.uuid4().hex[:6]}", ["events:PutTargets"]))
    said: list[str] = []
    with pytest.raises(BridgeError) as caught:
        start(registry, iam_moto, prefix, said)
    err = caught.value
    assert err.kind == "access-denied" and err.permission == "events:PutTargets"
    assert "needs the IAM permission events:PutTargets" in err.message()
    assert "add the API destination as target of rule" in err.message()
    # what had been made (tunnel, connection, destination, one rule) was undone
    (pid,) = fake_tools.started()
    assert gone_within(pid, None)
    rule_name = next(line for line in said if line.startswith("[eventbridge] deleted rule"))
    assert f"on {buses[0]}" in rule_name
    assert rec.recorded(registry) == []
    use(monkeypatch, iam_admin)
    names = [c["Name"] for c in client("events", iam_moto).list_connections()["Connections"]]
    assert not [n for n in names if n.startswith(NAME_PREFIX)]
    for secret in (iam_admin["AWS_SECRET_ACCESS_KEY"], *DUMMY_CREDENTIALS.values()):
        assert secret not in err.message() + "\n".join(said)


def test_access_denied_sentence_names_the_permission_aws_names() -> None:
    from botocore.exceptions import ClientError

    message = (
        "User: arn:aws:sts::123456789012:assumed-role/Dev/me is not authorized to perform: "
        "iam:PassRole on resource: arn:aws:iam::123456789012:role/" + ROLE_NAME
    )
    exc = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": message}}, "PutTargets"
    )
    err = rec.explain(exc, "events")
    assert err.permission == "iam:PassRole"
    assert "needs the IAM permission iam:PassRole" in err.sentence
    echoed = ClientError(
        {"Error": {"Code": "ValidationException", "Message": "bad value s3cr3t-token"}},
        "CreateConnection",
    )
    assert "s3cr3t-token" not in rec.explain(echoed, "events", "s3cr3t-token").sentence


def test_token_header_matches_the_daemons_webhook() -> None:
    webhook = pytest.importorskip("hippo_tasks.daemon.webhook.receive")
    assert TOKEN_HEADER == webhook.TOKEN_HEADER


def test_importing_the_bridge_does_not_import_boto3() -> None:
    code = (
        "import sys, hippo_tasks.events.bridge;"
        " print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
