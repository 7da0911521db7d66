"""`hd mcp` ends when its client leaves, even with a tool call in flight: it waited out
a `wait_ready` (up to its timeout, an hour at most) after the client had closed stdin,
a server process per abandoned agent session. Here the call is a `restart` whose new
process never answers its health check. A call sent just before stdin closed is still
carried out, and answered when it ends within a moment (adv53 F1)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from mcputil import first_row, stdio
from stackutil import free_ports, hd, stack_header, toy_service, wait_for, write_stack


def _line(message: dict[str, object]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def _state(dash: int) -> str:
    return str(first_row(dash)["state"])


def _serving(project: Path) -> subprocess.Popen[bytes]:
    """`hd mcp` started as an agent starts it, past its `initialize`: serving, stdin open."""
    params = stdio(project)
    proc = subprocess.Popen([params.command, *params.args], cwd=params.cwd, env=params.env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(_line({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}}))
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 1
    return proc


def _hanging_web_up(project: Path) -> int:
    """A stack whose `web`, once up, never becomes ready again when started: its
    dashboard port."""
    dash, port = free_ports(2)
    hang = project / "hang"
    write_stack(project, stack_header(dash) + toy_service(
        "web", port, "--hang-if-exists", str(hang), readiness={"http": "/"},
        start_timeout=300))
    hd(project, "up", "--detach", check=True)
    hang.touch()  # from now on a start of web never becomes ready
    return dash


def test_closing_stdin_mid_call_ends_hd_mcp(project: Path) -> None:
    dash = _hanging_web_up(project)
    proc = _serving(project)
    try:
        assert proc.stdin is not None
        proc.stdin.write(_line({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        proc.stdin.write(_line({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "restart", "arguments": {"service": "web"}}}))
        proc.stdin.flush()
        wait_for(lambda: _state(dash) == "starting", 30, what="the restart under way")
        assert proc.poll() is None
        proc.stdin.close()
        wait_for(lambda: proc.poll() is not None, 30, every=0.1,
                 what="hd mcp to exit after its client closed stdin")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        hd(project, "down")


def _pid(dash: int) -> int:
    return int(first_row(dash)["pid"])


def _one_shot(project: Path, *messages: dict[str, object]) -> dict[object, dict[str, object]]:
    """`printf ... | hd mcp`: every message written and stdin closed at once; the answers
    by id."""
    params = stdio(project)
    out = subprocess.run([params.command, *params.args], cwd=params.cwd, env=params.env,
                         input=b"".join(_line(m) for m in messages), capture_output=True,
                         timeout=60, check=False)
    answers = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return {a.get("id"): a for a in answers}


HELLO: list[dict[str, object]] = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"}]
RESTART_WEB = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
    "name": "restart", "arguments": {"service": "web"}}}


def test_a_call_sent_as_stdin_closes_is_carried_out_and_answered(project: Path) -> None:
    """`printf '<initialize><restart>' | hd mcp`: the restart was answered `Connection
    closed` every time and carried out in 3 runs of 13: the SDK dropped it before its
    thread had asked the daemon (adv53 F1)."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port, readiness={"http": "/"}))
    hd(project, "up", "--detach", check=True)
    try:
        for _ in range(4):
            before = _pid(dash)
            answers = _one_shot(project, *HELLO, RESTART_WEB)
            assert "result" in answers[2], answers
            assert json.loads(answers[2]["result"]["content"][0]["text"])["ok"], answers  # type: ignore[index]
            assert _pid(dash) != before
    finally:
        hd(project, "down")


def test_a_slow_call_as_stdin_closes_is_carried_out_not_waited_for(project: Path) -> None:
    """A restart whose new process never becomes ready: answered `Connection closed`
    after the grace, `hd mcp` gone, and the restart under way in the daemon."""
    dash = _hanging_web_up(project)
    try:
        before = _pid(dash)
        answers = _one_shot(project, *HELLO, RESTART_WEB)
        assert answers[2]["error"]["message"] == "Connection closed", answers  # type: ignore[index]
        assert _state(dash) == "starting" and _pid(dash) != before
    finally:
        hd(project, "down")


