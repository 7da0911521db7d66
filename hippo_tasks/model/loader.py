"""Loads the bundled default stack and a project's `hippodrome.toml` into one StackSpec.

The bundled file goes through this same loader, so the default stack can never use a
feature a user's file cannot. Merge rules: a project file's `[services.X]` overrides
the fields it names of a bundled X (its `env` is merged key by key), adds X when the
bundle has none, and `enabled = false` switches X off; `[stack] defaults = false`
drops the bundle; routes from the project file come first, so they win.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hippo_tasks.errors import StackFileError, UsageError, close_hint
from hippo_tasks.model import fields as F
from hippo_tasks.model.bundle import BUNDLED_NAME, bundled_text
from hippo_tasks.model.graph import check_graph
from hippo_tasks.model.project import stack_file_stamp
from hippo_tasks.model.raw import check_document
from hippo_tasks.model.regex_safety import safe_regex
from hippo_tasks.model.spec import (
    SETUP_TIMEOUT,
    Readiness,
    Route,
    ServiceSpec,
    SetupStep,
    StackSettings,
    StackSpec,
)
from hippo_tasks.model.tables import (
    TOP_LEVEL,
    FileTables,
    check_cells,
    merge_tables,
    parse_tables,
    want_argv,
)
from hippo_tasks.model.textfile import Unusable, not_utf8, read_small_text

PROJECT_FILE = "hippodrome.toml"
RESERVED_NAMES = ("hippodrome", "dashboard")
"""What Hippodrome's own lines and its daemon's port are called."""

_STACK_FIELDS: dict[str, F.Checker] = {
    "defaults": F.want_bool,
    "dashboard_port": F.want_port,
    "log_runs_kept": lambda c, v, s, f: F.want_int(c, v, s, f, 1, 1000),
    "liveness_interval": lambda c, v, s, f: F.want_number(c, v, s, f, 0.1),
    "liveness_failures": lambda c, v, s, f: F.want_int(c, v, s, f, 1, 100),
    "backoff_initial": lambda c, v, s, f: F.want_number(c, v, s, f, 0.0),
    "backoff_max": lambda c, v, s, f: F.want_number(c, v, s, f, 0.0),
    "log_buffer_lines": lambda c, v, s, f: F.want_int(c, v, s, f, 10, 1_000_000),
}

_SERVICE_FIELDS: dict[str, F.Checker] = {
    "command": want_argv,
    "port": F.want_port,
    "cwd": F.want_str,
    "env": F.want_env,
    "profiles": lambda c, v, s, f: F.want_choice_list(c, v, s, f, None),
    "cells": lambda c, v, s, f: F.want_choice_list(c, v, s, f, None),
    "depends_on": lambda c, v, s, f: _depends_on(c, v, s, f),
    "readiness": lambda c, v, s, f: _readiness(c, v, s, f),
    "start_timeout": lambda c, v, s, f: F.want_number(c, v, s, f, 0.1),
    "stop_timeout": lambda c, v, s, f: F.want_number(c, v, s, f, 0.0),
    "blocking": F.want_bool,
    "auto_restart": F.want_bool,
    "max_restarts": lambda c, v, s, f: F.want_int(c, v, s, f, 0, 10_000),
    "external": F.want_bool,
    "external_in": lambda c, v, s, f: F.want_choice_list(c, v, s, f, None),
    "watch": F.want_globs,
    "kind": lambda c, v, s, f: _kind(c, v, s, f),
    "setup": lambda c, v, s, f: _setup(c, v, s, f),
    "enabled": F.want_bool,
    "description": F.want_str,
    "shell": lambda c, v, s, f: _shell(c, v, s, f),
    "stop_signal": lambda c, v, s, f: _stop_signal(c, v, s, f),
    "restart_cascades": F.want_bool,
    "env_file": lambda c, v, s, f: _env_files(c, v, s, f),
}

CONDITIONS = ("started", "healthy", "completed_successfully")
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH")

_ROUTE_FIELDS = {"detail_type_prefix", "service", "path"}




def _shell(ctx: F.FileContext, v: Any, svc: str | None, f: str) -> tuple[str, ...]:
    """`shell = "a | b"` is `command = ["/bin/sh", "-c", "a | b"]` without the quoting."""
    text = F.want_str(ctx, v, svc, f)
    if not text.strip():
        raise ctx.error("must not be empty", svc, f)
    return ("/bin/sh", "-c", text)


def _stop_signal(ctx: F.FileContext, v: Any, svc: str | None, f: str) -> str:
    name = v.upper() if isinstance(v, str) else v
    if isinstance(name, str) and not name.startswith("SIG"):
        name = "SIG" + name
    if name not in STOP_SIGNALS:
        raise ctx.error(f"must be one of {', '.join(STOP_SIGNALS)}, not {v!r}", svc, f)
    return str(name)


def _env_files(ctx: F.FileContext, v: Any, svc: str | None, f: str) -> tuple[str, ...]:
    files = (F.want_str(ctx, v, svc, f),) if isinstance(v, str) else F.want_str_list(ctx, v,
                                                                                        svc, f)
    if any(not name.strip() for name in files):
        raise ctx.error("a file name must not be empty", svc, f)
    return files


def _depends_on(ctx: F.FileContext, v: Any, svc: str | None,
                f: str) -> tuple[tuple[str, str | None], ...]:
    """Names, or { name = "db", condition = "healthy" } tables, in one list."""
    if not isinstance(v, list):
        raise ctx.error("must be a list of service names (or { name, condition } tables)",
                        svc, f)
    out: list[tuple[str, str | None]] = []
    for item in v:
        if isinstance(item, str):
            out.append((item, None))
        elif isinstance(item, dict) and set(item) <= {"name", "condition"} and "name" in item:
            name = F.want_str(ctx, item["name"], svc, f)
            cond = item.get("condition", "healthy")
            if cond not in CONDITIONS:
                raise ctx.error(f"condition must be one of {', '.join(CONDITIONS)}, not "
                                f"{cond!r}", svc, f)
            out.append((name, str(cond)))
        else:
            raise ctx.error("each entry is a service name or { name = \"db\", condition = "
                            "\"healthy\" }", svc, f)
        if [n for n, _ in out].count(out[-1][0]) > 1:  # the weaker condition won, unsaid
            raise ctx.error(f"names '{out[-1][0]}' twice: name each dependency once, with "
                            "the one condition it needs", svc, f)
    return tuple(out)


def _readiness(ctx: F.FileContext, v: Any, svc: str | None, f: str) -> Readiness:
    if v == "none":
        return Readiness("none")
    if isinstance(v, dict) and len(v) == 1:
        (key, val), = v.items()
        if key == "http" and isinstance(val, str) and val.startswith("/"):
            return Readiness("http", F.want_url_path(ctx, val, svc, f))
        if key == "tcp" and val is True:
            return Readiness("tcp")
        if key == "log" and isinstance(val, str) and val:
            try:
                re.compile(val)
            except (re.error, RecursionError, OverflowError, ValueError) as exc:
                raise ctx.error(f"log pattern is not a valid regex: {exc}", svc, f) from exc
            try:  # matched by the daemon against every line: it must not be able to stall it
                safe_regex(val, "the log pattern")
            except UsageError as exc:
                raise ctx.error(exc.problem, svc, f) from None
            return Readiness("log", val)
    raise ctx.error(
        'must be { http = "/path" }, { tcp = true }, { log = "regex" } or "none"', svc, f
    )


def _kind(ctx: F.FileContext, v: Any, svc: str | None, f: str) -> str:
    if v not in ("service", "job"):
        raise ctx.error('must be "service" or "job"', svc, f)
    return str(v)


def _setup(ctx: F.FileContext, v: Any, svc: str | None, f: str) -> SetupStep:
    if not isinstance(v, dict) or not {"command", "creates"} <= set(v) or \
            not set(v) <= {"command", "creates", "timeout"}:
        raise ctx.error('must be { command = ["..."], creates = "path" } (and, if you '
                        'like, timeout = seconds)', svc, f)
    command = want_argv(ctx, v["command"], svc, "setup.command")
    if not command:
        raise ctx.error("setup.command must not be empty", svc, f)
    creates = F.want_str(ctx, v["creates"], svc, "setup.creates")
    if not creates.strip():  # "" names the cwd itself, which always exists: never run
        raise ctx.error("creates must name the file or folder the step makes (e.g. "
                        "\"node_modules\"): the step runs while it is missing", svc,
                        "setup.creates")
    timeout = F.want_number(ctx, v.get("timeout", SETUP_TIMEOUT), svc, "setup.timeout", 0.1)
    return SetupStep(command=command, creates=creates, timeout=timeout)


class _FileData:
    """One file's validated pieces, still partial (overrides have no command)."""

    def __init__(self, ctx: F.FileContext) -> None:
        self.ctx = ctx
        self.stack: dict[str, Any] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.routes: list[Route] = []
        self.tables = FileTables(ctx)
        self.env: dict[str, str] = {}


