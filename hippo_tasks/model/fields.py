"""Field-by-field validation of one stack file's raw TOML tables.

Each check raises StackFileError naming the file, the service and the field (with its
line when it can be found), so a typo never surfaces later as a KeyError in a child.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

from hippo_tasks.errors import StackFileError, close_hint
from hippo_tasks.model import globs

SERVICE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}\Z")

DAY = 86_400.0
"""The upper bound of every duration (timeouts, intervals, backoff): longer is a typo,
and far longer overflows the event loop's clock arithmetic."""


_ENTRY = re.compile(r"(?P<array>[A-Za-z_][\w-]*)\[(?P<index>\d+)\](?:\.(?P<key>[^.\[]+))?")
"""A field of an entry of an array of tables, as errors name it: `routes[1].path`."""


class FileContext:
    """One stack file's path and text, to name it and find lines in errors."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, table: str, key: str | None = None) -> int | None:
        head, _, last = table.rpartition(".")
        named = re.escape(table) if not head else (  # [services.x] or [services."a b"]
            re.escape(head) + r"\s*\.\s*(?:" + re.escape(last) + r"|\"" + re.escape(last)
            + r"\"|'" + re.escape(last) + "')")
        header = re.compile(r"^\s*\[+\s*" + named + r"\s*\]+\s*(#.*)?$")
        start = None
        for i, line in enumerate(self.lines):
            if header.match(line):
                start = i
                break
        if start is None:
            return None
        return self._key_after(start, key)

    def line_of_entry(self, array: str, index: int, key: str | None = None) -> int | None:
        """The line of `key` in the `index`-th (from 0) `[[array]]` table, else of that
        table's header; for an array written inline (`routes = [{...}, {...}]`), the line
        of `array =`. Errors in the second [[routes]] named the first one's header."""
        header = re.compile(r"^\s*\[\[\s*" + re.escape(array) + r"\s*\]\]\s*(#.*)?$")
        starts = [i for i, line in enumerate(self.lines) if header.match(line)]
        if index < len(starts):
            found = self._key_after(starts[index], key)
            if key is not None and found == starts[index] + 1:  # no `key =` in the entry:
                sub = self.line_of(f"{array}.{key}")  # a `[routes.extra]` under it (x/4)
                end = starts[index + 1] if index + 1 < len(starts) else len(self.lines)
                if sub is not None and starts[index] < sub <= end:
                    return sub
            return found
        top = self.line_of_top_key(array)
        if top is None:
            return None
        return _inline_entry_line(self.lines, top - 1, index, key) or top

    def line_of_named(self, table: str, name: str) -> int | None:
        """The line of `[table.NAME]` (or `[table.NAME.x]`, `[[...]]`) for any NAME, the
        odd ones included (`""`, `"../x"`, `"a\\tb"`): split at dots, `line_of` found
        no line for them, and errors named line 1 or none (z/4)."""
        quoted = r"""("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)"""
        header = re.compile(r"^\s*\[+\s*" + re.escape(table) + r"\s*\.\s*" + quoted)
        own = re.compile(r"^\s*\[\s*" + re.escape(table) + r"\s*\]\s*(#.*)?$")
        key = re.compile(r"^\s*" + quoted + r"\s*[=.]")
        inside = False  # in `[table]`, where `NAME = {...}` writes the same (s/2)
        for i, line in enumerate(self.lines):
            if line.lstrip().startswith("["):
                inside = bool(own.match(line))
            found = header.match(line) or (key.match(line) if inside else None)
            if found is not None and _key_name(found.group(1)) == name:
                return i + 1
        return None

    def line_of_sub_key(self, table: str, field: str, key: str) -> int | None:
        """The line of `key` of the table-valued `field` of `[table]`, however it is
        written: in `[table.field]`, or as `field.key = ...` in `[table]`. An error in a
        service's `[services.b.env]` named the line of `[services.b]`, lines above."""
        found = self.line_of_named(f"{table}.{field}", key)
        if found is not None:
            return found
        quoted = "|".join(re.escape(q) for q in (key, f'"{key}"', f"'{key}'"))
        dotted = re.compile(r"^\s*" + re.escape(field) + r"\s*\.\s*(?:" + quoted + r")\s*=")
        own = self.line_of(table)
        if own is None:
            return None
        for j in range(own, len(self.lines)):
            if self.lines[j].lstrip().startswith("["):
                break
            if dotted.match(self.lines[j]):
                return j + 1
        return None

    def line_of_top_key(self, key: str) -> int | None:
        """The line of `key = ...` at the top level, before any table header."""
        assign = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for i, line in enumerate(self.lines):
            if line.lstrip().startswith("["):  # keys of the top level come before any table
                return None
            if assign.match(line):
                return i + 1
        return None

    def _key_after(self, start: int, key: str | None) -> int:
        """The line of `key` in the table whose header is at index `start`, else of the
        header itself (1-based)."""
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
        self, problem: str, service: str | None = None, field_name: str | None = None,
        at: str | None = None,
    ) -> StackFileError:
        """`at`: where the line is found, when finer than the field (`env.B=C`)."""
        return StackFileError(
            path=self.path,
            problem=problem,
            service=service,
            field_name=field_name,
            line=self.line_for(service, at or field_name),
        )

    def line_for(self, service: str | None, field_name: str | None) -> int | None:
        """The line of the key at fault. Fields of the other tables (`profiles.web.
        description`, `[env]`, `[commands.seed]`) were all put at the [stack] header, or
        at line 1, and a service's `setup.creates` at its table's header."""
        if service:
            table = f"services.{service}"
            if field_name and "." in field_name:  # env.X: the key's own line (adv55 4)
                field, _, key = field_name.partition(".")
                return self.line_of_sub_key(table, field, key) or self.line_of(table, field)
            return self.line_of(table, field_name)
        entry = _ENTRY.match(field_name or "")
        if entry:  # `routes[1].path`: an entry of an array of tables, [[routes]]
            return self.line_of_entry(entry["array"], int(entry["index"]), entry["key"]) \
                or self.line_of("stack")
        if field_name and "." in field_name:
            table, _, key = field_name.rpartition(".")
            return self.line_of(table, key) or self.line_of(field_name) or \
                self.line_of("stack")
        if field_name:
            return self.line_of(field_name) or self.line_of("stack", field_name)
        return self.line_of("stack")


