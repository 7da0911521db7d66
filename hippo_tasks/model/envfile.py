"""`env_file`: the `.env` files people already have, read the way docker compose reads them.

`NAME=value` per line; blank lines and `#` comments skipped; an optional `export `;
'single quotes' keep everything literally, "double quotes" understand \\n, \\t, \\" and
\\\\; an unquoted value ends at ` #`. `${...}` in values is expanded later, by the same
renderer as `env`, so `${url:db}` works in a .env file too.
"""

from __future__ import annotations

import re
from pathlib import Path

from hippo_tasks.errors import StackFileError
from hippo_tasks.model.textfile import Unusable, not_utf8, read_small_text
from hippo_tasks.terminal_text import as_typed

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*\Z")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$$"}


def read_env_file(path: Path, service: str) -> list[tuple[str, str, int]]:
    """The file's variables in order, each with its line (for an error found later in its
    `${...}`, adv27 i/12); a StackFileError naming the file and line for a missing file
    or a line that is not NAME=value."""
    try:
        text = read_small_text(path)
    except FileNotFoundError:
        raise StackFileError(str(path), "env_file not found (paths are relative to the "
                             "project root)", service, "env_file") from None
    except Unusable as exc:
        raise StackFileError(str(path), f"env_file {exc}", service, "env_file") from None
    except UnicodeDecodeError as exc:
        raise StackFileError(str(path), f"env_file {not_utf8(exc)}", service,
                             "env_file") from None
    except OSError as exc:
        raise StackFileError(str(path), f"cannot read env_file: {exc}", service,
                             "env_file") from None
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            # Never the line itself: a pasted secret with no `=` went into CI logs whole
            # (adv52 J/5). The name, shown only with its `=`, is no value.
            what = (f"'{as_typed(name)}' before its '=' is not a variable name (a letter "
                    "or _ first, then letters, digits, _, . or -)" if sep else
                    "it has no '=' (its text is not shown here: it may hold a secret)")
            raise StackFileError(str(path), f"not a NAME=value line: {what}",
                                 service, "env_file", number)
        if "\0" in value:
            raise StackFileError(str(path), f"{name} contains a NUL byte", service,
                                 "env_file", number)
        try:
            out.append((name, _value(value), number))
        except ValueError as exc:
            raise StackFileError(str(path), f"{name}: {exc}", service, "env_file",
                                 number) from None
    return out


def _closing(value: str) -> int | None:
    """Where the quote `value` opens with closes (a double-quoted value's `\"` does
    not close it), or None when it does not on this line."""
    if value[0] == "'":
        end = value.find("'", 1)
        return end if end > 0 else None
    i = 1
    while i < len(value):
        if value[i] == "\\":
            i += 2
        elif value[i] == '"':
            return i
        else:
            i += 1
    return None


_COMMENT = re.compile(r"[ \t]#")


def _value(raw: str) -> str:
    """A ValueError for text after a closing quote that is not a comment, and for a quote
    that does not close on its line."""
    value = raw.strip()
    if value.startswith("#") and raw[:1] in (" ", "\t"):
        return ""  # `X= # fill me in`: a template's empty value, not "# fill me in" (i/2)
    end = _closing(value) if value[:1] in ("'", '"') else None
    if value[:1] in ("'", '"') and end is None:
        # `X="unterminated` reached the service with its quote; a value over several
        # lines (a PEM key) was blamed on its second line (adv27 i/2).
        raise ValueError(f"the {value[0]} that opens its value does not close on this line "
                         "(a value is one line: write a newline as \\n inside double quotes)")
    if end is not None:
        # `"postgres://..." # the local database`: the comment was taken off and the
        # quotes kept, so the service got a URL starting with `"` (adv26 g/2).
        rest = value[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise ValueError(f"text after the closing quote: {rest!r} (put it inside "
                             "the quotes, or start a comment with ' #')")
        value = value[:end + 1]
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("$", "$$")  # literal: no ${...} expansion either
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner, out, i = value[1:-1], [], 0
        while i < len(inner):
            ch = inner[i]
            if ch == "\\" and i + 1 < len(inner) and inner[i + 1] in _ESCAPES:
                out.append(_ESCAPES[inner[i + 1]])
                i += 2
                continue
            out.append(ch)
            i += 1
        return "".join(out)
    comment = _COMMENT.search(value)  # a tab before `#` too, as dotenv and compose read it
    return (value[:comment.start()] if comment else value).rstrip()
