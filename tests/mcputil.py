"""Helpers for the MCP tests: the official SDK as the client, over stdio (`hd mcp` in a
subprocess) and over HTTP (the daemon's /mcp), and a small real stack to drive.

Each test runs its scenario as one coroutine (`run`), holding one client session, the
way an agent client does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from stackutil import PY, REPO, TOYS, free_ports, script_service, stack_header, toy_service

SINK = str(TOYS / "event_sink.py")


def stdio(root: Path) -> StdioServerParameters:
    """`hd mcp --project-root ROOT`: the console script next to this Python when there is
    one (an installed checkout), else the same tasks through `python -m invoke`."""
    hd = Path(PY).parent / "hd"
    command, args = (str(hd), []) if hd.exists() else (PY, ["-m", "invoke", "-r", str(REPO)])
    return StdioServerParameters(command=command, args=[*args, "mcp", "--project-root",
                                                         str(root)],
                                 env={**os.environ, "NO_COLOR": "1"}, cwd=str(root))


def http(dashboard: str) -> str:
    return dashboard + "/mcp"


def post(dashboard: str, message: Any,
         accept: str | None = "application/json, text/event-stream"
         ) -> tuple[int, dict[str, Any]]:
    """One JSON-RPC message POSTed to the daemon's /mcp as it is, past the SDK's client
    (which would refuse to send a wrong shape): (HTTP status, the JSON answer).
    `accept`: the Accept header, None for none (urllib sends none of its own)."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if accept is not None:
        headers["Accept"] = accept
    req = urllib.request.Request(http(dashboard), data=json.dumps(message).encode(),
                                 method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def first_row(dash: int) -> dict[str, Any]:
    """The first service's row of the daemon's `/api/status` (the stacks here have one)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{dash}/api/status", timeout=10) as resp:
        row: dict[str, Any] = json.load(resp)["services"][0]
        return row


def tool_call(dashboard: str, params: Any, ident: int = 1) -> dict[str, Any]:
    """The JSON-RPC answer to a `tools/call` with these params, sent as they are."""
    _, reply = post(dashboard, {"jsonrpc": "2.0", "id": ident, "method": "tools/call",
                                "params": params})
    return reply


@dataclass
class Answer:
    """A tool's result as an agent sees it: error or not, the structured value, the text."""

    error: bool
    data: dict[str, Any]
    text: str


class Agent:
    """One client session, and tool calls that return `Answer`s."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, tool: str, **args: Any) -> Answer:
        result = await self.client.call_tool(tool, args)
        text = "".join(getattr(c, "text", "") for c in result.content)
        data = result.structured_content
        if data is None:
            data = json.loads(text) if not result.is_error else {"error": text}
        return Answer(result.is_error, data, text)

    async def ok(self, tool: str, **args: Any) -> dict[str, Any]:
        answer = await self.call(tool, **args)
        assert not answer.error, f"{tool}({args}) failed: {answer.text}"
        return answer.data

    async def refused(self, tool: str, **args: Any) -> str:
        answer = await self.call(tool, **args)
        assert answer.error, f"{tool}({args}) should have failed, got {answer.data}"
        assert "Traceback" not in answer.text
        return answer.text


def run(target: str | StdioServerParameters, scenario: Callable[[Agent], Awaitable[Any]],
        mode: str = "auto") -> Any:
    async def main() -> Any:
        async with Client(target, mode=mode, read_timeout_seconds=120) as client:
            return await scenario(Agent(client))

    try:
        return anyio.run(main)
    except BaseExceptionGroup as group:  # the SDK's task groups wrap a failed assert
        raise _first(group) from None


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def small_stack(root: Path, *, extra: str = "") -> str:
    """db <- web, a failing non-blocking `bad`, an event sink behind an `Orders.` route,
    and seed/probes commands; returns the dashboard URL (nothing started yet)."""
    dash, db, web, sink, bad = free_ports(5)
    text = stack_header(dash) + toy_service("db", db) + toy_service(
        "web", web, "--say", "web says hello", depends_on=["db"])
    text += toy_service("bad", bad, "--exit", "3",
                        blocking=False, auto_restart=False)
    text += script_service("sink", SINK, sink, readiness={"tcp": True})
    text += """
[[routes]]
detail_type_prefix = "Orders."
service = "sink"
path = "/events"

[commands.probes]
command = ["${python}", "-c", '''
import sys
print('[OK] web answers')
print('args:', *sys.argv[1:])
print('[FAIL] db: no rows')
raise SystemExit(1)''']

[commands.seed]
command = ["${python}", "-c", "print('seeded 3 records')"]
""" + extra
    (root / "hippodrome.toml").write_text(text)
    return f"http://127.0.0.1:{dash}"