class WrittenFloat(float):
    """A TOML float that keeps its text (tomllib's parse_float): `V = 3.10` in `env`
    reached the service as `3.1`, and `1e3` as `1000.0` (adv32 u/3)."""

    written: str

    def __new__(cls, text: str) -> WrittenFloat:
        number = super().__new__(cls, text)
        number.written = text
        return number


def as_written(number: int | float) -> str:
    """A number as the stack file has it where that is kept (floats); an integer as its
    decimal text (`0o755` is 493: TOML keeps no other form)."""
    return number.written if isinstance(number, WrittenFloat) else str(number)


def _key_name(written: str) -> str | None:
    """A TOML key as written (bare, "basic" or 'literal') as the name it reads as."""
    if written[:1] not in "\"'":
        return written
    import tomllib  # as the loader: only when a file is read

    try:
        return str(tomllib.loads(f"k = {written}")["k"])
    except (tomllib.TOMLDecodeError, KeyError):
        return None


def _inline_entry_line(lines: list[str], first: int, index: int, key: str | None
                       ) -> int | None:
    """The line (1-based) of `key` in the `index`-th inline table of the array assigned
    at line `first` (0-based), else of that table's `{`: an error in the second entry of
    `routes = [{...}, {...}]` named the line of `routes =` (x/4). Strings and comments
    are skipped, so a brace inside one does not count; None when it is not found."""
    depth, seen, entry_line = 0, -1, None
    keyed = re.compile(r"(?:^|[{,])\s*" + re.escape(key) + r"\s*=") if key else None
    for number in range(first, len(lines)):
        text, quote, i = lines[number], "", 0
        if number == first:
            i = text.index("=") + 1
        chunk_start = i
        while i < len(text):
            ch = text[i]
            if quote:
                if ch == "\\" and quote == '"':
                    i += 1
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "#":
                break
            elif ch in "[{":
                depth += 1
                if ch == "{" and depth == 2:
                    seen += 1
                    if seen == index:
                        entry_line, chunk_start = number + 1, i
            elif ch in "]}":
                depth -= 1
                if depth == 0:
                    return entry_line
                if ch == "}" and depth == 1 and entry_line is not None:
                    return _key_in(lines[entry_line - 1:number + 1], keyed, entry_line,
                                   chunk_start) or entry_line
            i += 1
    return entry_line


def _key_in(lines: list[str], keyed: re.Pattern[str] | None, first_line: int,
            start: int) -> int | None:
    """The line of the first match of `keyed` in `lines` (the first from `start`)."""
    if keyed is None:
        return None
    for offset, text in enumerate(lines):
        if keyed.search(text[start:] if offset == 0 else text):
            return first_line + offset
    return None


def _type_name(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true/false",
        list: "a list",
        dict: "a table",
    }.get(float if isinstance(value, WrittenFloat) else type(value), type(value).__name__)


