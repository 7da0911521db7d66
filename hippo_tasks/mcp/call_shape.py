"""What is wrong with a tool call's params, said where the SDK says only "Invalid request
parameters" (`"arguments": []`, `"name": 5`): for the daemon's `/mcp` and `hd mcp`'s
stdio alike. No MCP SDK here: the daemon checks a request before it loads it."""

from __future__ import annotations

import json
from typing import Any


def shown(value: object) -> str:
    """A JSON value named for a sentence; a nested one is not written back out whole."""
    return ("an object" if isinstance(value, dict) else "a list" if isinstance(value, list)
            else json.dumps(value)[:40])


LONGEST_METHOD = 200
"""No MCP method's name comes near it (`notifications/resources/list_changed` is 36)."""


def unknown_long_method(method: str) -> str | None:
    """The -32601 text for a method name too long to be any (None otherwise): the SDK's
    `Method not found` echoed the whole name, 3 MB in, 3 MB out (adv56 7)."""
    if len(method) <= LONGEST_METHOD:
        return None
    return (f"Method not found: a method name of {len(method)} characters (no MCP method "
            f"has over {LONGEST_METHOD}; `tools/list` and `tools/call` are the ones to use)")


def bad_params(method: str, params: dict[str, Any] | None) -> str | None:
    """What is wrong with a tool call's params where the SDK would say only that they
    are invalid, or None."""
    if method != "tools/call":
        return None
    if params is None:  # `"params": null` or none: the SDK's bare -32602 (adv46 H/2)
        return ("a tool call's 'params' must be an object naming the tool, such as "
                "{\"name\": \"status\", \"arguments\": {}}")
    if not isinstance(params.get("name"), str):
        return ("'name' must be a string, the tool's name (such as \"status\"), not "
                f"{shown(params.get('name')) if 'name' in params else 'missing'}")
    arguments = params.get("arguments")
    if arguments is not None and not isinstance(arguments, dict):
        return (f"'arguments' must be an object ({{}} for none), not {shown(arguments)}: "
                "`tools/list` gives each tool's arguments")
    return None
