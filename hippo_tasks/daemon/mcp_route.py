"""`POST /mcp`: the MCP server over streamable HTTP, in the daemon (GET, DELETE: 405).

The route reads and guards the request like every other one (the daemon's Host and
Origin rules, its body limits), then hands it to the MCP SDK (mcp/http_bridge.py),
which is imported here on the first request only: a daemon nobody drives through MCP
never loads it. A foreign `Origin` is refused for every method here, GET included:
no web page may open this endpoint, whatever it asks.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from hippo_tasks.daemon.guard import host_name, is_loopback_name
from hippo_tasks.daemon.httpcore import ClientGone, HttpError, Raw, Request, peer_gone
from hippo_tasks.mcp.call_shape import bad_params, shown, unknown_long_method

if TYPE_CHECKING:
    from hippo_tasks.daemon.commands import StackCommands
    from hippo_tasks.mcp.http_bridge import McpBridge

MAX_BODY = 4 * 1024 * 1024
READ_TIMEOUT_S = 10.0
INSTALL = ("the MCP endpoint needs the MCP SDK, which is not installed for this daemon: "
           "pip install 'hippodrome[mcp]' (the PEX files include it), then restart the stack")
_SKIPPED = frozenset({"content-type", "content-length", "connection", "date", "server"})


MCP_ADDRESS_SPACE = 96 << 20
"""What loading the SDK takes of the daemon's address space (about 54 MB measured, and
its threads' stacks): under a tighter `ulimit -v` its Rust allocator aborted the whole
daemon ("memory allocation of 1 bytes failed") on the first `/mcp` request."""


def address_space_short(need: int) -> str:
    """Why `need` more bytes of address space will not fit under `ulimit -v`, or ""."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft == resource.RLIM_INFINITY:
        return ""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            used = next(int(line.split()[1]) for line in fh
                        if line.startswith("VmSize:")) * 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return ""
    left = soft - used
    if left >= need:
        return ""
    return (f"needs about {need >> 20} MB more address space than `ulimit -v` leaves the "
            f"daemon ({max(left, 0) >> 20} MB of {soft >> 20} MB)")