def _parse_file(path: str, text: str) -> _FileData:
    # Only here: tomllib brings datetime, 0.59 MB of the daemon's memory for the
    # stack's life, which reads a stack file only when it changes (hot reload).
    import tomllib

    ctx = F.FileContext(path, text)
    try:
        raw = tomllib.loads(text, parse_float=F.WrittenFloat)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise StackFileError(
            path=path,
            problem=f"not valid TOML: {exc}",
            line=int(match.group(1)) if match else None,
        ) from exc
    except RecursionError as exc:
        raise StackFileError(path, "not usable TOML: arrays or tables nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise StackFileError(path, f"not usable TOML: {exc}") from exc
    check_document(ctx, raw)
    data = _FileData(ctx)
    F.check_unknown(ctx, raw, {"stack", "services", "routes", "env", *TOP_LEVEL}, None)
    data.env = dict(F.want_env(ctx, raw.get("env", {}), None, "env"))
    stack = raw.get("stack", {})
    if not isinstance(stack, dict):
        raise ctx.error("[stack] must be a table")
    F.check_unknown(ctx, stack, set(_STACK_FIELDS), None)
    for key, val in stack.items():
        data.stack[key] = _STACK_FIELDS[key](ctx, val, None, key)
    services = raw.get("services", {})
    if not isinstance(services, dict):
        raise ctx.error("[services] must hold one table per service")
    for name, table in services.items():
        if not F.SERVICE_NAME.match(name):
            raise StackFileError(
                ctx.path, f"service name {json.dumps(name)}: service names start with "
                "a letter and hold letters, digits, _ or -, 63 characters at most (this one "
                f"has {len(name)})", line=ctx.line_of_named("services", name))
        if name.lower() in RESERVED_NAMES:
            raise ctx.error(f"'{name}' is Hippodrome's own name in its output (`hippodrome "
                            "| ...` lines, the `dashboard` port): a service of that name "
                            "reads as Hippodrome speaking; rename the service", name)
        if not isinstance(table, dict):
            raise ctx.error("must be a table ([services.NAME])", name)
        F.check_unknown(ctx, table, set(_SERVICE_FIELDS), name)
        if "shell" in table and "command" in table:
            raise ctx.error("give either command = [...] or shell = \"...\", not both", name,
                            "shell")
        fields = {k: _SERVICE_FIELDS[k](ctx, v, name, k) for k, v in table.items()}
        if "shell" in fields:
            fields["command"] = fields.pop("shell")
            fields["command_field"] = "shell"
        if "depends_on" in fields:
            pairs = fields.pop("depends_on")
            fields["depends_on"] = tuple(n for n, _ in pairs)
            fields["conditions"] = tuple((n, c) for n, c in pairs if c is not None)
        data.services[name] = fields
    routes = raw.get("routes", [])
    if not isinstance(routes, list):  # at its `[routes]` header or `routes =` (x/4)
        raise StackFileError(path=ctx.path, problem="routes must be written as "
                               "[[routes]] tables", line=ctx.line_of("routes")
                               or ctx.line_of_top_key("routes"))
    for index, route in enumerate(routes):
        # Each error names the entry and its field (`routes[1].path`), which gives it
        # the line of that key in that entry (FileContext.line_for).
        where = f"routes[{index}]"
        if not isinstance(route, dict):
            raise ctx.error("each [[routes]] entry must be a table", None, where)
        F.check_unknown(ctx, route, _ROUTE_FIELDS, None, f"{where}.")
        missing = {"detail_type_prefix", "service"} - set(route)
        if missing:
            raise ctx.error(f"[[routes]] entry is missing {', '.join(sorted(missing))}",
                            None, where)
        data.routes.append(
            Route(
                detail_type_prefix=F.want_str(ctx, route["detail_type_prefix"], None,
                                              f"{where}.detail_type_prefix"),
                service=F.want_str(ctx, route["service"], None, f"{where}.service"),
                path=F.want_url_path(ctx, route.get("path", "/events"), None, f"{where}.path"),
            )
        )
    data.tables = parse_tables(ctx, raw)
    return data


def load_stack(project_root: Path | None, *, bundled: str | None = None) -> StackSpec:
    """The stack for a project root: the bundle merged with its hippodrome.toml, if any."""
    files: list[_FileData] = []
    user: _FileData | None = None
    stamp = None
    if project_root is not None:
        path = project_root / PROJECT_FILE
        stamp = stack_file_stamp(project_root)  # before the read: a later edit shows
        try:
            text = read_small_text(path)
        except FileNotFoundError:
            text = None  # no stack file: the bundled stack as it is
        except Unusable as exc:
            raise StackFileError(str(path), f"{exc}: the stack is read from a regular file "
                                 "of this name; fix or remove it (without one, the bundled "
                                 "stack runs)") from None
        except UnicodeDecodeError as exc:
            raise StackFileError(str(path), not_utf8(exc)) from None
        if text is not None:
            user = _parse_file(str(path), text)
    use_bundle = user is None or user.stack.get("defaults", True)
    if use_bundle:  # read only when used: `defaults = false` needs no platform at all
        text = bundled_text() if bundled is None else bundled
        files.append(_parse_file(f"<bundled {BUNDLED_NAME}>", text))
    if user is not None:
        files.append(user)
    return _merge(files)._replace(file_stamp=stamp)


def source_line(source: str, table: str, key: str | None) -> int | None:
    """The line of `key` in `[table]` of the stack file a spec came from, for errors
    found after loading (a `${...}` rendered per run): they named no line, unlike every
    other load error. The file is read again only then; None if it cannot be."""
    ctx = _source_context(source)
    return ctx.line_of(table, key) if ctx is not None else None


def service_line(source: str, service: str, field_name: str) -> int | None:
    """As source_line, for a service's field as errors name it (`env.X`: the key)."""
    ctx = _source_context(source)
    return ctx.line_for(service, field_name) if ctx is not None else None


def source_line_named(source: str, table: str, name: str) -> int | None:
    """As source_line, for a key of any spelling (`"A.B" = ...`), and for a table
    written inline at the top (`env = {...}`): the [env] errors named its header, or no
    line (adv29 n/1)."""
    ctx = _source_context(source)
    if ctx is None:
        return None
    return ctx.line_of_named(table, name) or ctx.line_of_top_key(table)


def _source_context(source: str) -> F.FileContext | None:
    try:
        text = (bundled_text() if source == f"<bundled {BUNDLED_NAME}>"
                else read_small_text(Path(source)))
    except (OSError, ValueError):  # Unusable and UnicodeDecodeError are ValueErrors
        return None
    return F.FileContext(source, text)


def load_stack_text(text: str, path: str = PROJECT_FILE) -> StackSpec:
    """A single stack file on its own, as with `defaults = false`."""
    return _merge([_parse_file(path, text)])


def _merge(files: list[_FileData]) -> StackSpec:
    settings: dict[str, Any] = {}
    merged: dict[str, dict[str, Any]] = {}
    source: dict[str, F.FileContext] = {}
    routes: list[Route] = []
    route_sources: list[tuple[F.FileContext, str]] = []  # per route: its file and entry
    shared_env: dict[str, str] = {}
    tables = merge_tables([d.tables for d in files])
    dashboard_from: F.FileContext | None = None
    for data in files:
        settings.update(data.stack)
        if "dashboard_port" in data.stack:
            dashboard_from = data.ctx
        shared_env.update(data.env)
        for name, table in data.services.items():
            into = merged.setdefault(name, {})
            for key, val in table.items():
                if key == "env" and "env" in into:
                    into["env"] = tuple({**dict(into["env"]), **dict(val)}.items())
                else:
                    into[key] = val
            source[name] = data.ctx
        routes = data.routes + routes
        route_sources = [(data.ctx, f"routes[{i}]") for i in range(len(data.routes))] + \
            route_sources
    settings.pop("defaults", None)
    below = {name for data in files[:-1] for name in data.services}
    # A service naming no profiles is in every one: those declared, and those only a
    # service names (as Compose has it). It was in the declared ones only, so
    # `profiles = ["debug"]` on a debugger ran it alone, and adding a description-only
    # [profiles.debug] table changed what ran.
    every = tables.profiles + tuple(sorted(
        {p for t in merged.values() for p in t.get("profiles", ())} - set(tables.profiles)))
    services: list[ServiceSpec] = []
    for name, table in merged.items():
        ctx = source[name]
        if not table.get("profiles"):  # left out, or `profiles = []`: every one (Compose)
            table["profiles"] = every
        unknown = [p for p in table.get("external_in", ()) if p not in every]
        if unknown:
            raise ctx.error(f"external_in names '{unknown[0]}', which no [profiles.NAME] "
                            "table declares and no service names: no --profile could "
                            "choose it" + close_hint(unknown[0], every), name, "external_in")
        if not table.get("cells"):  # left out, or `cells = []`: every one, as profiles
            table["cells"] = tables.cell_names
        check_cells(ctx, name, table["cells"], tables)
        always_external = table.get("external", False) or (
            set(table.get("external_in", ())) >= set(table["profiles"]))
        if not always_external and not table.get("command") and below and name not in below:
            raise _not_bundled(ctx, name, below, table.get("enabled", True))
        if not always_external and not table.get("command") and table.get("enabled", True):
            raise ctx.error("has no command (give command = [...] or external = true)", name,
                            "command")
        if "readiness" not in table:
            table["readiness"] = Readiness("tcp") if "port" in table else Readiness("none")
        if table["readiness"].kind in ("http", "tcp") and "port" not in table:
            raise ctx.error(f"readiness {table['readiness'].kind} needs a port", name, "readiness")
        if table.get("kind") == "job" and (table.get("external") or table.get("external_in")):
            raise ctx.error(
                "a job is run to completion by Hippodrome, and an external service is not "
                "run at all, so nothing would ever complete it (its dependants would wait "
                "for ever): remove kind = \"job\" or the external setting; to switch the "
                "job off, use enabled = false", name,
                "external" if table.get("external") else "external_in")
        if table.get("kind") == "job" and table.get("auto_restart"):
            raise ctx.error("a job runs once; auto_restart must be false", name, "auto_restart")
        if table.get("kind") == "job" and table.get("watch"):
            raise ctx.error("a job runs once; hot reload (watch) is for services: remove "
                            "watch, or run the job again with `hd restart --service "
                            f"{name}`", name, "watch")
        if table.get("kind") == "job":
            table.setdefault("auto_restart", False)
        services.append(ServiceSpec(name=name, source=ctx.path, **table))
    stack_settings = StackSettings(**settings)
    if stack_settings.backoff_max < stack_settings.backoff_initial:
        raise files[-1].ctx.error(
            f"backoff_max ({stack_settings.backoff_max:g}) is below backoff_initial "
            f"({stack_settings.backoff_initial:g}): restart delays start at backoff_initial "
            "and double up to backoff_max", None, "backoff_max")
    spec = StackSpec(
        settings=stack_settings,
        services=tuple(services),
        routes=tuple(routes),
        cell_urls=tuple((c.name, c.url) for c in tables.cells if c.url),
        env=tuple(shared_env.items()),
        files=tuple(d.ctx.path for d in files),
        profiles=tables.profiles,
        cells=tables.cells,
        commands=tables.commands,
    )
    by_name = {s.name: s for s in services}
    for cell in tables.cells:
        if cell.stand_in and cell.stand_in not in merged:
            raise tables.stand_in_source[cell.name].error(
                f"[cells.{cell.name}] stand_in names '{cell.stand_in}', which is not a "
                "service of the stack" + close_hint(cell.stand_in, merged), None,
                f"cells.{cell.name}.stand_in")
        if cell.stand_in in by_name and by_name[cell.stand_in].port is None:
            # It gave the cell no URL, and `up` said to set one (adv49 B/6).
            raise tables.stand_in_source[cell.name].error(
                f"[cells.{cell.name}] stand_in names '{cell.stand_in}', which has no "
                "port, so it gives the cell no URL: give it a `port`, or drop stand_in "
                f"and give the cell a url", None, f"cells.{cell.name}.stand_in")
    check_graph(spec, {s.name: source[s.name] for s in services}, route_sources,
                dashboard_from)
    return spec


def _not_bundled(ctx: F.FileContext, name: str, bundled: set[str],
                 enabled: bool) -> StackFileError:
    """A table with no command only makes sense as an override of a bundled service, so
    a name the bundle lacks is most likely a typo: say so rather than "has no command"."""
    hint = close_hint(name, bundled)
    if not enabled:
        return ctx.error(f"is not a bundled service{hint}, so enabled = false switches "
                         "nothing off", name)
    return ctx.error(f"is not a bundled service{hint}; to override one, use its exact name; "
                     "to add a new service, give it command = [...] (or external = true)", name)


def known_profiles(spec: StackSpec) -> tuple[str, ...]:
    """The declared profiles, then any a service names that no table declares."""
    extra = sorted({p for s in spec.services for p in s.profiles} - set(spec.profiles))
    return spec.profiles + tuple(extra)
