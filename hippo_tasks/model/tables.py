"""The stack file's `[profiles.NAME]`, `[cells.NAME]` and `[commands.NAME]` tables.

They make a platform's vocabulary data: which profiles `--profile` may choose, which
cells `--cell` may choose and which service stands in for a cell, and which programs
the platform offers for a running stack (`hd seed`, `hd probes`). Parsing here,
one file at a time; merging (a project file overrides the fields it names of the
bundle's tables) in `merge_tables`. No dataclasses: every `up` parses these (spec.py says
why).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from hippo_tasks.errors import StackFileError
from hippo_tasks.model import fields as F
from hippo_tasks.model.spec import DEFAULT_CELL, DEFAULT_PROFILE, CellSpec, CommandSpec

TOP_LEVEL = ("profiles", "cells", "commands")
_PROFILE_FIELDS = {"description"}
_CELL_FIELDS = {"url", "stand_in", "description"}
_COMMAND_FIELDS = {"command", "description", "cwd", "env"}


class FileTables:
    """One file's tables, still partial (a project file may name one field only)."""

    __slots__ = ("ctx", "profiles", "cells", "commands")

    def __init__(self, ctx: F.FileContext,
                 profiles: dict[str, dict[str, str]] | None = None,
                 cells: dict[str, dict[str, str]] | None = None,
                 commands: dict[str, dict[str, Any]] | None = None) -> None:
        self.ctx = ctx
        self.profiles = {} if profiles is None else profiles
        self.cells = {} if cells is None else cells
        self.commands = {} if commands is None else commands


def want_argv(ctx: F.FileContext, v: Any, svc: str | None, f: str) -> tuple[str, ...]:
    """A command line; an empty program name could only fail at exec."""
    argv = F.want_str_list(ctx, v, svc, f)
    if argv and not argv[0].strip():
        raise ctx.error("the program (the first item) must not be empty", svc, f)
    return argv


def _named_tables(ctx: F.FileContext, raw: dict[str, Any], key: str,
                  known: set[str]) -> dict[str, dict[str, Any]]:
    tables = raw.get(key, {})
    if not isinstance(tables, dict):
        raise ctx.error(f"[{key}.NAME] must be tables, one per name")
    for name, table in tables.items():
        if not F.SERVICE_NAME.match(name):
            raise StackFileError(ctx.path, f"[{key}.{json.dumps(name)[:80]}]: names start "
                                 "with a letter and hold letters, digits, _ or -",
                                 line=ctx.line_of_named(key, name))
        if not isinstance(table, dict):  # `[profiles]` then `dev = 5`: blamed on [stack]
            raise StackFileError(ctx.path, f"[{key}.{json.dumps(name)[:80]}] must be a "
                                 "table", line=ctx.line_of_named(key, name))
        for item in table:
            if item not in known:
                raise ctx.error(f"[{key}.{name}] has no field '{item}' (known: "
                                f"{', '.join(sorted(known))})", None, f"{key}.{name}.{item}")
    return tables


def parse_tables(ctx: F.FileContext, raw: dict[str, Any]) -> FileTables:
    out = FileTables(ctx)
    for name, table in _named_tables(ctx, raw, "profiles", _PROFILE_FIELDS).items():
        out.profiles[name] = {k: F.want_str(ctx, v, None, f"profiles.{name}.{k}")
                              for k, v in table.items()}
    for name, table in _named_tables(ctx, raw, "cells", _CELL_FIELDS).items():
        out.cells[name] = {k: F.want_str(ctx, v, None, f"cells.{name}.{k}")
                           for k, v in table.items()}
    for name, table in _named_tables(ctx, raw, "commands", _COMMAND_FIELDS).items():
        where = f"commands.{name}"
        cmd: dict[str, Any] = {}
        for key, val in table.items():
            if key == "command":
                cmd[key] = want_argv(ctx, val, None, f"{where}.command")
            elif key == "env":
                cmd[key] = F.want_env(ctx, val, None, f"{where}.env")
            else:
                cmd[key] = F.want_str(ctx, val, None, f"{where}.{key}")
        out.commands[name] = cmd
    return out


class MergedTables(NamedTuple):
    profiles: tuple[str, ...]
    cells: tuple[CellSpec, ...]
    commands: tuple[CommandSpec, ...]
    stand_in_source: dict[str, F.FileContext]
    """For each cell with a stand-in, the file that named it (for errors)."""

    @property
    def cell_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cells)


def check_cells(ctx: F.FileContext, service: str, cells: tuple[str, ...],
                tables: MergedTables) -> None:
    """A service's `cells` name declared cells: a typo must not invent a cell."""
    for cell in cells:
        if cell not in tables.cell_names:
            raise ctx.error(f"'{cell}' is not one of {', '.join(tables.cell_names)} (a new "
                            f"cell needs its own [cells.{cell}] table)", service, "cells")


def merge_tables(files: list[FileTables]) -> MergedTables:
    """Later files override the fields they name; order is first appearance."""
    profiles: dict[str, dict[str, str]] = {}
    cells: dict[str, dict[str, str]] = {}
    commands: dict[str, dict[str, Any]] = {}
    command_source: dict[str, F.FileContext] = {}
    stand_in_source: dict[str, F.FileContext] = {}
    for data in files:
        for name, table in data.profiles.items():
            profiles.setdefault(name, {}).update(table)
        for name, table in data.cells.items():
            cells.setdefault(name, {}).update(table)
            if "stand_in" in table:
                stand_in_source[name] = data.ctx
        for name, cmd in data.commands.items():
            into = commands.setdefault(name, {})
            for key, val in cmd.items():
                into[key] = (tuple({**dict(into["env"]), **dict(val)}.items())
                             if key == "env" and "env" in into else val)
            command_source[name] = data.ctx
    names = tuple(profiles)
    if DEFAULT_PROFILE not in names:
        names = (DEFAULT_PROFILE, *names)
    if DEFAULT_CELL not in cells:
        cells = {DEFAULT_CELL: {}, **cells}
    built: list[CommandSpec] = []
    for name, merged in commands.items():
        ctx = command_source[name]
        if not merged.get("command"):
            raise ctx.error(f"[commands.{name}] has no command (give command = [...])", None,
                            f"commands.{name}.command")
        built.append(CommandSpec(name=name, source=ctx.path, **merged))
    return MergedTables(
        profiles=names,
        cells=tuple(CellSpec(name=n, **t) for n, t in cells.items()),
        commands=tuple(built),
        stand_in_source=stand_in_source,
    )