class McpEndpoint:
    """The SDK side of `/mcp`, made once, on first use (two first requests at once make
    one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bridge: McpBridge | None = None

    def bridge(self, commands: StackCommands) -> McpBridge:
        with self._lock:
            if self._bridge is None:
                # The detached daemon keeps `ssl` out (daemon/__main__.py); the SDK's
                # async layer (anyio) imports it unconditionally, so MCP brings it in.
                if "ssl" in sys.modules and sys.modules["ssl"] is None:
                    del sys.modules["ssl"]
                short = address_space_short(MCP_ADDRESS_SPACE)
                if short:
                    raise HttpError(503, f"the MCP endpoint {short}; raise `ulimit -v` "
                                    "before `hd up`, or use `hd mcp` (stdio), a process "
                                    "of its own")
                try:
                    from hippo_tasks.mcp.http_bridge import McpBridge
                except ImportError:
                    raise HttpError(501, INSTALL) from None
                host = urlsplit(commands.engine.url).hostname or ""
                loopback = is_loopback_name(host_name(host)) or host == "::1"
                self._bridge = McpBridge(commands, loopback_only=loopback)
            return self._bridge

    def close(self) -> None:
        with self._lock:
            if self._bridge is not None:
                self._bridge.close()
                self._bridge = None


def _origin_refusal(req: Request) -> None:
    origin = req.headers.get("Origin")
    if origin is not None and origin != f"http://{req.headers.get('Host') or ''}":
        raise HttpError(403, f"cross-origin request from {origin!r} refused: the MCP "
                             "endpoint is for agent clients on this machine, not web pages")


def _refused_message(body: bytes) -> Raw | None:
    """A request whose id is neither a string nor an integer (1.5, true, an object): the
    SDK took it for a notification, answered 202 with no body and carried nothing out,
    so the client waited for an answer that never came (adv28 m/5). A batch (a JSON
    array) got pydantic's validation text, a dozen lines naming every model it tried;
    MCP dropped batches in 2025-06-18. So did a body with no method, or not JSON's
    object, a `jsonrpc` that is not "2.0", and `params` that are not an object.
    JSON-RPC's answer to each is an Invalid Request error (with the request's id where
    it is a valid one); a tool call's `name` or `arguments` of the wrong shape are
    Invalid params."""
    try:  # every body: a key may be spelt with escapes ("\\u0069d" is "id"; adv31 s/1)
        message = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: the SDK's own 400 says so
    if isinstance(message, list):
        return _invalid_request("a batch (a JSON array) is not taken: MCP has no batches "
                                "since 2025-06-18; POST one JSON-RPC message per request")
    if not isinstance(message, dict):  # `null`, `1`: pydantic's text, lines of it
        kind = {type(None): "null", bool: "true/false", str: "a string"}.get(
            type(message), "a number")
        return _invalid_request(f"a JSON-RPC message is a JSON object, not {kind}; POST "
                                "one JSON-RPC message per request")
    ident = message.get("id")
    if not isinstance(ident, str) and not (isinstance(ident, int)
                                           and not isinstance(ident, bool)):
        ident = None  # (said below, for a request)
    if "method" not in message and ("result" in message or "error" in message):
        return None  # a client's answer to a request of the server's: the SDK's
    if not isinstance(message.get("method"), str):
        # `{}`, or JSON-RPC's own example `{"method": 1}`: -32602 with pydantic's text,
        # up to 34 lines of it (adv32 u/6)
        return _invalid_request("a JSON-RPC request needs 'method', a string, such as "
                                "\"tools/list\"")
    # These two got -32602 with a pydantic dump of every model the SDK tried, id null
    # (adv35 y/7).
    if message.get("jsonrpc") != "2.0":
        given = shown(message["jsonrpc"]) if "jsonrpc" in message else "missing"
        return _invalid_request(f"'jsonrpc' must be \"2.0\", not {given}", ident)
    if "params" in message and not isinstance(message["params"], dict | None):
        return _invalid_request(f"'params' must be an object, not "
                                f"{shown(message['params'])}", ident)
    if "id" not in message:
        return None
    if ident is None:
        return _invalid_request(f"'id' must be a string or an integer, not "
                                f"{shown(message['id'])}")
    unknown = unknown_long_method(message["method"])
    if unknown is not None:
        return Raw(json.dumps({"jsonrpc": "2.0", "id": ident, "error": {
            "code": -32601, "message": unknown}}).encode(), "application/json")
    why = bad_params(message["method"], message.get("params"))
    if why is None:
        return None
    # (the SDK's own answer: -32602 "Invalid request parameters", with nothing to say
    # which parameter or what it wants)
    error = {"jsonrpc": "2.0", "id": ident, "error": {
        "code": -32602, "message": f"Invalid params: {why}"}}
    return Raw(json.dumps(error).encode(), "application/json")


def _invalid_request(why: str, ident: str | int | None = None) -> Raw:
    error = {"jsonrpc": "2.0", "id": ident, "error": {
        "code": -32600, "message": f"Invalid Request: {why}"}}
    return Raw(json.dumps(error).encode(), "application/json", status=400)


def mcp(req: Request) -> Raw:
    _origin_refusal(req)
    if req.method == "GET":
        # The SDK would hold the GET open as an event stream that a stateless server
        # never writes to: a thread and a socket per GET, for 16 minutes. The spec's
        # answer for a server without that stream is 405.
        raise HttpError(405, "this MCP endpoint is stateless with JSON answers: it has no "
                             "event stream to GET; POST one JSON-RPC message per request",
                        headers={"Allow": "POST"}, extra={"allowed": ["POST"]})
    content_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if req.method == "POST" and content_type != "application/json":
        raise HttpError(400, f"Content-Type must be application/json, not "
                             f"{content_type or 'missing'!r}: POST one JSON-RPC message")
    body = req.body.read(MAX_BODY, READ_TIMEOUT_S, noun="one JSON-RPC message")
    refused = _refused_message(body) if req.method == "POST" else None
    if refused is not None:
        return refused
    # Media types are case-insensitive (RFC 9110); the SDK compares exactly, and
    # answered APPLICATION/JSON with a 415.
    sent = [(k, "application/json" if k.lower() == "content-type" and content_type ==
             "application/json" else v) for k, v in req.headers.items()
            if k.lower() not in ("host", "origin")]
    # The daemon's guard has passed the Host (a loopback name) and _origin_refusal the
    # Origin (the same host): the SDK's own list, exact and case-sensitive, answered a
    # plain-text 421 to the daemon's own URL at 127.0.0.2, `LOCALHOST` or `127.1` (z/6).
    canonical = f"127.0.0.1:{urlsplit(req.app.commands.engine.url).port}"
    sent.append(("Host", canonical))
    if req.headers.get("Accept") is None:
        # None accepts anything (RFC 9110 12.5.1), and JSON is what this endpoint
        # answers: the SDK answered 406 "Client must accept application/json" to
        # urllib, http.client and `curl -H 'Accept:'` (adv46 H/6).
        sent.append(("Accept", "application/json"))
    if req.headers.get("Origin") is not None:
        sent.append(("Origin", f"http://{canonical}"))
    try:
        answer = req.app.mcp.bridge(req.app.commands).exchange(
            req.method, req.path, urlencode(req.query), sent, body,
            gone=lambda: peer_gone(req.body.sock))
    except RuntimeError as exc:
        raise HttpError(503, f"{exc}; restart the stack (`hd down`, `hd up`)") from None
    if answer is None:
        raise ClientGone()
    status, headers, payload = answer
    content_type = next((v for k, v in headers if k.lower() == "content-type"),
                        "application/json")
    extra = {k: v for k, v in headers if k.lower() not in _SKIPPED}
    return Raw(payload, content_type, headers=extra, status=status)
