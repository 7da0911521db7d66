"""events.validate and the `events.validate` Invoke task, against a real moto server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import moto_server
import pytest
from moto_server import DUMMY_CREDENTIALS, free_port

from hippo_platform.provision import provision
from hippo_tasks.events import aws
from hippo_tasks.events.validate import Target, header, validate

# The real-moto fixtures, made visible to this module (one server per module).
moto_server_url = moto_server.moto_server_url
moto_endpoint = moto_server.moto_endpoint

REPO = Path(__file__).resolve().parents[1]
# Runs the task through invoke's own CLI machinery, as `invoke events.validate` would.
TASK_RUNNER = (
    "import sys\n"
    "from invoke import Collection, Program\n"
    "from hippo_tasks.tasks.events import ns\n"
    "root = Collection()\n"
    "root.add_collection(ns)\n"
    "Program(namespace=root, name='hd', binary='hd').run(['hd', *sys.argv[1:]])\n"
)


def checks(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("[")]


def statuses(lines: list[str]) -> list[str]:
    return [line.split("]")[0] + "]" for line in checks(lines)]


def run_task(*args: str, cwd: Path = REPO,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TASK_RUNNER, "events.validate", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_empty_account_is_six_missing_each_with_a_fix(moto_endpoint: str) -> None:
    lines, ok = validate("val-empty-", moto_endpoint)
    assert not ok
    assert statuses(lines) == ["[MISSING]"] * 6
    names = [
        "val-empty-EcomEventBus",
        "val-empty-MerchandisingEventBus",
        "val-empty-IndexSettingsEventPipe",
        "val-empty-MerchandisingEventPipe",
        "val-empty-EcomIndexSettingsTable",
        "val-empty-MerchandisingTable",
    ]
    for line, name in zip(checks(lines), names, strict=True):
        assert f" {name} does not exist" in line
        following = lines[lines.index(line) + 1]
        assert following.strip() == (
            "fix: `hd up --profile ecom --table-prefix val-empty-` provisions it on moto"
        )
    assert lines[-1] == "6 of 6 checks need attention."


def test_after_provision_all_six_are_ok(moto_endpoint: str) -> None:
    provision("val-ok-", moto_endpoint)
    lines, ok = validate("val-ok-", moto_endpoint)
    assert ok
    assert statuses(lines) == ["[OK]"] * 6
    assert "[OK] Pipe val-ok-IndexSettingsEventPipe is RUNNING" in lines
    assert "[OK] Table val-ok-MerchandisingTable streams NEW_AND_OLD_IMAGES" in lines
    assert lines[-1] == "All 6 checks passed."
    assert not any("arn:" in line or "fix:" in line for line in lines)


def test_verbose_adds_arns_states_and_view_types(moto_endpoint: str) -> None:
    provision("val-verbose-", moto_endpoint)
    lines, ok = validate("val-verbose-", moto_endpoint, verbose=True)
    assert ok and len(checks(lines)) == 6
    text = "\n".join(lines)
    assert "arn: arn:aws:events:us-east-1:123456789012:event-bus/val-verbose-EcomEventBus" in text
    assert (
        "arn: arn:aws:pipes:us-east-1:123456789012:pipe/val-verbose-MerchandisingEventPipe" in text
    )
    assert "state: RUNNING (desired RUNNING)" in text
    assert "stream: enabled, view type NEW_AND_OLD_IMAGES" in text
    assert "stream arn: arn:aws:dynamodb:" in text
    assert "target: arn:aws:events:us-east-1:123456789012:event-bus/val-verbose-" in text


def test_stream_turned_off_is_a_warning(moto_endpoint: str) -> None:
    provision("val-off-", moto_endpoint)
    aws.client("dynamodb", moto_endpoint).update_table(
        TableName="val-off-EcomIndexSettingsTable", StreamSpecification={"StreamEnabled": False}
    )
    lines, ok = validate("val-off-", moto_endpoint, verbose=True)
    assert not ok
    assert statuses(lines) == ["[OK]"] * 4 + ["[WARN]", "[OK]"]
    warn = "[WARN] Table val-off-EcomIndexSettingsTable has no stream enabled"
    assert warn in lines
    assert "stream: disabled, view type none" in "\n".join(lines)
    fix = next(line for line in lines[lines.index(warn) :] if "fix:" in line)
    assert "moto cannot re-enable a stream" in fix and "hd up --profile ecom" in fix
    assert lines[-1] == "1 of 6 checks need attention."


def test_keys_only_stream_is_a_warning(moto_endpoint: str) -> None:
    # Created before provisioning, which leaves an existing stream's view type alone.
    aws.client("dynamodb", moto_endpoint).create_table(
        TableName="val-keys-MerchandisingTable",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
    )
    provision("val-keys-", moto_endpoint)
    lines, ok = validate("val-keys-", moto_endpoint)
    assert not ok
    assert statuses(lines) == ["[OK]"] * 5 + ["[WARN]"]
    assert (
        "[WARN] Table val-keys-MerchandisingTable streams KEYS_ONLY, but the pipe needs "
        "NEW_IMAGE or NEW_AND_OLD_IMAGES"
    ) in lines


def test_stopped_pipe_is_a_warning_with_its_state(moto_endpoint: str) -> None:
    provision("val-stop-", moto_endpoint)
    aws.client("pipes", moto_endpoint).stop_pipe(Name="val-stop-MerchandisingEventPipe")
    lines, ok = validate("val-stop-", moto_endpoint)
    assert not ok
    assert statuses(lines) == ["[OK]"] * 3 + ["[WARN]"] + ["[OK]"] * 2
    warn = "[WARN] Pipe val-stop-MerchandisingEventPipe is STOPPED, not RUNNING"
    assert warn in lines
    assert (
        "aws pipes start-pipe --name val-stop-MerchandisingEventPipe"
        in lines[lines.index(warn) + 1]
    )


def test_endpoint_comes_from_aws_endpoint_url(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provision("val-env-", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    lines, ok = validate("val-env-")
    assert ok
    assert lines[0] == f"EventBridge infrastructure for table prefix 'val-env-' on {moto_endpoint}:"


def test_no_credentials_is_one_sentence_not_six_lines(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real AWS (no endpoint) with no credentials: boto3 fails before any request."""
    for name in DUMMY_CREDENTIALS:
        monkeypatch.delenv(name)
    lines, ok = validate("val-nocred-")
    assert not ok
    assert checks(lines) == []
    assert lines[1].startswith("Cannot check EventBridge infrastructure: No AWS credentials found")


