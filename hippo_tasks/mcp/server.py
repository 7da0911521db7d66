"""The MCP SDK's side: a lowlevel `Server` built from the tool table, and `hd mcp`.

The lowlevel server rather than the decorator API: the tools are already data (names,
hand-written schemas, hints) and plain functions, and the same table must serve stdio
and the daemon's HTTP endpoint. Tool functions block (they wait on the daemon), so
each runs in a worker thread; the server's own loop keeps answering meanwhile.

Arguments are checked against the tool's input schema before anything runs, and every
failure comes back as an error result whose text says what to do: never a traceback,
never a protocol error for a mistake the agent can correct (an unknown tool excepted,
which the protocol defines as one).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import mcp_types as types
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from mcp.server import Server
from mcp.shared.exceptions import MCPError

from hippo_tasks import __version__
from hippo_tasks.daemon.client import HippoErrorFromDaemon
from hippo_tasks.errors import HippoError
from hippo_tasks.errors.daemon import DaemonNotRunningError
from hippo_tasks.mcp.backend import HttpStack, Stack
from hippo_tasks.mcp.call_shape import bad_params, unknown_long_method
from hippo_tasks.mcp.tools import BY_NAME, CALL, TOOLS, Tool, not_running_hint

INSTRUCTIONS = (
    "Hippodrome runs a local multi-service stack. status shows every service; start, "
    "stop and restart wait for the outcome and say why a service is not ready (reason, "
    "last log lines, log path); why explains what a service waits on down its "
    "dependency chain; logs reads filtered output with paging. Keep the stack running "
    "between edits: restart a service (cascade for its dependants) instead of stopping "
    "everything.")


@cache
def _validator(name: str, unique: bool = True) -> Draft202012Validator:
    """`unique=False`: the schema without its `uniqueItems`, checked first. jsonschema
    compares items that are not hashable each with each: 4,000 objects for `wait_ready`'s
    `services` (50 KB) took 18 s of a core before the answer said they were no strings,
    and went on after the client had gone (adv56 2). Once the items are known to be what
    the schema wants (200 names at most), the uniqueness check is cheap."""
    schema = BY_NAME[name].input_schema
    return Draft202012Validator(schema if unique else _without_unique(schema))


def _without_unique(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_unique(v) for k, v in schema.items() if k != "uniqueItems"}
    if isinstance(schema, list):
        return [_without_unique(v) for v in schema]
    return schema


def usage(tool: Tool) -> str:
    """The arguments a tool takes, in one line, for an error message."""
    props: dict[str, Any] = tool.input_schema.get("properties", {})
    required = set(tool.input_schema.get("required", ()))
    if not props:
        return f"{tool.name} takes no arguments"
    parts = []
    for key, spec in props.items():
        kind = spec.get("type", "any")
        kind = "|".join(kind) if isinstance(kind, list) else kind
        parts.append(f"{key} ({kind}{', required' if key in required else ''})")
    return f"{tool.name} takes " + ", ".join(parts)


def _not_finite(args: dict[str, Any]) -> str | None:
    """The path of a NaN or infinity among the arguments. The SDK's parser takes the
    bare `NaN` that JSON has not, and NaN passes `minimum` and `maximum` alike (every
    comparison with it is false): `wait_ready {"timeout_s": NaN}` waited without bound,
    past the 600 s cap (z/1). A loop, not recursion: arguments can nest deep."""
    todo: list[tuple[str, Any]] = [("", args)]
    while todo:
        where, value = todo.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return where
        items = value.items() if isinstance(value, dict) else \
            enumerate(value) if isinstance(value, list) else ()
        todo += [(f"{where}.{key}" if where else str(key), item) for key, item in items]
    return None


def check_args(tool: Tool, args: dict[str, Any]) -> str | None:
    """None when the arguments fit the tool's schema, else what is wrong with them."""
    odd = _not_finite(args)
    if odd is not None:
        return (f"bad arguments for {tool.name}: argument '{odd}': NaN and Infinity "
                "(which a number too large for a double, such as 1e999, becomes) are not "
                f"numbers JSON has; send a finite number. {usage(tool)}")
    error: ValidationError | None = _too_many(tool, args) or best_match(
        _validator(tool.name, unique=False).iter_errors(args)) or best_match(
        _validator(tool.name).iter_errors(args))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path)[:200]
    # It quotes the value (a 3 MB argument came back twice, z/9): the value is cut, the
    # reason after it kept (cut with it, "has non-unique elements" was lost: adv57 F3).
    message = error.message
    quoted = repr(error.instance)
    if message.startswith(quoted) and len(quoted) > SHOWN_CHARS:
        message = _cut(quoted) + message[len(quoted):]
    elif len(message) > SHOWN_CHARS:
        message = _cut(message)
    what = f"argument '{where}': {message}" if where else message
    return f"bad arguments for {tool.name}: {what}. {usage(tool)}"


