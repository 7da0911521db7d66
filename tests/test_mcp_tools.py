"""Every MCP tool against a real running stack, through the official SDK client, over
the daemon's HTTP endpoint and over `hd mcp` (stdio): answers, outcomes, bad arguments.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcputil import Agent, first_row, http, post, run, small_stack, stdio, tool_call
from stackutil import free_ports, hd, registry, stack_header, toy_service, wait_for, write_stack

READ_ONLY = {"status", "logs", "wait_ready", "why", "events_recordings"}
"""Not probes: it creates and deletes an index (an agent may run a read-only tool without
asking)."""


@pytest.fixture
def stack(project: Path) -> Iterator[tuple[Path, str]]:
    dashboard = small_stack(project)
    hd(project, "up", "--detach", check=True)
    yield project, dashboard
    hd(project, "down")


@pytest.fixture(params=["http", "stdio"])
def target(request: pytest.FixtureRequest, stack: tuple[Path, str]) -> Any:
    root, dashboard = stack
    return http(dashboard) if request.param == "http" else stdio(root)


def test_tools_are_listed_with_schemas_and_hints(target: Any) -> None:
    async def scenario(agent: Agent) -> None:
        listed = (await agent.client.list_tools()).tools
        names = {t.name for t in listed}
        assert names >= {"status", "start", "stop", "restart", "logs", "wait_ready", "why",
                         "events_send", "events_replay", "probes", "seed"}
        for tool in listed:
            assert tool.description and tool.input_schema["type"] == "object"
            assert tool.input_schema["additionalProperties"] is False
            assert tool.output_schema is not None
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is (tool.name in READ_ONLY), tool.name
        logs = next(t for t in listed if t.name == "logs")
        assert logs.input_schema["required"] == ["service"]
        assert logs.input_schema["properties"]["limit"]["maximum"] == 500

    run(target, scenario)


def test_status_logs_why_and_actions(target: Any) -> None:
    async def scenario(agent: Agent) -> None:
        status = await agent.ok("status")
        rows = {r["name"]: r for r in status["services"]}
        assert rows["web"]["state"] == "running" and rows["bad"]["state"] == "failed"

        said = await agent.ok("logs", service="web", text="WEB SAYS")
        assert [ln["line"] for ln in said["lines"]] == ["web says hello"]
        assert said["log_path"].endswith("/web.log") and Path(said["log_path"]).exists()

        why = await agent.ok("why", service="web")
        assert why["state"] == "running" and why["blockers"] == []

        restarted = await agent.ok("restart", service="db", cascade=True)
        assert restarted["ok"] and [r["name"] for r in restarted["services"]] == ["db", "web"]
        stopped = await agent.ok("stop", service="web")
        assert stopped["ok"] and stopped["services"][0]["state"] == "stopped"
        waited = await agent.ok("wait_ready", services=["web"], timeout_s=30)
        assert not waited["ready"] and not waited["timed_out"]  # stopped: said at once
        assert "stopped" in waited["not_ready"][0]["summary"]
        started = await agent.ok("start", service="web")
        assert started["ok"] and started["services"][0]["state"] == "running"
        assert (await agent.ok("wait_ready", services=["db", "web"]))["ready"]

    run(target, scenario)


def test_a_service_that_fails_to_start_says_why(stack: tuple[Path, str]) -> None:
    async def scenario(agent: Agent) -> None:
        outcome = await agent.ok("start", service="bad")
        assert outcome["ok"] is False
        (failed,) = outcome["not_ready"]
        assert failed["service"] == "bad" and failed["state"] == "failed"
        assert "3" in failed["reason"]
        assert "exiting with 3" in failed["last_lines"]
        assert Path(failed["log_path"]).read_text().count("exiting with 3") >= 2
        assert "bad" in outcome["summary"]
        # the whole stack still counts as ready: bad is not blocking, but it is named
        whole = await agent.ok("wait_ready", timeout_s=10)
        assert whole["ready"] and [n["service"] for n in whole["not_ready"]] == ["bad"]
        named = await agent.ok("wait_ready", services=["bad", "db"], timeout_s=10)
        assert not named["ready"] and not named["timed_out"]

    run(http(stack[1]), scenario)


def test_logs_filters_and_paging(stack: tuple[Path, str]) -> None:
    async def scenario(agent: Agent) -> None:
        for _ in range(3):
            await agent.ok("restart", service="web")
        first = await agent.ok("logs", service="web", regex=r"says \w+", limit=2)
        assert [ln["line"] for ln in first["lines"]] == ["web says hello"] * 2
        assert first["more"] and "before_seq" in first["next"] and "hint" in first
        rest = await agent.ok("logs", service="web", regex=r"says \w+", limit=2,
                              before_seq=first["next"]["before_seq"])
        assert len(rest["lines"]) == 2 and not rest["more"]
        assert rest["lines"][-1]["seq"] < first["lines"][0]["seq"]
        newest = first["last_seq"]
        await agent.ok("restart", service="web")
        since = await agent.ok("logs", service="web", since_seq=newest)
        assert since["lines"] and all(ln["seq"] > newest for ln in since["lines"])
        # forward paging: `next` is the tool's own arguments (it said after_seq, which
        # the tool refused as unknown)
        page = await agent.ok("logs", service="web", since_seq=0, limit=2)
        assert page["more"] and list(page["next"]) == ["since_seq"], page
        on = await agent.ok("logs", service="web", limit=2, **page["next"])
        assert on["lines"][0]["seq"] > page["lines"][-1]["seq"]
        errors = await agent.ok("logs", service="bad", errors_only=True)
        assert errors["lines"] and all("fail" in ln["line"].lower() or "error" in
                                       ln["line"].lower() for ln in errors["lines"])
        assert (await agent.ok("logs", service="web", errors_only=True))["lines"] == []
        recent = await agent.ok("logs", service="web", since_time="1h", text="hello")
        assert len(recent["lines"]) == 5  # started once, restarted four times
        future = await agent.ok("logs", service="web", since_time=4102444800)
        assert future["lines"] == []

    run(http(stack[1]), scenario)


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("logs", {"service": "web", "limit": "ten"}, "'limit': 'ten' is not of type 'integer'"),
    ("logs", {"service": "web", "limit": 0}, "less than the minimum of 1"),
    ("logs", {}, "'service' is a required property"),
    ("logs", {"service": "nope"}, "unknown service 'nope'"),
    ("logs", {"service": "web", "regex": "(a+)+$"}, "exponential time"),
    ("logs", {"service": "web", "regex": "["}, "not a valid regular expression"),
    ("logs", {"service": "web", "since_time": "yesterday"}, "'since_time' must be"),
    ("logs", {"service": "web", "lines": 5}, "'lines' was unexpected"),
    ("restart", {"cascade": True}, "'cascade' needs 'service'"),
    ("restart", {"service": "web", "cascade": "yes"}, "is not of type 'boolean'"),
    ("start", {"service": "wbe"}, "did you mean 'web'?"),
    ("stop", {"service": ["web"]}, "is not of type 'string'"),
    ("start", {"profile": "ecom"}, "already running with profile core"),
    ("wait_ready", {"services": ["web", "nope"]}, "unknown service 'nope'"),
    ("wait_ready", {"timeout_s": -1}, "less than the minimum of 0"),
    ("why", {"service": "../etc"}, "does not match"),
    ("events_send", {"detail": {}}, "'detail_type' is a required property"),
    ("events_replay", {"recording": "nope.jsonl"}, "nope.jsonl"),
    ("seed", {"seed": 1.5}, "is not of type 'integer'"),
]


def test_bad_arguments_get_a_clear_error(stack: tuple[Path, str]) -> None:
    """Each mistake an agent can make, in one session: an error result saying what is
    wrong (never a traceback), and the session goes on."""
    async def scenario(agent: Agent) -> list[str]:
        wrong = []
        for tool, args, said in BAD:
            text = await agent.refused(tool, **args)
            if said not in text:
                wrong.append(f"{tool}({args}): expected {said!r} in {text!r}")
        assert (await agent.ok("status"))["services"]
        return wrong

    assert run(http(stack[1]), scenario) == []


@pytest.mark.parametrize(("tool", "args", "where"), [
    ("wait_ready", {"timeout_s": float("nan")}, "timeout_s"),
    ("wait_ready", {"timeout_s": float("inf")}, "timeout_s"),
    ("events_send", {"detail_type": "X.Y", "detail": {"a": [1, float("-inf")]}},
     "detail.a.1"),
])
def test_nan_and_infinity_are_refused_wherever_they_are(tool: str, args: dict[str, Any],
                                                        where: str) -> None:
    """The SDK's parser takes a bare `NaN`, and NaN passes `minimum` and `maximum` both:
    `wait_ready {"timeout_s": NaN}` waited without bound (z/1). Checked on the parsed
    arguments, as both transports hand them over (the SDK's client would send null)."""
    from hippo_tasks.mcp.server import BY_NAME, check_args

    said = check_args(BY_NAME[tool], args)
    assert said is not None and f"argument '{where}': NaN and Infinity" in said, said
    assert "such as 1e999" in said, said  # the client may have sent a number (adv24 b/4)


def test_a_huge_bad_argument_is_not_echoed_whole() -> None:
    """The schema's sentence quotes the value: a 3 MB argument got a 6 MB answer, the
    text and the structured error each holding it (z/9)."""
    from hippo_tasks.mcp.server import BY_NAME, check_args

    said = check_args(BY_NAME["wait_ready"], {"timeout_s": "x" * 3_000_000})
    assert said is not None and "characters in all)" in said and len(said) < 2000, said[:300]


def test_an_unknown_tool_is_a_protocol_error(stack: tuple[Path, str]) -> None:
    async def scenario(agent: Agent) -> None:
        with pytest.raises(MCPError, match="unknown tool 'explode'"):
            await agent.client.call_tool("explode", {})
        assert (await agent.ok("status"))["services"]  # the session goes on

    run(http(stack[1]), scenario)


def test_events_probes_and_seed(target: Any) -> None:
    async def scenario(agent: Agent) -> None:
        sent = await agent.ok("events_send", detail_type="Orders.Created",
                              detail={"id": 7})
        assert sent["ok"] and sent["http_status"] == 200
        assert sent["answer"]["service_response"]["result"]["received"] == "Orders.Created"
        ignored = await agent.ok("events_send", detail_type="Nobody.Listens")
        assert ignored["ok"] and ignored["answer"]["status"] == "ignored"
        probes = await agent.ok("probes")
        assert probes["ok"] is False and probes["exit_code"] == 1
        assert {"status": "FAIL", "text": "db: no rows"} in probes["checks"]
        assert "db: no rows" in probes["summary"] and "args:" in probes["lines"]
        fuzz = await agent.ok("probes", mode="fuzz", examples=3)
        assert "args: --fuzz --examples 3" in fuzz["lines"]
        assert fuzz["summary"].startswith("probes --fuzz: failed (exit 1)")
        assert "mode" in await agent.refused("probes", mode="everything")
        seeded = await agent.ok("seed", seed=7)
        assert seeded["ok"] and "seeded 3 records" in seeded["lines"]
        # 3.0 is an integer to JSON Schema: the CLI it ran refused '3.0' (adv59 F6)
        whole = await agent.ok("seed", seed=3.0)
        assert whole["ok"] and "seeded 3 records" in whole["lines"], whole

    run(target, scenario)


def test_legacy_handshake_clients_are_served_too(stack: tuple[Path, str]) -> None:
    """Clients that speak the initialize handshake (protocol before 2026-07-28)."""
    async def scenario(agent: Agent) -> None:
        assert agent.client.protocol_version < "2026"
        assert (await agent.ok("status"))["services"]
        assert "exponential" in await agent.refused("logs", service="web", regex="(a*)*")

    run(http(stack[1]), scenario, mode="legacy")
    run(stdio(stack[0]), scenario, mode="legacy")


def test_start_of_an_unknown_service_with_no_stack_is_an_error_and_launches_nothing(
        project: Path) -> None:
    """`hd up --only nope` refuses it; the answer was ok false with `launched: true`, and
    not an error result, where with a stack running it is one (adv49 B/5)."""
    small_stack(project)

    async def scenario(agent: Agent) -> None:
        said = await agent.refused("start", service="nope")
        assert "nothing was started" in said and "'nope'" in said, said
        assert not (project / ".hippodrome" / "registry.json").exists() or \
            not registry(project).get("daemon"), "a daemon was started"

    run(stdio(project), scenario)


def test_start_of_one_service_with_no_stack_brings_up_that_service(project: Path) -> None:
    """It refused: "No Hippodrome daemon is running ... Call the start tool", the tool
    the agent had just called, and an agent that does as it is told loops."""
    small_stack(project)

    async def scenario(agent: Agent) -> None:
        up = await agent.ok("start", service="web")
        assert up["ok"] and up["launched"], up
        assert {r["name"] for r in up["services"]} == {"web", "db"}  # --only, with its dep
        # The run is partial, and says so: `start {}` said "start the stack: ready" with
        # the others absent and nothing naming them (adv24 b/10).
        assert up["left_out"] == ["bad", "sink"], up
        whole = await agent.ok("start")
        assert whole["left_out"] == ["bad", "sink"] and "leaves out bad, sink: `hd down`" \
            in whole["summary"], whole

    try:
        run(stdio(project), scenario)
    finally:
        hd(project, "down", timeout=60)


def test_two_starts_at_once_with_no_stack_both_answer_ok(project: Path) -> None:
    """Agents issue tool calls in parallel: of two `start` calls with no stack running,
    the one whose `hd up --detach` lost the race answered `ok: false`, "hd up --detach
    failed ... already running", with no rows (adv24 b/2). It starts through the daemon
    the other made, as any later start does."""
    small_stack(project)

    async def scenario(agent: Agent) -> None:
        calls = await asyncio.gather(agent.call("start"), agent.call("start", service="web"))
        both = [call.data for call in calls]
        for answer in both:
            assert answer["ok"] and answer["services"], both
            assert "up --detach failed" not in answer["summary"], both
        assert sum(bool(a.get("launched")) for a in both) == 1, both

    try:
        run(stdio(project), scenario)
    finally:
        hd(project, "down", timeout=60)


def test_wait_ready_names_a_service_the_run_left_out_as_such(project: Path) -> None:
    """After `start {"service": "web"}` brought up web and db only, `wait_ready` on
    `sink` said "unknown service" (the other tools said it was left out of this run)."""
    small_stack(project)

    async def scenario(agent: Agent) -> None:
        await agent.ok("start", service="web")
        said = await agent.refused("wait_ready", services=["sink"], timeout_s=5)
        assert "'sink' is in the stack file but not part of this run (left out by " \
               "--only" in said, said

    try:
        run(stdio(project), scenario)
    finally:
        hd(project, "down", timeout=60)


def test_a_command_that_leaves_a_child_behind_is_done_when_it_exits(project: Path) -> None:
    """probes exited 0 at once but left a background child holding its output: the tool
    waited for the output to close and said exit 124, "did not finish", ok false."""
    small_stack(project)
    text = (project / "hippodrome.toml").read_text()
    start = text.index("[commands.probes]")
    end = text.index("[commands.", start + 1) if "[commands." in text[start + 1:] else len(text)
    (project / "hippodrome.toml").write_text(
        text[:start] + '[commands.probes]\ncommand = ["/bin/sh", "-c", '
        '"sleep 12 & echo quick; exit 0"]\n\n' + text[end:])  # ends by itself

    async def scenario(agent: Agent) -> None:
        assert (await agent.ok("start"))["launched"]
        ran = await agent.ok("probes", timeout_s=10)
        assert ran["ok"] and ran["exit_code"] == 0, ran

    try:
        run(stdio(project), scenario)
    finally:
        hd(project, "down", timeout=60)


def test_a_daemon_that_ended_mid_call_is_said_with_its_pid() -> None:
    """It read "No Hippodrome daemon is running for . Call the start tool"."""
    from hippo_tasks.errors.daemon import DaemonEndedError
    from hippo_tasks.mcp.tools import not_running_hint

    said = not_running_hint(DaemonEndedError(4242, "connection reset"))
    assert said.startswith("The Hippodrome daemon (pid 4242) ended while this command "
                           "waited for it") and "running for ." not in said
    assert "Call the start tool" in said


def test_hd_mcp_whose_output_is_gone_exits_as_every_command_does(project: Path) -> None:
    """A client that crashed (its end of the pipe closed) or stdout on a full disk: a
    72-line exception-group traceback, exit 1 (adv24 c/18). 141 quietly, or 120 with
    the sentence, as every other command."""
    small_stack(project)
    params = stdio(project)
    hello = (b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":'
             b'"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}\n')
    reader, writer = os.pipe()
    os.close(reader)  # the client is gone
    for out, code, said in ((writer, 141, ""), (None, 120, "hippodrome: the output could "
                                                 "not be written: [Errno 28] No space")):
        with open("/dev/full", "wb") as full:
            proc = subprocess.Popen([params.command, *params.args], cwd=project,
                                    env=params.env, stdin=subprocess.PIPE,
                                    stdout=out if out is not None else full,
                                    stderr=subprocess.PIPE)
            _, err = proc.communicate(hello, timeout=60)
        text = err.decode()
        assert proc.returncode == code and "Traceback" not in text, (code, text)
        assert said in text, text
    os.close(writer)


def test_logs_with_the_stack_down_names_the_last_runs_file(project: Path) -> None:
    """With no daemon, `logs` said only "Call the start tool", and a start moves
    `latest` to a new run, away from the lines that said why the stack went down
    (adv24 b/6). The last run's file is named."""
    small_stack(project)
    hd(project, "up", "--detach", "--only", "web", check=True, timeout=60)
    hd(project, "down", check=True, timeout=60)

    async def scenario(agent: Agent) -> None:
        said = await agent.refused("logs", service="web")
        log = project / ".logs" / "latest" / "web.log"
        assert f"The last run's log of web is {log} (read that file" in said, said

    run(stdio(project), scenario)


def test_restarting_an_external_service_says_why_it_is_no_success(project: Path) -> None:
    """MCP `restart {"service": "ext"}` answered `ok: false`, "restart ext: not ready",
    with nothing saying it is external and was not touched: an agent waits or retries
    (adv25 e/6). The API's and the command line's sentence is in the summary."""
    from stackutil import free_ports, stack_header, toy_service, write_stack

    dash, web, ext = free_ports(3)
    write_stack(project, stack_header(dash) + toy_service("web", web)
                + f'[services.ext]\nport = {ext}\nexternal = true\n')
    hd(project, "up", "--detach", check=True, timeout=60)

    async def scenario(agent: Agent) -> None:
        answer = (await agent.call("restart", service="ext")).data
        assert answer["ok"] is False and "ext is external: Hippodrome does not run it, so " \
            "it was not restarted" in answer["summary"], answer

    try:
        run(stdio(project), scenario)
    finally:
        hd(project, "down", timeout=60)



def test_logs_arguments_are_refused_by_their_own_names() -> None:
    """A since_seq past the daemon's bound came back naming the API's `after`, and an
    empty since_time was taken as no filter where an empty text is refused (adv25 e/5)."""
    from hippo_tasks.mcp.server import BY_NAME, check_args

    said = check_args(BY_NAME["logs"], {"service": "x", "since_seq": 10**20})
    assert said is not None and "argument 'since_seq'" in said and "after" not in said, said
    said = check_args(BY_NAME["logs"], {"service": "x", "since_time": ""})
    assert said is not None and "argument 'since_time'" in said, said
    assert check_args(BY_NAME["logs"], {"service": "x", "since_time": "5m"}) is None


def test_logs_in_any_script_stay_within_the_bound_as_text(project: Path) -> None:
    """Lines of é or emoji: each line was cut as promised, but the tool's text was JSON
    with every é as `\\u00e9` (6 characters) and every emoji as two 6-character escapes,
    so one answer was 363,000 and 722,000 characters against the 64,000 promised
    (adv28 m/4). A line of bytes that are not UTF-8 still comes back."""
    (project / "fr.py").write_text(
        "import sys, time\n"
        "for _ in range(60):\n    print('\\u00e9' * 3000)\n"
        "sys.stdout.flush()\nsys.stdout.buffer.write(b'bad \\xff end\\n')\n"
        "sys.stdout.flush()\ntime.sleep(3600)\n")
    extra = '\n[services.fr]\ncommand = ["${python}", "fr.py"]\nreadiness = { log = "bad" }\n'
    dashboard = small_stack(project, extra=extra)
    hd(project, "up", "--detach", check=True)
    try:
        async def scenario(agent: Agent) -> None:
            answer = await agent.call("logs", service="fr", limit=500)
            assert not answer.error, answer.text
            lines = [ln["line"] for ln in answer.data["lines"]]
            assert sum(map(len, lines)) <= 64_000 and any("\u00e9" * 100 in x for x in lines)
            assert len(answer.text) <= 64_000 + 16_000, len(answer.text)
            assert "\\u00e9" not in answer.text and "bad" in answer.text

        for target in (http(dashboard), stdio(project)):
            run(target, scenario)
    finally:
        hd(project, "down")


def test_null_arguments_are_refused_not_taken_for_none(stack: tuple[Path, str]) -> None:
    """`{"name": "stop", "arguments": null}` (null where the schema wants an object) was
    read as no arguments: it stopped every service and answered ok (adv34 w/2). It is an
    error result now, and nothing is stopped; `arguments` left out is still none."""
    import json
    import urllib.request

    root, dashboard = stack
    for tool in ("stop", "restart"):
        said = tool_call(dashboard, {"name": tool, "arguments": None})["result"]
        assert said["isError"] is True, said
        assert "'arguments' must be an object ({} for none), not null" in \
            said["content"][0]["text"], said
    rows = json.loads(urllib.request.urlopen(f"{dashboard}/api/status", timeout=30).read())
    assert all(r["state"] == "running" for r in rows["services"] if r["name"] != "bad"), \
        rows["services"]  # bad fails by design
    assert tool_call(dashboard, {"name": "status"})["result"].get("isError") is not True


def test_arguments_of_the_wrong_shape_get_a_sentence(stack: tuple[Path, str]) -> None:
    """`"arguments": []` or `"web"`, a `name` that is a number or missing: the SDK
    answered each -32602 "Invalid request parameters" and nothing else, not which
    parameter or what it wants (adv34 w/2's notes). Each now says, on `/mcp` and on `hd
    mcp`'s stdio (where it was still the bare -32602); nothing is stopped."""
    import json
    import urllib.request

    root, dashboard = stack
    cases: tuple[tuple[Any, str], ...] = (
            (None, "a tool call's 'params' must be an object naming the tool"),
            ({"name": "stop", "arguments": []}, "'arguments' must be an object ({} for "
                                                "none), not a list"),
            ({"name": "stop", "arguments": "web"}, "'arguments' must be an object ({} for "
                                                   "none), not \"web\""),
            ({"name": "restart", "arguments": 5}, "not 5"),
            ({"name": 5}, "'name' must be a string"),
            ({"arguments": {}}, "'name' must be a string, the tool's name (such as "
                                "\"status\"), not missing"))
    for params, said in cases:
        reply = tool_call(dashboard, params, 7)
        assert reply["id"] == 7 and reply["error"]["code"] == -32602, reply
        assert said in reply["error"]["message"], reply
    agent = stdio(root)
    calls = [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"}] + [
        {"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call", "params": params}
        for i, (params, _) in enumerate(cases)]
    served = subprocess.run([agent.command, *agent.args], cwd=agent.cwd, env=agent.env,
                            input="".join(json.dumps(c) + "\n" for c in calls),
                            capture_output=True, text=True, timeout=60)
    replies = {r["id"]: r for r in map(json.loads, served.stdout.splitlines())}
    for i, (_, said) in enumerate(cases):
        reply = replies.get(10 + i, {})
        assert reply.get("error", {}).get("code") == -32602, (reply, served.stderr)
        assert said in reply["error"]["message"], reply
    rows = json.loads(urllib.request.urlopen(f"{dashboard}/api/status", timeout=30).read())
    assert all(r["state"] == "running" for r in rows["services"] if r["name"] != "bad"), \
        rows["services"]


def test_wait_ready_during_a_shutdown_says_the_shutdown_once(project: Path) -> None:
    """`wait_ready` under way when `hd down` begins: its summary said "the stack is
    shutting down ...: nothing starts again until `hd up` once it has stopped" once per
    service, 8 times for 8 (adv46 H/12)."""
    import threading

    from hippo_tasks.mcp.backend import HttpStack
    from hippo_tasks.mcp.tools import wait_ready

    dash, *ports = free_ports(4)
    write_stack(project, stack_header(dash) + "".join(
        toy_service(f"s{i}", port, "--ignore-term", stop_timeout=2) for i, port in
        enumerate(ports)) + '[services.never]\nshell = "exec sleep 600"\n'
        'readiness = { log = "NEVER" }\nstart_timeout = 120\nblocking = false\n')
    up = threading.Thread(target=hd, args=(project, "up", "--detach"), kwargs={"timeout": 180})
    up.start()
    try:
        wait_for(lambda: (project / ".hippodrome" / "registry.json").exists() and all(
            registry(project)["services"].get(f"s{i}", {}).get("ready") for i in range(3)),
            60, what="s0-s2 ready")
        down = threading.Thread(target=hd, args=(project, "down"), kwargs={"timeout": 120})
        threading.Timer(1.0, down.start).start()
        said = wait_ready(HttpStack(project), {"timeout_s": 60})
        assert not said["ready"], said
        assert said["summary"].count("the stack is shutting down") == 1, said["summary"]
    finally:
        hd(project, "down", timeout=120)
        up.join(180)


def test_a_post_with_no_accept_header_is_answered(stack: tuple[Path, str]) -> None:
    """No Accept accepts anything (RFC 9110), and /mcp answers JSON: the SDK's 406
    "Client must accept application/json" met urllib and `curl -H 'Accept:'` (adv46
    H/6). An Accept that leaves JSON out is still the 406."""
    root, dashboard = stack
    status, said = post(dashboard, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
                        accept=None)
    assert status == 200 and said["id"] == 3 and said["result"]["tools"], said
    status, said = post(dashboard, {"jsonrpc": "2.0", "id": 4, "method": "tools/list"},
                        accept="text/event-stream")
    assert status == 406 and "must accept application/json" in said["error"]["message"], said


def test_an_envelope_of_the_wrong_shape_is_an_invalid_request(stack: tuple[Path, str]) -> None:
    """A missing or wrong `jsonrpc`, or `params` that are not an object: -32602 with a
    pydantic dump of every model the SDK tried, and the id dropped (adv35 y/7). Each is
    JSON-RPC's Invalid Request now, with a sentence and the request's id."""
    import json

    root, dashboard = stack
    for message, said in (
            ({"id": 2, "method": "tools/list"}, "'jsonrpc' must be \"2.0\", not missing"),
            ({"jsonrpc": "1.0", "id": 2, "method": "tools/list"},
             "'jsonrpc' must be \"2.0\", not \"1.0\""),
            ({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": [1]},
             "'params' must be an object, not a list"),
            ({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": "x"},
             "'params' must be an object, not \"x\"")):
        status, reply = post(dashboard, message)
        assert status == 400, reply
        assert reply["id"] == 2 and reply["error"]["code"] == -32600, reply
        assert reply["error"]["message"] == f"Invalid Request: {said}", reply
        assert "pydantic" not in json.dumps(reply)


def test_wait_ready_beside_a_whole_stack_restart_waits_for_it(project: Path) -> None:
    """`restart {}` and `wait_ready` called together, as agents call tools: the restart
    stops every service first and marks none busy, and wait_ready answered at once that
    the stack "will not become ready by itself", advising `hd start` for each (adv56 3).
    It waits for the restart, and answers ready."""
    import threading

    dash, db, web, slow = free_ports(4)
    write_stack(project, stack_header(dash) + toy_service("db", db, "--delay", "0.5")
                + toy_service("web", web, "--delay", "0.5", depends_on=["db"])
                # slow to stop: the others sit stopped meanwhile, no row busy
                + toy_service("slow", slow, "--ignore-term", stop_timeout=1.5))
    hd(project, "up", "--detach", check=True)
    url = f"http://127.0.0.1:{dash}"

    def restart(into: list[dict[str, Any]]) -> None:
        into.append(tool_call(url, {"name": "restart", "arguments": {}}))

    try:
        for delay in (0.3, 0.8):
            restarted: list[dict[str, Any]] = []
            thread = threading.Thread(target=restart, args=(restarted,))
            thread.start()
            time.sleep(delay)
            waited = tool_call(url, {"name": "wait_ready", "arguments": {"timeout_s": 60}}, 2)
            thread.join(60)
            result = waited["result"]["structuredContent"]
            assert result["ready"] and "will not become ready" not in result["summary"], result
            assert restarted and restarted[0]["result"]["structuredContent"]["ok"], restarted
    finally:
        hd(project, "down")


@pytest.mark.timeout(60)  # before: 20,000 objects were ~450 s of comparisons (a hang)
def test_a_long_list_of_objects_is_refused_without_comparing_each_with_each() -> None:
    """`wait_ready {"services": [{"a": 0}, ... 4,000 of them]}` (50 KB) took 18 s of a
    core, growing with the square of the count, before the answer said they were no
    names: jsonschema's `uniqueItems` compares unhashable items pairwise (adv56 2)."""
    from hippo_tasks.mcp.server import check_args
    from hippo_tasks.mcp.tools import BY_NAME

    said = check_args(BY_NAME["wait_ready"], {"services": [{"a": i} for i in range(20_000)]})
    assert said is not None and "bad arguments for wait_ready: argument 'services" in said
    # within the bound, duplicates are still refused
    said = check_args(BY_NAME["wait_ready"], {"services": ["web", "web"]})
    assert said is not None and "non-unique" in said, said
    # a long value is cut, its reason kept (adv57 F3: "... (1248 characters in all)." and
    # no word of why); past maxItems, refused by its length
    said = check_args(BY_NAME["wait_ready"], {"services": ["db"] * 200})
    assert said is not None and "characters in all) has non-unique elements" in said, said
    said = check_args(BY_NAME["wait_ready"], {"services": list(range(400_000))})
    assert said is not None and "a list of 400000 items is too long (at most 200)" in said, \
        said[:300]


def test_wait_ready_right_after_a_save_waits_for_the_reload(project: Path) -> None:
    """A save, then `wait_ready` within the watcher's quiet period: it answered ready at
    once, with the pid of the process the reload ended a moment later (adv57 F1; the
    agent's loop is edit, wait_ready, test). The row says `change_pending` until the
    restart is asked, and wait_ready waits through it."""
    dash, port = free_ports(2)
    (project / "w").mkdir()
    write_stack(project, stack_header(dash) + toy_service(
        "w", port, "--delay", "0.8", watch=["w/*.txt"]))
    hd(project, "up", "--detach", check=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        time.sleep(1.0)  # the watch is set up
        for n in range(2):
            before = first_row(dash)["pid"]
            (project / "w" / "a.txt").write_text(f"edit {n}\n")
            wait_for(lambda: first_row(dash).get("change_pending"), 10, every=0.01,
                     what="the change seen, its reload to come")
            answer = tool_call(url, {"name": "wait_ready", "arguments": {
                "services": ["w"], "timeout_s": 30}})["result"]["structuredContent"]
            assert answer["ready"], answer
            assert answer["services"][0]["pid"] != before, answer  # not the old process
    finally:
        hd(project, "down")