def test_loopback_endpoint_without_credentials_uses_dummy_ones(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--endpoint-url http://127.0.0.1:9003` in a shell with no AWS setup at all."""
    for name in DUMMY_CREDENTIALS:
        monkeypatch.delenv(name)
    provision("val-dummy-", moto_endpoint)  # provisioning goes through new_session too
    lines, ok = validate("val-dummy-", moto_endpoint.replace("127.0.0.1", "localhost"))
    assert ok, lines
    task = run_task("--table-prefix", "val-dummy-", "--endpoint-url", moto_endpoint)
    assert task.returncode == 0, task.stdout + task.stderr
    assert statuses(task.stdout.splitlines()) == ["[OK]"] * 6
    assert "testing" not in task.stdout + task.stderr


BROKEN_SETTINGS = [
    ({"AWS_PROFILE": "no-such-profile"},
     "AWS_PROFILE 'no-such-profile' names no profile of the AWS config file"),
    ({"AWS_DEFAULT_REGION": "bad region"}, "The AWS region 'bad region' is not a region name"),
    ({"AWS_SECRET_ACCESS_KEY": ""},  # a key id without its secret
     "Your AWS credentials are incomplete: env has no AWS_SECRET_ACCESS_KEY"),
    ({"AWS_CONFIG_FILE": "BROKEN"}, "/config cannot be read (not INI syntax): correct it"),
]


@pytest.mark.parametrize("local", [True, False], ids=["moto", "aws"])
@pytest.mark.parametrize(("setting", "said"), BROKEN_SETTINGS,
                         ids=[next(iter(s)) for s, _ in BROKEN_SETTINGS])
def test_a_broken_aws_setting_is_one_sentence_not_a_traceback(
        moto_endpoint: str, tmp_path: Path, setting: dict[str, str], said: str,
        local: bool) -> None:
    """boto3 refuses these when the session or client is made, before any call: each was
    a traceback (ProfileNotFound, InvalidRegionError...), even against the local moto."""
    if setting.get("AWS_CONFIG_FILE") == "BROKEN":
        broken = tmp_path / "config"
        broken.write_text("[default\nregion = us-east-1\n")
        setting = {"AWS_CONFIG_FILE": str(broken)}
    out = run_task("--table-prefix", "val-conf-",
                   *(["--endpoint-url", moto_endpoint] if local else []), env=setting)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stdout.splitlines()
    assert checks(lines) == [] and len(lines) == 2, lines
    assert lines[1].startswith("Cannot check EventBridge infrastructure: ") and said in lines[1]
    for value in DUMMY_CREDENTIALS.values():
        assert value not in out.stdout + out.stderr


@pytest.mark.parametrize(("helper", "said"), [
    ("echo not json", "getting credentials failed: JSONDecodeError"),
    ("printf [1,2]", "getting credentials failed: AttributeError"),
    ("/nonexistent/helper", "getting credentials failed: FileNotFoundError"),
    ("sleep 60", "the AWS credentials did not come within 15s"),
], ids=["garbage", "a-list", "missing", "hangs"])
def test_a_credential_process_that_fails_is_one_sentence(
        moto_endpoint: str, tmp_path: Path, helper: str, said: str) -> None:
    """A profile's credential_process printing no JSON object, or not there, was a
    traceback at the first call; one that never returned held the command for ever."""
    config = tmp_path / "config"
    config.write_text(f"[profile helped]\ncredential_process = {helper}\n")
    out = run_task("--table-prefix", "val-proc-", "--endpoint-url", moto_endpoint,
                   env={"AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "helped",
                        "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
                        "AWS_SESSION_TOKEN": ""})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert said in out.stdout, out.stdout


def test_aws_region_is_read_as_the_aws_cli_reads_it(
        moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore reads only AWS_DEFAULT_REGION: AWS_REGION=eu-west-3 was ignored without
    a word, and the checks signed for us-east-1."""
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert aws.client("events", moto_endpoint).meta.region_name == "eu-west-3"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")  # AWS_REGION wins, as in the CLI
    assert aws.client("events", moto_endpoint).meta.region_name == "eu-west-3"


def test_a_password_in_the_endpoint_url_is_never_shown(moto_endpoint: str) -> None:
    """`AWS_ENDPOINT_URL=http://gw:TopS3cretPw@127.0.0.1:PORT` (botocore takes it): the
    password was printed in the header line and in the rule's line."""
    with_password = moto_endpoint.replace("http://", "http://gw:TopS3cretPw@")
    lines, _ = validate("val-pw-", with_password)
    text = "\n".join(lines)
    assert "TopS3cretPw" not in text, text
    assert "http://***@127.0.0.1:" in lines[0], lines[0]
    assert aws.redact("failed at http://a:b@h:1/x and https://u@h") == \
        "failed at http://***@h:1/x and https://***@h"


def test_only_loopback_endpoints_count_as_local() -> None:
    for url in ("http://127.0.0.1:9003", "http://localhost:9003", "http://[::1]:9003",
                "http://127.0.0.2:4566"):
        assert aws.is_loopback(url), url
    for remote in ("https://events.us-east-1.amazonaws.com", "http://10.0.0.5:9003",
                   "http://moto:9003", "", None):
        assert not aws.is_loopback(remote), remote


def test_unreachable_endpoint_fails_fast_with_the_url(moto_endpoint: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    lines, ok = validate("val-down-", url)
    assert time.monotonic() - started < 3
    assert not ok
    assert checks(lines) == []
    assert f"Could not reach the AWS endpoint {url}" in lines[1]
    assert "moto server may not be running" in lines[1]


@pytest.mark.parametrize("url", ["notaurl", "ftp://127.0.0.1:9003", "http://127.0.0.1:99999",
                                 "http://:9003", "http://[::1", "http://127.0.0.1:0",
                                 "http://a b"])
def test_an_endpoint_that_is_not_a_url_says_so(url: str) -> None:
    """`notaurl` was "Connection refused" (it tried localhost:80)."""
    lines, ok = validate("val-url-", url)
    assert not ok and checks(lines) == []
    assert "is not an http:// or https:// URL with a host" in "\n".join(lines), lines


def test_an_endpoint_that_accepts_but_never_answers_fails_in_seconds() -> None:
    """A port that accepts connections and answers nothing (a hung server, a wrong
    service): every call waited its 30 s read timeout eight times over, and the command
    sat silent for over 20 minutes (as did `up --enable-events`, holding its lock)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        lines, ok = validate("val-silent-", url)
        took = time.monotonic() - started
    assert not ok and checks(lines) == [], lines
    assert "accepts connections but did not answer within 10 s" in lines[1], lines
    assert took < 60, took


def test_an_endpoint_that_answers_once_then_hangs_fails_in_seconds() -> None:
    """A moto frozen after its first answer (SIGSTOP, a deadlock): the probe's GET was
    answered, then every call waited 30 s eight times over, and the command sat
    silent for minutes. A loopback endpoint gets 10 s twice, and its silence ends the
    checks."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            if conn.recv(65536).startswith(b"GET"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        lines, ok = validate("val-hung-", url)
        took = time.monotonic() - started
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert not ok and checks(lines) == [], lines
    assert "it stopped answering: no answer within 10 s, twice" in lines[1], lines
    assert took < 90, took


@pytest.mark.parametrize("url", ["foo", "http://[::1"])  # the second: a ValueError traceback
def test_a_bad_endpoint_flag_is_exit_2_like_any_bad_argument(url: str) -> None:
    out = run_task("--table-prefix", "val-flag-", "--endpoint-url", url)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"--endpoint-url: The AWS endpoint {url!r} is not an http://" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_endpoint_that_is_not_aws_is_never_ok(moto_endpoint: str) -> None:
    """A web app on a wrong port answers every call 200 with JSON: that was `[OK] Event
    bus ... exists` with `arn: ?`."""
    from scripted_http import serving

    with serving([(200, {"hello": "world"}, 0.0)] * 20) as app:
        lines, ok = validate("val-app-", app.url)
    assert not ok
    assert not [line for line in checks(lines) if line.startswith("[OK]")], lines
    assert any("the endpoint answered, but not as AWS EventBridge does (no Arn" in line
               for line in lines), lines


def test_an_answer_of_the_wrong_shape_is_not_aws_not_a_python_error(
        moto_endpoint: str) -> None:
    """`"Table": "str"` made the table checks say `AWS call failed: AttributeError: 'str'
    object has no attribute 'get'.`, with no fix (adv28 k/7)."""
    from scripted_http import serving

    odd = {"Name": 5, "Arn": None, "CurrentState": ["x"], "Table": "str"}
    with serving([(200, odd, 0.0)] * 20) as app:
        lines, ok = validate("val-odd-", app.url)
    assert not ok
    text = "\n".join(lines)
    assert "AttributeError" not in text and "AWS call failed" not in text, text
    assert "Could not check table val-odd-EcomIndexSettingsTable: the endpoint answered, " \
        "but not as AWS dynamodb does (its answer is not AWS's format)" in text, text


@pytest.mark.parametrize("status", [404, 405])
def test_an_endpoint_that_refuses_as_no_aws_does_gets_the_fix(moto_endpoint: str,
                                                              status: int) -> None:
    """Another port of the stack (fake_cell's 404, the dashboard's 405) as the endpoint:
    six bare `DescribeEventBus failed with 404.` lines, and no fix."""
    from scripted_http import serving

    with serving([(status, {"error": "no such route"}, 0.0)] * 20) as app:
        lines, ok = validate("val-app-", app.url)
    assert not ok
    text = "\n".join(lines)
    assert f"the endpoint answered HTTP {status} to DescribeEventBus, but not as AWS " \
           "events does" in text, text
    assert "check --endpoint-url (or AWS_ENDPOINT_URL)" in text, text


def test_an_endpoint_answering_an_html_error_page_gets_the_fix(moto_endpoint: str) -> None:
    """Any web app's 404 page, nginx's 502: still `DescribeEventBus failed with 404.`"""
    from scripted_http import serving

    page = b"<html><body><h1>404 Not Found</h1></body></html>"
    with serving([(404, page, 0.0)] * 20) as app:
        lines, ok = validate("val-html-", app.url)
    text = "\n".join(lines)
    assert not ok and "answered HTTP 404 to DescribeEventBus, but not as AWS events" in text, \
        text
    assert "check --endpoint-url (or AWS_ENDPOINT_URL)" in text, text


def test_task_exit_codes_and_no_secret_in_output(moto_endpoint: str) -> None:
    missing = run_task("--table-prefix", "val-task-", "--endpoint-url", moto_endpoint)
    assert missing.returncode == 1, missing.stderr
    assert statuses(missing.stdout.splitlines()) == ["[MISSING]"] * 6
    assert "Traceback" not in missing.stderr

    provision("val-task-", moto_endpoint)
    good = run_task("--table-prefix", "val-task-", "--endpoint-url", moto_endpoint, "--verbose")
    assert good.returncode == 0, good.stdout + good.stderr
    assert statuses(good.stdout.splitlines()) == ["[OK]"] * 6
    assert "arn: arn:aws:" in good.stdout

    secret = aws.client("secretsmanager", moto_endpoint).get_secret_value(
        SecretId="val-task-marqo-api-key-secret"
    )["SecretString"]
    for text in (missing.stdout, missing.stderr, good.stdout, good.stderr):
        assert secret not in text
        for value in DUMMY_CREDENTIALS.values():
            assert value not in text


def test_task_defaults_the_prefix_from_the_project(moto_endpoint: str, tmp_path: Path) -> None:
    # Outside git, the default table prefix is dev-local- (DESIGN section 1).
    (tmp_path / "hippodrome.toml").write_text("[stack]\n")
    out = run_task("--endpoint-url", moto_endpoint, cwd=tmp_path)
    assert out.returncode == 1
    assert "table prefix 'dev-local-'" in out.stdout
    assert "[MISSING] Event bus dev-local-EcomEventBus does not exist" in out.stdout


@pytest.mark.parametrize("prefix", ["bad prefix!", "a" * 41, "dev-é-"])
def test_a_prefix_up_refuses_is_refused_before_any_call(prefix: str) -> None:
    """It was queried (six `[MISSING]`, exit 1), with a fix naming `hd up --table-prefix
    bad prefix!`, which `hd up` refuses. The endpoint named answers nothing: no call."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        out = run_task("--table-prefix", prefix, "--endpoint-url", url)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        f"hippodrome: --table-prefix '{prefix}' cannot name AWS resources: use ASCII letters, "
        "digits, '-' and '_', not '-' first, at most 40 characters (e.g. --table-prefix "
        "dev-feature-x-)")


def test_a_prefix_made_from_a_long_branch_is_refused_as_up_refuses_it(tmp_path: Path) -> None:
    (tmp_path / "hippodrome.toml").write_text("[stack]\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "checkout", "-q", "-b", "feature/" + "x" * 45], check=True)
    out = run_task("--endpoint-url", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "the table prefix made from the git branch, 'dev-feature-xxx" in out.stderr
    assert "give --table-prefix" in out.stderr or "e.g. --table-prefix" in out.stderr


def test_fix_commands_are_shell_quoted() -> None:
    """What a fix line names is pasted into a shell as it is printed."""
    local = Target("dev-main-", "http://127.0.0.1:9003/?a=1&b=2")
    assert "`hd up --profile ecom --table-prefix dev-main-`" in local.deploy_fix("EcomEventBus")
    assert local.cli("pipes start-pipe --name x").endswith(
        "--endpoint-url 'http://127.0.0.1:9003/?a=1&b=2'`")


def test_real_aws_fixes_point_at_the_cdk_stacks() -> None:
    real = Target("dev-main-", None)
    assert "cd infra/ecom && npx cdk deploy" in real.deploy_fix("IndexSettingsEventPipe")
    assert "MerchandisingStack" in real.deploy_fix("MerchandisingEventBus")
    assert real.cli("pipes start-pipe --name x") == "`aws pipes start-pipe --name x`"
    local = Target("dev-main-", "http://127.0.0.1:9003")
    assert local.cli("pipes start-pipe --name x").endswith("--endpoint-url http://127.0.0.1:9003`")
    assert header(real).endswith("on AWS (default credential chain):")