SHOWN_CHARS = 500
"""Of a schema error's sentence, which quotes the value it refused."""


def _cut(text: str) -> str:
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text)} characters in all)"


def _too_many(tool: Tool, args: dict[str, Any]) -> ValidationError | None:
    """A list argument past its `maxItems`, found by its length alone: jsonschema checks
    every item first (400,000 integers: 9 s of a daemon core before the refusal, adv57
    F3)."""
    for key, spec in tool.input_schema.get("properties", {}).items():
        value, most = args.get(key), spec.get("maxItems")
        if isinstance(value, list) and isinstance(most, int) and len(value) > most:
            return ValidationError(f"a list of {len(value)} items is too long (at most "
                                   f"{most})", path=[key], instance=None)
    return None


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)],
                                structured_content={"error": text}, is_error=True)


def call(stack: Stack, name: str, args: dict[str, Any]) -> types.CallToolResult:
    """Run one tool to its result, every failure an error result (blocking: run it in a
    worker thread)."""
    tool = BY_NAME[name]
    problem = check_args(tool, args)
    if problem is not None:
        return _error(problem)
    try:
        result = tool.run(stack, args)
    except DaemonNotRunningError as exc:
        return _error(not_running_hint(exc))
    except HippoErrorFromDaemon as exc:  # the daemon's own words, as /mcp would say them
        return _error(exc.text if exc.status < 500 else exc.message())
    except HippoError as exc:
        return _error(exc.message())
    except Exception as exc:  # a bug of ours: said plainly, and the server goes on
        return _error(f"internal error in {name}: {exc.__class__.__name__}: {exc}")
    return types.CallToolResult(content=[types.TextContent(text=as_text(result))],
                                structured_content=result)


def as_text(result: dict[str, Any]) -> str:
    """The result as the text an agent reads: JSON with every character as itself. With
    escapes, a line of é was 6 characters a letter and an emoji 12, so a `logs` answer
    cut to 64,000 characters of lines was 363,000 (adv28 m/4). A line holding bytes
    that are not UTF-8 (a lone surrogate after decoding) keeps its escapes: no encoder
    would write it otherwise."""
    text = json.dumps(result, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(result)
    return text


def listed() -> list[types.Tool]:
    return [types.Tool(
        name=t.name, description=t.description, input_schema=t.input_schema,
        output_schema=t.output_schema,
        annotations=types.ToolAnnotations(
            read_only_hint=t.read_only, destructive_hint=t.destructive,
            idempotent_hint=t.idempotent, open_world_hint=False))
        for t in TOOLS]


async def _in_daemon_thread(fn: Callable[..., types.CallToolResult], *args: Any
                            ) -> types.CallToolResult:
    """`fn(*args)` in a daemon thread, awaited; cancelling the wait abandons the thread.
    anyio's worker threads are joined at exit: a client that closed stdin mid-`restart`
    kept `hd mcp` alive until the daemon answered (up to the start timeout)."""
    done = anyio.Event()
    box: list[types.CallToolResult | BaseException] = []
    token = anyio.lowlevel.current_token()
    abandoned = threading.Event()

    def work() -> None:
        CALL.abandoned = abandoned  # a long wait looks at it (tools._pause)
        try:
            box.append(fn(*args))
        except BaseException as exc:  # call() answers every failure: only a bug gets here
            box.append(exc)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            anyio.from_thread.run_sync(done.set, token=token)

    threading.Thread(target=work, name="mcp-tool", daemon=True).start()
    try:
        await done.wait()
    finally:  # cancelled (its client went): a wait in the thread ends at its next look
        if not box:
            abandoned.set()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def build(stack: Stack) -> Server[Any]:
    """The MCP server over one stack (stdio or the daemon's HTTP endpoint)."""
    tools = listed()

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams
                        ) -> types.CallToolResult:
        if params.name not in BY_NAME:  # quoted in part: 3 MB came back whole (adv57 F2)
            raise MCPError(types.INVALID_PARAMS,
                           f"unknown tool {_cut(repr(params.name))}; the tools are "
                           f"{', '.join(BY_NAME)}")
        if params.arguments is None and "arguments" in params.model_fields_set:
            # `"arguments": null` read as none given: `stop` stopped every service and
            # `restart` restarted the stack, ok: true (adv34 w/2). Left out, it is {}.
            return _error(f"bad arguments for {params.name}: 'arguments' must be an "
                          f"object ({{}} for none), not null. {usage(BY_NAME[params.name])}")
        args = dict(params.arguments or {})
        return await _in_daemon_thread(call, stack, params.name, args)

    def input_schema(name: str) -> dict[str, Any] | None:
        tool = BY_NAME.get(name)
        return tool.input_schema if tool is not None else None

    return Server("hippodrome", version=__version__, title="Hippodrome",
                  instructions=INSTRUCTIONS, on_list_tools=list_tools,
                  on_call_tool=call_tool, get_tool_input_schema=input_schema)


