"""Field-by-field validation of one stack file's raw TOML tables.

Each check raises StackFileError naming the file, the service and the field (with its
line when it can be found), so a typo never surfaces later as a KeyError in a child.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from hippo_tasks.errors import StackFileError
from hippo_tasks.model.spec import CELLS

SERVICE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")


class FileContext:
    """One stack file's path and text, to name it and find lines in errors."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, table: str, key: str | None = None) -> int | None:
        header = re.compile(r"^\s*\[+\s*" + re.escape(table) + r"\s*\]+\s*(#.*)?$")
        start = None
        for i, line in enumerate(self.lines):
            if header.match(line):
                start = i
                break
        if start is None:
            return None
        if key is None:
            return start + 1
        keyline = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for j in range(start + 1, len(self.lines)):
            if self.lines[j].lstrip().startswith("["):
                break
            if keyline.match(self.lines[j]):
                return j + 1
        return start + 1

    def error(
        self, problem: str, service: str | None = None, field_name: str | None = None
    ) -> StackFileError:
        table = f"services.{service}" if service else "stack"
        return StackFileError(
            path=self.path,
            problem=problem,
            service=service,
            field_name=field_name,
            line=self.line_of(table, field_name),
        )


def _type_name(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true/false",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def check_unknown(
    ctx: FileContext, table: Mapping[str, Any], known: set[str], service: str | None
) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ctx.error(
                f"unknown field{hint}; known fields: {', '.join(sorted(known))}",
                service,
                key,
            )


def want_str(ctx: FileContext, v: Any, svc: str | None, f: str) -> str:
    if not isinstance(v, str):
        raise ctx.error(f"must be a string, not {_type_name(v)}", svc, f)
    return v


def want_bool(ctx: FileContext, v: Any, svc: str | None, f: str) -> bool:
    if not isinstance(v, bool):
        raise ctx.error(f"must be true or false, not {_type_name(v)}", svc, f)
    return v


def want_number(
    ctx: FileContext, v: Any, svc: str | None, f: str, minimum: float = 0.0
) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ctx.error(f"must be a number, not {_type_name(v)}", svc, f)
    if v < minimum:
        raise ctx.error(f"must be at least {minimum:g}, got {v}", svc, f)
    return float(v)


def want_int(
    ctx: FileContext, v: Any, svc: str | None, f: str, lo: int = 0, hi: int = 2**31
) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ctx.error(f"must be an integer, not {_type_name(v)}", svc, f)
    if not lo <= v <= hi:
        raise ctx.error(f"must be between {lo} and {hi}, got {v}", svc, f)
    return v


def want_port(ctx: FileContext, v: Any, svc: str | None, f: str) -> int:
    return want_int(ctx, v, svc, f, 1, 65535)


def want_str_list(ctx: FileContext, v: Any, svc: str | None, f: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        hint = ' (write a list such as ["python3", "app.py"]; no shell is used)' if (
            f == "command" and isinstance(v, str)
        ) else ""
        raise ctx.error(f"must be a list of strings, not {_type_name(v)}{hint}", svc, f)
    return tuple(v)


def want_str_table(
    ctx: FileContext, v: Any, svc: str | None, f: str
) -> tuple[tuple[str, str], ...]:
    if not isinstance(v, dict):
        raise ctx.error(f"must be a table of strings, not {_type_name(v)}", svc, f)
    out = []
    for key, val in v.items():
        if isinstance(val, bool) or not isinstance(val, str | int | float):
            raise ctx.error(f"value of '{key}' must be a string, not {_type_name(val)}", svc, f)
        out.append((key, str(val)))
    return tuple(out)


def want_choice_list(
    ctx: FileContext, v: Any, svc: str | None, f: str, choices: tuple[str, ...] | None
) -> tuple[str, ...]:
    items = want_str_list(ctx, v, svc, f)
    if choices is not None:
        for item in items:
            if item not in choices:
                raise ctx.error(f"'{item}' is not one of {', '.join(choices)}", svc, f)
    return items


def want_cells(ctx: FileContext, v: Any, svc: str | None, f: str) -> tuple[str, ...]:
    return want_choice_list(ctx, v, svc, f, CELLS)


Checker = Callable[[FileContext, Any, str | None, str], Any]