def check_unknown(
    ctx: FileContext, table: Mapping[str, Any], known: set[str], service: str | None,
    where: str = "",
) -> None:
    """Refuse a key not in `known`; `where` prefixes the field's name (`routes[1].`)."""
    for key in table:
        if key not in known:
            raise ctx.error(
                f"unknown field{close_hint(key, known)}; known fields: {', '.join(sorted(known))}",
                service,
                where + key,
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
    ctx: FileContext,
    v: Any,
    svc: str | None,
    f: str,
    minimum: float = 0.0,
    maximum: float = DAY,
) -> float:
    """A finite number of seconds within [minimum, maximum]: NaN compares false with
    everything, so without the explicit check it slips through every bound."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ctx.error(f"must be a number, not {_type_name(v)}", svc, f)
    if isinstance(v, float) and not math.isfinite(v):
        raise ctx.error(f"must be a finite number, got {v}", svc, f)
    if v < minimum:
        raise ctx.error(f"must be at least {minimum:g}, got {_short(v)}", svc, f)
    if v > maximum:
        limit = f"{maximum:g}" + (" (one day)" if maximum == DAY else "")
        raise ctx.error(f"must be at most {limit}, got {_short(v)}", svc, f)
    return float(v)


def _short(v: int | float) -> str:
    """A number as the user wrote it, cut short: a 4,000-digit integer is not a message."""
    if abs(v) < 10**30:
        return str(v)
    return f"{float(v):g}" if abs(v) < 10**300 else "a number with hundreds of digits"


def want_int(
    ctx: FileContext, v: Any, svc: str | None, f: str, lo: int = 0, hi: int = 2**31
) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ctx.error(f"must be an integer, not {_type_name(v)}", svc, f)
    if not lo <= v <= hi:
        raise ctx.error(f"must be between {lo} and {hi}, got {_short(v)}", svc, f)
    return v


def want_port(ctx: FileContext, v: Any, svc: str | None, f: str) -> int:
    return want_int(ctx, v, svc, f, 1, 65535)


def want_str_list(ctx: FileContext, v: Any, svc: str | None, f: str) -> tuple[str, ...]:
    if isinstance(v, list):
        odd = next((n for n, x in enumerate(v, 1) if not isinstance(x, str)), None)
        if odd is not None:  # "not a list", of a list, said nothing (adv30 q's notes)
            item = v[odd - 1]
            hint = ""
            if isinstance(item, int | float) and not isinstance(item, bool):
                # It said "8080" whatever the number; an integer's own spelling is not
                # kept (0o755 read 493, adv32 u/2), so it is shown only for a float
                hint = (f' (quote it: "{item.written}")' if isinstance(item, WrittenFloat)
                        else " (write it in quotes, as a string)")
            raise ctx.error(f"must be a list of strings; item {odd} is "
                            f"{_type_name(v[odd - 1])}{hint}", svc, f)
        return tuple(v)
    hint = ' (write a list such as ["python3", "app.py"]; no shell is used)' if (
        f == "command" and isinstance(v, str)
    ) else ""
    raise ctx.error(f"must be a list of strings, not {_type_name(v)}{hint}", svc, f)


def want_str_table(
    ctx: FileContext, v: Any, svc: str | None, f: str
) -> tuple[tuple[str, str], ...]:
    if not isinstance(v, dict):
        raise ctx.error(f"must be a table of strings, not {_type_name(v)}", svc, f)
    out = []
    for key, val in v.items():
        if isinstance(val, bool) or not isinstance(val, str | int | float):
            # A table under it (`[env.sub]`) is found at its own header: the error named
            # line 1, the [stack] header (adv29 n/1); a service's key at its own line.
            where = f"{f}.{key}" if svc is not None or isinstance(val, dict) else f
            raise ctx.error(f"value of '{key}' must be a string, not {_type_name(val)}", svc,
                            where)
        where = f"{f}.{key}" if svc is not None else f
        if isinstance(val, float) and not math.isfinite(val):
            raise ctx.error(f"value of '{key}' must be a string or a finite number, got {val}",
                            svc, where)
        if isinstance(val, int) and not isinstance(val, bool) and abs(val) >= 10**30:
            raise ctx.error(f"value of '{key}' is too large a number; quote it as a string",
                            svc, where)
        out.append((key, val if isinstance(val, str) else as_written(val)))
    return tuple(out)


def want_env(ctx: FileContext, v: Any, svc: str | None, f: str) -> tuple[tuple[str, str], ...]:
    """Environment variables: the kernel takes `NAME=value` strings, so a name that is
    empty or holds '=' cannot be passed on (exec refuses it, and the child never starts)."""
    pairs = want_str_table(ctx, v, svc, f)
    for key, _ in pairs:
        at = f"{f}.{key}" if svc is not None else None  # the key's own line (adv56 5)
        if not key:
            raise ctx.error("has an empty variable name", svc, f, at)
        if "=" in key:
            raise ctx.error(f"variable name {key!r} contains '=' (names cannot hold it; "
                            "write NAME = \"value\")", svc, f, at)
    return pairs


def want_globs(ctx: FileContext, v: Any, svc: str | None, f: str) -> tuple[str, ...]:
    """Relative glob patterns, refused here with the rules Path.glob would raise on later,
    inside the daemon's file watcher."""
    patterns = want_str_list(ctx, v, svc, f)
    for pattern in patterns:
        if "${" in pattern:  # taken as text, it matched nothing, and nothing said so
            raise ctx.error(f"pattern {pattern!r}: variables (${{...}}) are not expanded in "
                            "watch patterns; write the path relative to the service's cwd",
                            svc, f)
        if re.search(r"\{[^{}]*,[^{}]*\}", pattern):
            raise ctx.error(f"pattern {pattern!r}: braces ({{a,b}}) are not glob syntax here; "
                            "list each pattern on its own (\"src/*.ts\", \"src/*.tsx\")", svc, f)
        path = PurePosixPath(pattern)
        if path.is_absolute():
            raise ctx.error(f"pattern {pattern!r} must be relative to the service's cwd",
                            svc, f)
        if not path.parts:
            raise ctx.error(f"pattern {pattern!r} matches nothing; write e.g. \"src/**/*.py\"",
                            svc, f)
        if any("**" in part and part != "**" for part in path.parts):
            raise ctx.error(f"pattern {pattern!r}: '**' can only be a whole path component "
                            "(e.g. \"src/**/*.py\")", svc, f)
        if globs.parts(pattern).count("**") > globs.MAX_DOUBLE_STARS:
            raise ctx.error(f"pattern {pattern!r} has more than {globs.MAX_DOUBLE_STARS} "
                            "'**': one is enough to reach any depth", svc, f)
        wild = [globs.is_wild(part) for part in path.parts]
        if any(part == ".." and any(wild[:n]) for n, part in enumerate(path.parts)):
            raise ctx.error(f"pattern {pattern!r}: '..' after a wildcard climbs to folders "
                            "the pattern cannot name; put any '..' first (\"../lib/*.py\")",
                            svc, f)
        try:
            globs.glob_regex(pattern)
        except re.error as exc:
            raise ctx.error(f"pattern {pattern!r} is not a valid glob: {exc}", svc, f) from None
    return patterns


