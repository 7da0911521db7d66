"""`watch` globs: Path.glob's rules as one regex per pattern, and where a pattern starts.

Here, in the model, so the stack file's loader refuses what the watcher could not use
(a bad `[z-a]` range used to kill the watcher thread at its first event, and the daemon's
shutdown with it) and the plan checks where a pattern reaches with the very reading the
watcher makes of it.
"""

from __future__ import annotations

import os
import re

MAX_DOUBLE_STARS = 3
"""`**` components per pattern: each is `(?:[^/]+/)*`, and a path 24 folders deep
against fourteen of them backtracked for minutes inside the daemon's watcher."""


def parts(pattern: str) -> list[str]:
    """The components the watcher reads: normalised as os.path.normpath does."""
    return [p for p in os.path.normpath(pattern).split("/") if p not in ("", ".")]


def is_wild(part: str) -> bool:
    """A component with a wildcard in it (`*`, `?`, `[`)."""
    return any(ch in part for ch in "*?[")


def literal_folders(pattern: str) -> list[str]:
    """The folders before the first component with a wildcard (the file name aside)."""
    literal: list[str] = []
    for part in parts(pattern)[:-1]:
        if is_wild(part):
            break
        literal.append(part)
    return literal


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Path.glob's matching as one regex over a relative POSIX path."""
    out = []
    names = parts(pattern)
    for n, part in enumerate(names):
        last = n == len(names) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        out.append(_name_regex(part) + ("" if last else "/"))
    return re.compile("".join(out))


def _name_regex(name: str) -> str:
    """One path component, read as fnmatch reads it, except that `*` and `?` never
    cross a '/'; an unclosed '[' is a literal."""
    out, i, n = [], 0, len(name)
    while i < n:
        c = name[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + (i < n and name[i] == "!")
            j += j < n and name[j] == "]"
            while j < n and name[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
                continue
            body = name[i:j].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
    return "".join(out)
