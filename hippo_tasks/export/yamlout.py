"""A tiny YAML emitter for manifests: block style, every string double-quoted.

Kubernetes objects are dicts, lists, strings, ints and bools. A string is written bare
only when no YAML reader could take it for anything else (a letter or `/` first, then
letters, digits and `_./-`, and not one of YAML 1.1's words for booleans and null);
every other string is double-quoted with JSON's escapes (JSON strings are valid YAML),
so `"true"`, `"9000"`, `"on"` and `"a: b"` stay strings. No dependency: PyYAML is not
among the runtime requirements.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_PLAIN = re.compile(r"[A-Za-z/][A-Za-z0-9_./-]*")
"""Matched whole (fullmatch: `$` would also match before a final newline, and "A\n"
would go out bare and read back as "A")."""
_UNPRINTABLE = re.compile("[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe"
                          "\uff00-\ufffd\U00010000-\U0010ffff]")
"""What YAML may not hold as it is, escaped: DEL, C1 controls, lone surrogates, and
what YAML 1.1 readers take for line breaks (NEL, U+2028/9) or a byte-order mark."""
_WORDS = frozenset(("y", "n", "yes", "no", "on", "off", "true", "false", "null"))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value if _bare(value) else _quoted(value)
    if value is None:
        return "null"
    raise TypeError(f"cannot write {type(value).__name__} as YAML: {value!r}")


def _bare(text: str) -> bool:
    return bool(_PLAIN.fullmatch(text)) and text.lower() not in _WORDS


def _key(key: str) -> str:
    return key if _bare(key) else _quoted(key)


def _quoted(text: str) -> str:
    def escape(match: re.Match[str]) -> str:
        code = ord(match.group(0))
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    return _UNPRINTABLE.sub(escape, json.dumps(text, ensure_ascii=False))


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        out: list[str] = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"mapping key must be a string, got {k!r}")
            if _is_block(v):
                out.append(f"{pad}{_key(k)}:")
                out.extend(_lines(v, indent + 2))
            else:
                out.append(f"{pad}{_key(k)}: {_inline(v)}")
        return out
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            if _is_block(item):
                inner = _lines(item, indent + 2)
                out.append(f"{pad}- {inner[0].lstrip()}")
                out.extend(inner[1:])
            else:
                out.append(f"{pad}- {_inline(item)}")
        return out
    return [pad + _scalar(value)]


def _is_block(value: Any) -> bool:
    if isinstance(value, Mapping):
        return bool(value)
    return isinstance(value, Sequence) and not isinstance(value, str) and bool(value)


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[]"
    return _scalar(value)


def dump(obj: Mapping[str, Any]) -> str:
    """One YAML document (no `---`), ending with a newline."""
    return "\n".join(_lines(obj, 0)) + "\n"


def dump_all(objects: Iterable[Mapping[str, Any]], header: str = "") -> str:
    """A multi-document stream; `header` lines become comments at the top."""
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comment + "".join("---\n" + dump(obj) for obj in objects)