def serve_stdio(root: Path) -> None:
    """`hd mcp`: serve the project's stack over stdin/stdout until the client leaves."""
    from mcp.server.stdio import stdio_server

    server = build(HttpStack(root))

    async def main() -> None:
        async with stdio_server() as (read, write), anyio.create_task_group() as group:
            screened_in, screened = anyio.create_memory_object_stream[Any](0)
            answers = _Answers(write)
            group.start_soon(_screen, read, screened_in, answers)
            await server.run(screened, answers, server.create_initialization_options())
            group.cancel_scope.cancel()

    def interrupted(signum: int, frame: object) -> None:
        # Ctrl+C: asyncio's own handler ended the loop, whose executor then waited for
        # the SDK's stdin reader thread: the process lived on until stdin closed, and
        # exited 0 (adv34 v/5). 130 at once, as any command; calls in flight are dropped.
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os._exit(130)

    signal.signal(signal.SIGINT, interrupted)  # asyncio keeps a handler set before it
    try:
        anyio.run(main)
    except BaseExceptionGroup as group:
        # Its output gone (a client that crashed: a closed pipe; /dev/full): a 72-line
        # traceback through anyio and the SDK, exit 1, where every command says 141
        # quietly, or 120 with a sentence (adv24 c/18). The OSError itself says which.
        raise _output_error(group) or group from None
    sys.stderr.flush()


EOF_GRACE_S = 2.0
"""How long the calls already received may still run once the client has closed stdin,
to be answered. At once, the SDK answered each `Connection closed` and dropped it before
its thread had asked the daemon: a `printf ... | hd mcp` restart was carried out in 3
runs of 13 (adv53 F1). Past it, a call still running (a restart waiting on a slow
service) is answered so, having reached the daemon, which carries it out; waiting for
its outcome kept `hd mcp` alive up to the start timeout after its client had gone."""


class _Answers:
    """The stdout stream, noting which requests have been answered: one answer for
    each, and an answer for each.

    An id counts as answered once the stdout writer has taken its answer, not when the
    answer is handed over: 200 calls piped in had answers still queued for the writer
    when the last id was struck off, the server was told stdin had ended, and the SDK
    cancelled those writes and, as an answer had been started, sent neither it nor
    `Connection closed` (adv56 1)."""

    def __init__(self, write: Any) -> None:
        self._write = write
        self.waiting: set[Any] = set()
        self._closed: set[Any] = set()
        """Ids answered `Connection closed` here (close_waiting): any later answer for
        one of them is dropped, as JSON-RPC allows one."""
        self._turn = anyio.Lock()

    async def send(self, item: Any) -> None:
        message = getattr(item, "message", None)
        answered = message.id if isinstance(
            message, types.JSONRPCResponse | types.JSONRPCError) else None
        async with self._turn:
            if answered is not None and answered in self._closed:
                return
            await self._write.send(item)
        self.waiting.discard(answered)

    async def close_waiting(self) -> None:
        """Answer every call not yet answered `Connection closed`, before the server is
        told stdin has ended (it cancels the calls then, some of them mid-answer)."""
        from mcp.shared.message import SessionMessage

        async with self._turn:
            for request_id in sorted(self.waiting, key=str):
                self._closed.add(request_id)
                error = types.ErrorData(code=types.CONNECTION_CLOSED,
                                        message="Connection closed")
                await self._write.send(SessionMessage(types.JSONRPCError(
                    jsonrpc="2.0", id=request_id, error=error)))
            self.waiting.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._write, name)

    async def __aenter__(self) -> _Answers:
        await self._write.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._write.__aexit__(*exc)


