"""One walk over a parsed stack file, before any field is read, for values no field
can carry to the runtime.

A NUL byte cannot travel in argv, an environment, a path or a shell command (the kernel
takes C strings; Python raises ValueError deep inside the daemon, and the service then
sits in `pending` with no word of why). NaN and the infinities compare false, or true,
against every bound, so they slip through range checks. Refusing both here, wherever
they appear (keys included), means no field's checker has to remember them, and a field
added later is covered too.

The walk is iterative: tomllib accepts dotted keys thousands of levels deep, which a
recursive walk (or a path tuple copied per level) would choke on.
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

from hippo_tasks.errors import StackFileError
from hippo_tasks.model.fields import FileContext

_Path: TypeAlias = "tuple[_Path, str | int] | None"
"""A key path as a linked list (parent, key), built in O(1) per level."""


def check_document(ctx: FileContext, raw: dict[str, Any]) -> None:
    """Raise StackFileError at the first NUL byte or non-finite number in the document."""
    todo: list[tuple[_Path, Any]] = [(None, raw)]
    while todo:
        at, value = todo.pop()
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                here: _Path = (at, key)
                if "\x00" in key:
                    raise _error(ctx, here, "a key contains a NUL byte (\\0); remove it")
                todo.append((here, item))
        elif isinstance(value, list):
            todo.extend(((at, i), item) for i, item in reversed(list(enumerate(value))))
        elif isinstance(value, str) and "\x00" in value:
            raise _error(ctx, at, "contains a NUL byte (\\0), which no argument, environment "
                                  "variable or path can hold; remove it")
        elif isinstance(value, float) and not math.isfinite(value):
            raise _error(ctx, at, f"is {value}; write a finite number")


def _keys(at: _Path) -> list[str | int]:
    keys: list[str | int] = []
    while at is not None:
        at, key = at
        keys.append(key)
    return keys[::-1]


def _shown(key: str | int) -> str:
    return f"[{key}]" if isinstance(key, int) else key.replace("\x00", "\\0")


def _error(ctx: FileContext, at: _Path, problem: str) -> StackFileError:
    keys = _keys(at)
    top = keys[0] if keys else ""
    if top == "services" and len(keys) >= 3:
        service, field, rest = _shown(keys[1]), _shown(keys[2]), keys[3:]
        where = field + "".join(_shown(k) if isinstance(k, int) else "." + _shown(k)
                                for k in rest)
        text = f"{where} {problem}" if rest else problem
        # At the key's own line where it has one (`[services.b.env]`, `env.X = ...`):
        # the service's header line, lines above, was named (adv55 4).
        keyed = f"{field}.{_shown(rest[0])}" if rest and isinstance(rest[0], str) else field
        return ctx.error(text, service, field, at=keyed)
    dotted = "".join(_shown(k) if isinstance(k, int) else "." + _shown(k) for k in keys)
    dotted = dotted.lstrip(".")
    if top == "stack" and len(keys) == 2:
        return ctx.error(problem, None, _shown(keys[1]))
    table = _shown(top) if isinstance(top, str) else ""
    if len(keys) >= 2 and isinstance(keys[1], int):  # `routes[1].x`: that entry's line
        line = ctx.line_for(None, dotted)
    else:
        line = ctx.line_of(table) if table else None
    return StackFileError(ctx.path, f"{dotted} {problem}" if dotted else problem,
                          field_name=dotted or None, line=line)
