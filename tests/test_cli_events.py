"""`invoke up --enable-events` through the real CLI: a fake tunnel tool, real moto."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import moto_server
import pytest
from fake_tunnels import FakeTools
from stackutil import (
    HD_CLI,
    alive,
    free_ports,
    hd,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)

from hippo_platform.provision import provision

moto_server_url = moto_server.moto_server_url
moto_endpoint = moto_server.moto_endpoint


@pytest.fixture
def tools(tmp_path: Path) -> Iterator[FakeTools]:
    fake = FakeTools(tmp_path).install("cloudflared")
    try:
        yield fake
    finally:
        fake.kill_all()


def env_for(tools: FakeTools, endpoint: str) -> dict[str, str]:
    return {"PATH": f"{tools.bin}{os.pathsep}{os.environ['PATH']}",
            "FAKE_TUNNEL_STATE": str(tools.state), "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}


def events_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("events", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def rules(endpoint: str, prefix: str) -> list[str]:
    ev = events_client(endpoint)
    return [r["Name"] for r in ev.list_rules(EventBusName=f"{prefix}EcomEventBus")["Rules"]]


def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def daemon_token(root: Path) -> str:
    """The token `up --enable-events` made, as the daemon recorded it (the 0600 registry:
    a forked daemon's /proc/PID/environ shows the environment `hd up` was started with)."""
    token = registry(root)["daemon"]["webhook_token"]
    assert isinstance(token, str) and len(token) >= 32, token
    return token


def test_enable_events_sets_up_guards_and_cleans_up(project: Path, tools: FakeTools,
                                                    moto_endpoint: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    provision(prefix, moto_endpoint)
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", a))
    env = env_for(tools, moto_endpoint)
    res = hd(project, "up", "--detach", "--enable-events", "--table-prefix", prefix, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "EventBridge webhook exposed at https://" in res.stdout
    assert "local-stack-webhook-" in res.stdout
    names = rules(moto_endpoint, prefix)
    assert len(names) == 1 and names[0].startswith("local-stack-webhook-")
    token = daemon_token(project)
    assert token not in res.stdout and token not in res.stderr
    hook = f"http://127.0.0.1:{dash}/webhook/eventbridge"
    event = {"detail-type": "Nothing.Routed", "detail": {}}
    assert post(hook, event, {}) == 401
    assert post(hook, event, {"x-hippodrome-webhook-token": token}) == 200
    # What arrives through the tunnel reaches the webhook and nothing else.
    req = urllib.request.Request(f"http://127.0.0.1:{dash}/api/status",
                                 headers={"Cf-Connecting-Ip": "203.0.113.9"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 403
    tunnel_pids = list(tools.started())
    assert tunnel_pids and all(alive(p) for p in tunnel_pids)

    down = hd(project, "down", env=env)
    assert down.returncode == 0, down.stderr
    assert rules(moto_endpoint, prefix) == []
    wait_for(lambda: not any(alive(p) for p in tunnel_pids), 10, what="tunnel ended")
    import boto3

    roles = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1",
                         aws_access_key_id="testing", aws_secret_access_key="testing")
    assert roles.get_role(RoleName="local-stack-eventbridge-api-dest-role")["Role"]
    assert registry(project)["resources"] == []


def up_with_events(project: Path, tools: FakeTools,
                   moto_endpoint: str) -> tuple[str, int, dict[str, str]]:
    """One toy service up with `--enable-events` on a fresh prefix: (prefix, dashboard
    port, the env its commands need)."""
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    provision(prefix, moto_endpoint)
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", a))
    env = env_for(tools, moto_endpoint)
    assert hd(project, "up", "--detach", "--enable-events", "--table-prefix", prefix,
              env=env).returncode == 0
    return prefix, dash, env


def test_events_send_and_hd_mcp_send_the_token_up_made(project: Path, tools: FakeTools,
                                                         moto_endpoint: str) -> None:
    """`up --enable-events` makes a random token that is never shown: `hd events.send`
    and `hd mcp`'s events_send were answered 401 by their own stack, with no way to set
    the variable the advice named (adv24 b/3). They send the running daemon's token."""
    from mcputil import Agent, stdio
    from mcputil import run as mcp_run

    _, dash, env = up_with_events(project, tools, moto_endpoint)
    try:
        token = daemon_token(project)
        assert "HIPPODROME_WEBHOOK_TOKEN" not in env and \
            "HIPPODROME_WEBHOOK_TOKEN" not in os.environ
        sent = hd(project, "events.send", "--detail-type", "Nothing.Routed", env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert '"status": "ignored"' in sent.stdout and token not in sent.stdout + sent.stderr

        async def scenario(agent: Agent) -> None:
            answer = await agent.ok("events_send", detail_type="Nothing.Routed")
            assert answer["ok"] and answer["http_status"] == 200, answer
            assert token not in json.dumps(answer)

        mcp_run(stdio(project), scenario)
        status = hd(project, "status", "--json", env=env)
        assert token not in status.stdout + status.stderr
    finally:
        hd(project, "down", env=env)


def test_a_tunnel_that_exits_is_said_in_status_and_the_log(project: Path, tools: FakeTools,
                                                           moto_endpoint: str) -> None:
    """The tunnel gone (a provider dropping a quick tunnel, a kill): events stopped
    arriving, and status, the API and the daemon's log said nothing until `hd down`."""
    prefix, dash, env = up_with_events(project, tools, moto_endpoint)
    try:
        (tunnel,) = list(tools.started())
        assert hd(project, "status", env=env).stdout.count("WARNING") == 0
        os.kill(tunnel, signal.SIGKILL)
        said = wait_for(lambda: (lambda out: out if "WARNING" in out else None)(
            hd(project, "status", env=env).stdout), 15, what="status saying so")
        assert f"WARNING: the cloudflared tunnel (pid {tunnel}) has exited: EventBridge " \
               "events no longer reach this stack" in said, said
        with urllib.request.urlopen(f"http://127.0.0.1:{dash}/api/status", timeout=10) as r:
            problem = json.loads(r.read())["problems"]["tunnel"]
        assert problem["error"] == "exited" and "hd up --enable-events" in problem["message"]
        log = (project / ".hippodrome" / "daemon.log").read_text()
        assert log.count(f"[tunnel] the cloudflared tunnel (pid {tunnel}) has exited") == 1
    finally:
        assert hd(project, "down", env=env).returncode == 0
    assert rules(moto_endpoint, prefix) == []


def test_kill_9_then_down_force_removes_everything(project: Path, tools: FakeTools,
                                                  moto_endpoint: str) -> None:
    prefix, dash, env = up_with_events(project, tools, moto_endpoint)
    assert rules(moto_endpoint, prefix)
    tunnel_pids = list(tools.started())
    assert tunnel_pids and all(alive(p) for p in tunnel_pids)
    os.kill(registry(project)["daemon"]["pid"], signal.SIGKILL)
    # The guard ends the tunnel as it ends the services, before anyone runs a command: it
    # outlived the daemon, a public tunnel to a dead port until the next `hd down`.
    wait_for(lambda: not any(alive(p) for p in tunnel_pids), 10, what="the guard ended it")
    res = hd(project, "down", "--force", env=env)
    assert res.returncode == 0, res.stderr
    assert rules(moto_endpoint, prefix) == []
    assert registry(project)["resources"] == []


def kill_9_with_events_on_moto(project: Path, tools: FakeTools, moto_endpoint: str,
                               monkeypatch: pytest.MonkeyPatch) -> str:
    """`up --enable-events` on the local moto with no credentials anywhere (the dummy ones
    for a loopback endpoint), then `kill -9` of its daemon; the prefix."""
    for name in moto_server.DUMMY_CREDENTIALS:
        monkeypatch.delenv(name)
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    provision(prefix, moto_endpoint)
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", a))
    env = {k: v for k, v in env_for(tools, moto_endpoint).items() if "_KEY" not in k}
    up = hd(project, "up", "--detach", "--enable-events", "--table-prefix", prefix, env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert rules(moto_endpoint, prefix)
    tunnel_pids = list(tools.started())
    os.kill(registry(project)["daemon"]["pid"], signal.SIGKILL)
    wait_for(lambda: not any(alive(p) for p in tunnel_pids), 10, what="the guard ended it")
    return prefix


@pytest.mark.parametrize("force", [False, True], ids=["down", "down-force"])
def test_after_kill_9_a_fresh_shell_deletes_what_the_recorded_moto_holds(
        project: Path, tools: FakeTools, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
        force: bool) -> None:
    """The registry records the loopback endpoint each resource was made on, and clean-up
    gives it the dummy credentials `up` gave it: a shell without AWS_ENDPOINT_URL got "No
    AWS credentials found", everything stayed, and `hd down` exited 0."""
    prefix = kill_9_with_events_on_moto(project, tools, moto_endpoint, monkeypatch)
    assert "AWS_ENDPOINT_URL" not in os.environ
    res = hd(project, "down", *(["--force"] if force else []))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "could not delete" not in res.stdout, res.stdout
    assert rules(moto_endpoint, prefix) == []
    assert registry(project)["resources"] == []


def test_down_waits_for_the_up_it_overtook_to_delete_its_resources(
        project: Path, tools: FakeTools, moto_endpoint: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A `down` that overtook `up --enable-events` while it set AWS up said "stack
    stopped", exit 0, with the rule and its targets still there (their owner, that `up`,
    alive and deleting them later, or not at all if it was then killed). Here the owner
    is a live process that ends a moment later: `down` waits for it, then deletes."""
    from hippo_tasks.registry.store import Registry, identity

    prefix = kill_9_with_events_on_moto(project, tools, moto_endpoint, monkeypatch)
    owner = subprocess.Popen(["sleep", "120"])
    down: subprocess.Popen[str] | None = None
    try:
        mine = {"pid": owner.pid, "create_time": identity(owner.pid)}

        def owned(data: dict[str, Any]) -> None:
            for entry in data.get("resources") or []:
                entry["owner"] = dict(mine)

        Registry(project).update(owned)
        # The owner ends once `down` says it waits for it (a `sleep 1.5` was gone before
        # a loaded CI run's `down` had looked: nothing to wait for)
        down = subprocess.Popen([*HD_CLI, "down", "--project-root", str(project)],
                                cwd=project, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert down.stdout is not None
        said = ""
        while f"waiting for pid {owner.pid} (the `up` this stopped)" not in said:
            line = down.stdout.readline()
            assert line, said
            said += line
        owner.kill()
        said += down.communicate(timeout=120)[0]
        assert down.returncode == 0, said
        assert rules(moto_endpoint, prefix) == []
        assert registry(project)["resources"] == []
    finally:
        owner.kill()
        owner.wait()
        if down is not None and down.poll() is None:
            down.kill()


def test_a_down_after_a_killed_down_waits_for_the_daemon_still_ending(
        project: Path, tools: FakeTools, moto_endpoint: str) -> None:
    """`hd down` killed while the daemon, its port closed, still ended its tunnel and
    deleted its rules: the next `hd down` called that daemon a possible stranger ("end
    it yourself: kill N") and ran a forced clean-up beside the daemon's own (x/9)."""
    from hippo_tasks.supervision.ports import holder_of

    tools_env = {"FAKE_TUNNEL_MODE": "ignore-term"}  # the daemon's tunnel stop takes 5 s
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    provision(prefix, moto_endpoint)
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", a))
    env = {**env_for(tools, moto_endpoint), **tools_env}
    assert hd(project, "up", "--detach", "--enable-events", "--table-prefix", prefix,
              env=env).returncode == 0
    daemon = registry(project)["daemon"]["pid"]
    first = subprocess.Popen([*HD_CLI, "down"], cwd=project, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, **env})
    try:
        wait_for(lambda: holder_of(dash)[0] != daemon, 30, what="the daemon closed its port")
        assert alive(daemon)
        first.kill()
        first.wait(10)
        res = hd(project, "down", env=env, timeout=120)
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        assert "no longer listens but is still ending" in out and "kill " not in out, out
        assert "(forced)" not in out and "stack stopped, daemon exited" in out, out
        assert not alive(daemon)
        assert rules(moto_endpoint, prefix) == []
        assert registry(project)["resources"] == []
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        hd(project, "down", "--force", env=env)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting tmpfs needs root")
def test_down_on_a_full_disk_deletes_the_resources_and_says_so(
        tmp_path: Path, tools: FakeTools, moto_endpoint: str) -> None:
    """`hd down` of an `--enable-events` stack whose disk filled: it stopped everything
    and deleted the rule, then could not strike it from the registry and ended on the
    pre-flight's "cannot write ... nothing was started or stopped", exit 10 (q/6)."""
    from test_disk_faults import _fill, cleaned_up, tmpfs

    with tmpfs(tmp_path / "disk", "4m") as root, cleaned_up(root):
        prefix, _dash, env = up_with_events(root, tools, moto_endpoint)
        daemon = registry(root)["daemon"]["pid"]
        assert rules(moto_endpoint, prefix)
        filler = _fill(root)
        down = hd(root, "down", env=env, timeout=120)
        said = down.stdout + down.stderr
        assert down.returncode == 0 and "stack stopped" in said, said
        assert "nothing was started or stopped" not in said, said
        assert "could not be struck from" in said, said
        assert rules(moto_endpoint, prefix) == [] and not alive(daemon)
        filler.unlink()
        again = hd(root, "down", env=env, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert registry(root)["resources"] == []


def test_resources_that_stay_are_the_last_line_and_exit_1(
        project: Path, tools: FakeTools, moto_endpoint: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean-up that leaves resources behind is not a success: it read `could not
    delete ...`, then nothing more, exit 0."""
    prefix = kill_9_with_events_on_moto(project, tools, moto_endpoint, monkeypatch)
    res = hd(project, "down", env={"AWS_PROFILE": "no-such-profile"})
    assert res.returncode == 1, res.stdout + res.stderr
    assert "could not delete" in res.stdout and "names no profile" in res.stdout
    assert res.stderr.strip().splitlines()[-1] == (
        "hippodrome: the stack is stopped, but 6 resources made by --enable-events could not "
        "be deleted (said above): they stay recorded in .hippodrome/registry.json, and the "
        "next `hd down` or `hd up` tries again")
    assert rules(moto_endpoint, prefix)
    again = hd(project, "down")
    assert again.returncode == 0, again.stdout + again.stderr
    assert rules(moto_endpoint, prefix) == []
    assert registry(project)["resources"] == []


def test_no_tunnel_tool_starts_nothing(project: Path, tmp_path: Path,
                                       moto_endpoint: str) -> None:
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", a))
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    python_dir = str(Path(os.sys.executable).parent)
    env = {"PATH": f"{empty}{os.pathsep}{python_dir}{os.pathsep}/usr/bin:/bin",
           "AWS_ENDPOINT_URL": moto_endpoint}
    res = hd(project, "up", "--detach", "--enable-events", "--table-prefix", "none-", env=env)
    assert res.returncode != 0
    assert "cloudflared" in res.stderr and "ngrok" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (project / ".hippodrome" / "registry.json").exists() or \
        registry(project)["daemon"] is None


@pytest.mark.parametrize(("setting", "said"), [
    ({"AWS_PROFILE": "no-such-profile"}, "AWS_PROFILE 'no-such-profile' names no profile"),
    ({"AWS_DEFAULT_REGION": "bad region"}, "The AWS region 'bad region' is not a region name"),
])
def test_a_broken_aws_setting_starts_nothing_and_is_one_sentence(
        project: Path, tools: FakeTools, moto_endpoint: str, setting: dict[str, str],
        said: str) -> None:
    """Both were a traceback (ProfileNotFound, InvalidRegionError) from `up`."""
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", a))
    res = hd(project, "up", "--detach", "--enable-events", "--table-prefix", "conf-",
             env={**env_for(tools, moto_endpoint), **setting})
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and said in res.stderr, res.stderr
    assert not list(tools.started())
    assert not (project / ".hippodrome" / "registry.json").exists() or \
        registry(project)["daemon"] is None


def test_kill_9_of_up_before_its_daemon_ends_the_tunnel(project: Path, tools: FakeTools,
                                                       moto_endpoint: str) -> None:
    """`up` starts the tunnel seconds before the daemon (and its guard) exist: killed
    then, it left a public tunnel to a port nobody serves until the next `up`/`down`."""
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    provision(prefix, moto_endpoint)
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", a))
    env = {**os.environ, **env_for(tools, moto_endpoint), "FAKE_TUNNEL_MODE": "silent"}
    up = subprocess.Popen([*HD_CLI, "up", "--detach", "--enable-events", "--table-prefix",
                           prefix], cwd=project, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        tunnel_pids = wait_for(lambda: list(tools.started()), 30, what="the tunnel started")
        os.kill(up.pid, signal.SIGKILL)  # it waits up to 30 s for a URL that never comes
        up.wait(10)
        wait_for(lambda: not any(alive(p) for p in tunnel_pids), 10,
                 what="the tunnel ended with the `up` that started it")
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
    res = hd(project, "down", env=env_for(tools, moto_endpoint))
    assert res.returncode == 0, res.stdout + res.stderr
    assert registry(project)["resources"] == []