async def _screen(read: Any, passed: Any, write: _Answers) -> None:
    """Pass on stdin's messages but a tool call whose params have the wrong shape: the
    SDK answered `"arguments": []` with -32602 "Invalid request parameters" and nothing
    more; the daemon's `/mcp` says which parameter and what it wants, and so does this.
    At the end of stdin, the server is told only once what it was passed is answered
    (EOF_GRACE_S at most)."""
    from mcp.shared.message import SessionMessage

    greeted = False
    async with passed:
        async for item in read:
            if isinstance(item, Exception):  # a line the SDK could not take
                answer = _unparsed(item)
                if answer is not None:
                    await write.send(SessionMessage(answer))
                continue
            message = getattr(item, "message", None)
            if isinstance(message, types.JSONRPCRequest):
                greeted = greeted or message.method == "initialize"
                refusal = _refusal(message, greeted)
                if refusal is not None:
                    await write.send(SessionMessage(types.JSONRPCError(
                        jsonrpc="2.0", id=message.id, error=refusal)))
                    continue
            if isinstance(message, types.JSONRPCRequest):
                write.waiting.add(message.id)
            elif isinstance(message, types.JSONRPCNotification) and \
                    message.method == "notifications/cancelled":  # never answered
                write.waiting.discard((message.params or {}).get("requestId"))
            await passed.send(item)
        with anyio.move_on_after(EOF_GRACE_S):
            while write.waiting:
                await anyio.sleep(0.02)
        await write.close_waiting()


ENVELOPE_KEY = "io.modelcontextprotocol/protocolVersion"
"""In a request's `_meta`, MCP's later form of a call that needs no handshake (the SDK
takes it, and says itself what else the envelope needs)."""


def _refusal(request: types.JSONRPCRequest, greeted: bool) -> types.ErrorData | None:
    """The answer to a request the SDK would answer with too little, or too much: a
    tool call's params of the wrong shape (`"arguments": []`: -32602 "Invalid request
    parameters" and nothing more), a call before the handshake (the same words: nothing
    said `initialize` comes first, adv56 7), a method name of megabytes (echoed whole)."""
    unknown = unknown_long_method(request.method)
    if unknown is not None:
        return types.ErrorData(code=types.METHOD_NOT_FOUND, message=unknown)
    why = bad_params(request.method, request.params)
    if why is not None:
        return types.ErrorData(code=types.INVALID_PARAMS, message=f"Invalid params: {why}")
    meta = (request.params or {}).get("_meta")
    enveloped = isinstance(meta, dict) and ENVELOPE_KEY in meta  # newer, handshake-free
    if not greeted and not enveloped and request.method != "ping":
        return types.ErrorData(code=types.INVALID_REQUEST, message=(
            f"Invalid Request: {request.method!r} before `initialize`: hd mcp (stdio) "
            "begins with MCP's handshake, `initialize` then `notifications/initialized`"
            " (the daemon's HTTP /mcp takes a call without one)"))
    return None


def _small_int(text: str) -> int:
    """An integer as JSON has it, one too long for int() (4,300 digits) as 0: only the
    request's id is wanted from a line the parser refused."""
    return int(text) if len(text) < 100 else 0


def _unparsed(error: Exception) -> types.JSONRPCError | None:
    """The answer to a request whose line the SDK's parser refused (nested over ~200
    deep, a lone surrogate escape, an integer of 4,400 digits): it dropped such a line
    unanswered, and a client waited for ever, where `/mcp` answers -32700 (adv56 4). A
    line that is no request at all is still dropped."""
    errors = getattr(error, "errors", None)
    try:
        first = errors()[0] if callable(errors) else {}
        raw = first.get("input")
        request = json.loads(raw, parse_int=_small_int) if isinstance(raw, str) else None
    except (ValueError, RecursionError, IndexError, TypeError):
        return None
    if not isinstance(request, dict) or "method" not in request or \
            not isinstance(request.get("id"), int | str):
        return None
    return types.JSONRPCError(jsonrpc="2.0", id=request["id"], error=types.ErrorData(
        code=types.PARSE_ERROR, message=f"Parse error: {first.get('msg', error)}"))


def _output_error(group: BaseExceptionGroup[Any]) -> OSError | None:
    """The error the stdio streams met, when that is all the group holds; a closed
    pipe first."""
    leaves: list[BaseException] = []
    todo: list[BaseException] = [group]
    while todo:
        exc = todo.pop()
        if isinstance(exc, BaseExceptionGroup):
            todo.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if not leaves or not all(isinstance(e, OSError) for e in leaves):
        return None
    pipes = [e for e in leaves if isinstance(e, BrokenPipeError)]
    first = pipes[0] if pipes else leaves[0]
    return first if isinstance(first, OSError) else None