def test_ctrl_c_ends_hd_mcp_with_130(project: Path) -> None:
    """Ctrl+C in the terminal running `hd mcp`: its tool calls were answered
    `Connection closed`, and the process waited for stdin to close (the SDK's reader
    thread), then exited 0 (adv34 v/5). It ends at once, exit 130, as any command."""
    import signal

    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    proc = _serving(project)
    try:
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: proc.poll() is not None, 10, every=0.05,
                 what="hd mcp to end on SIGINT with its stdin open")
        assert proc.returncode == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _answers_of(out: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_every_call_piped_in_is_answered_once_even_past_the_grace(project: Path) -> None:
    """200 `status` calls piped in, stdin closed: 57-86 of them went unanswered, neither
    their result nor `Connection closed` (adv56 1): ids were struck off as their answers
    were handed to the stdout writer, not as it took them, so the server was told of the
    end while answers still waited for it, and cancelled them. Each id gets one answer
    now; those not done within the grace, `Connection closed`."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True)
    try:
        calls = [{"jsonrpc": "2.0", "id": i, "method": "tools/call",
                  "params": {"name": "status", "arguments": {}}} for i in range(2, 202)]
        params = stdio(project)
        for _ in range(2):
            out = subprocess.run([params.command, *params.args], cwd=params.cwd,
                                 env=params.env, input=b"".join(map(_line, [*HELLO, *calls])),
                                 capture_output=True, timeout=60, check=False)
            ids = [a.get("id") for a in _answers_of(out.stdout)]
            assert sorted(ids, key=str) == sorted([1, *range(2, 202)], key=str), \
                (len(ids), sorted(set(range(2, 202)) - set(ids))[:10])  # each id, once
    finally:
        hd(project, "down")


def test_a_request_the_parser_refuses_is_answered_parse_error(project: Path) -> None:
    """Nested 250 deep, a lone surrogate, an integer of 4,400 digits: valid JSON-RPC
    requests the SDK's parser refuses were dropped unanswered on stdio, a client
    waiting for ever (adv56 4). Each is answered -32700 with the parser's words."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + toy_service("web", None))
    deep = '{"a":' * 250 + "1" + "}" * 250
    lines = [
        '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"status",'
        f'"arguments":{{"x":{deep}}}}}}}',
        '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"status",'
        '"arguments":{"x":"\\ud800"}}}',
        '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"status",'
        f'"arguments":{{"x":{"9" * 4400}}}}}}}',
        'not json at all']
    params = stdio(project)
    out = subprocess.run([params.command, *params.args], cwd=params.cwd, env=params.env,
                         input=b"".join(map(_line, HELLO)) + "\n".join(lines).encode() + b"\n",
                         capture_output=True, timeout=60, check=False)
    answers = {a.get("id"): a for a in _answers_of(out.stdout)}
    assert set(answers) == {1, 2, 3, 4}, answers
    for request_id in (2, 3, 4):
        error = answers[request_id]["error"]
        assert error["code"] == -32700 and error["message"].startswith("Parse error: "), error  # type: ignore[index]


def test_a_call_before_the_handshake_and_a_huge_method_name_are_said_plainly(
        project: Path) -> None:
    """A tool call before `initialize` got -32602 "Invalid request parameters" with
    nothing saying the handshake comes first; a method name of 3 MB came back whole in
    `Method not found`, over stdio and HTTP (adv56 7)."""
    from mcputil import post

    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + toy_service("web", None))
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "status", "arguments": {}}}
    early = _one_shot(project, call)[1]["error"]
    assert early["code"] == -32600 and "before `initialize`" in early["message"], early  # type: ignore[index]
    huge = {"jsonrpc": "2.0", "id": 2, "method": "x" * 3_000_000}
    tool = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",  # the tool's name, too
            "params": {"name": "x" * 3_000_000, "arguments": {}}}  # (adv57 F2)
    answers = _one_shot(project, *HELLO, huge, tool)
    said = answers[2]["error"]
    assert said["code"] == -32601 and len(json.dumps(said)) < 1000, str(said)[:300]  # type: ignore[index]
    said = answers[3]["error"]
    assert "unknown tool" in said["message"] and len(json.dumps(said)) < 1000, str(said)[:300]  # type: ignore[index]
    hd(project, "up", "--detach", check=True)
    try:
        status, answer = post(f"http://127.0.0.1:{dash}", huge)
        assert answer["error"]["code"] == -32601 and len(json.dumps(answer)) < 1000, \
            (status, str(answer)[:300])
    finally:
        hd(project, "down")