def want_url_path(ctx: FileContext, v: Any, svc: str | None, f: str) -> str:
    """A path for an HTTP request line: it starts with '/' and holds no spaces or control
    characters, which would split or corrupt the request."""
    path = want_str(ctx, v, svc, f)
    if "${" in path:
        raise ctx.error(f"{path!r}: variables (${{...}}) are not expanded in a path; "
                        "write it as the service serves it (\"/healthz\")", svc, f)
    if not (path.startswith("/") and path.isascii() and path.isprintable() and " " not in path):
        raise ctx.error(f"{path!r} must be a URL path: start with '/', printable ASCII, "
                        "no spaces", svc, f)
    parts = _DOT_ESCAPE.sub(".", path.split("?", 1)[0]).split("/")
    if _NOT_URL.search(path) or _BAD_ESCAPE.search(path) or \
            any(part in (".", "..") for part in parts):
        # each is sent as written and read by the service's server its own way (adv41
        # I/4; `%2e%2e`, `\` and `{|}^` too, adv42 T/4)
        raise ctx.error(f"{path!r} must be a URL path as a request sends it: no '#' (a "
                        "fragment is never sent), no \\, {, }, |, ^, ` or quotes, '%' "
                        "only before two hex digits, no '.' or '..' parts (nor '%2e')",
                        svc, f)
    return path


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NOT_URL = re.compile(r"[#\\{}|^`\"<>]")
"""What RFC 3986 allows in no part of a path or query (`#` starts a fragment)."""
_DOT_ESCAPE = re.compile(r"%2[eE]")


def want_choice_list(
    ctx: FileContext, v: Any, svc: str | None, f: str, choices: tuple[str, ...] | None
) -> tuple[str, ...]:
    """Names from `choices`, or (None) names as `[profiles.NAME]` takes them: `[""]` or
    `["web "]` named a profile no `--profile` could choose."""
    items = want_str_list(ctx, v, svc, f)
    for item in items:
        if choices is not None and item not in choices:
            raise ctx.error(f"'{item}' is not one of {', '.join(choices)}", svc, f)
        if choices is None and not SERVICE_NAME.match(item):
            raise ctx.error(f"{item!r} is not a name: names start with a letter and hold "
                            "letters, digits, _ or -", svc, f)
    return items


Checker = Callable[[FileContext, Any, str | None, str], Any]
