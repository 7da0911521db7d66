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
