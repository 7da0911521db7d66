"""JSON that Python reads but cannot write back: a lone UTF-16 surrogate, and nesting
deeper than a writer goes.

`json.loads('"\\ud800"')` gives a str holding half of a UTF-16 pair, which no UTF-8
encoder takes: whatever accepted it failed later, where it wrote the value out (an
answer, a journal line, a record), with a 500 or a connection closed unanswered, and a
queue holding it stalled (adv28 k/3). The daemon and every bundled service refuse both
where they read the body, with the same sentences.
"""

from __future__ import annotations

import json
import re
from typing import Any


def lone_surrogate(value: Any) -> str | None:
    """The escape (`\\ud800`) of the first lone surrogate in a decoded JSON value; None
    when it has none. Only an escape in the text can make one: callers look for `\\u`
    in the body first, so a body without one costs nothing here."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        half = exc.object[exc.start].encode("utf-16-le", "surrogatepass")
        return f"\\u{int.from_bytes(half, 'little'):04x}"
    return None


def surrogate_sentence(escape: str, noun: str) -> str:
    return (f"{escape} is half of a UTF-16 pair, not a character: send {noun} as valid "
            "Unicode (Python, JavaScript and EventBridge refuse to encode it)")


INT_DIGITS = 4300
"""Python's limit on an integer's digits in text (sys.get_int_max_str_digits), which
every JSON parser here has: the webhook's, the API's, `hd events.send`'s."""
_DIGITS = re.compile(r"value has (\d+) digits")


def digits_sentence(digits: int) -> str:
    """Why a whole number is refused, instead of Python's advice to raise its limit
    (`use sys.set_int_max_str_digits()`), which is for a programmer, not for the
    person sending it (adv25 e/4, adv35 y/6)."""
    return (f"an integer of {digits} digits, over the {INT_DIGITS} a number may have "
            "here; send it as a string")


def too_many_digits(error: ValueError) -> str | None:
    """digits_sentence for Python's own error about such a number, else None."""
    found = _DIGITS.search(str(error))
    return digits_sentence(int(found.group(1))) if found else None


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def nested_past(raw: bytes | str, limit: int) -> bool:
    """JSON nested deeper than `limit` levels of objects and lists. Without a limit of
    one's own the parser's recursion limit decides, which depends on how deep the
    parsing thread's stack already is, and a writer needs a few levels more than the
    reader: a body 979 levels deep was read, then failed to be written back (a 500 in
    the bundled services, adv29 o/8; a recording line the replay could not read, at the
    daemon). Strings are skipped whole: brackets in them do not count."""
    if isinstance(raw, bytes):
        if raw.count(b"[") + raw.count(b"{") <= limit:  # C speed: nearly every body
            return False
        raw = raw.decode("latin-1")  # byte for byte: the brackets and quotes are ASCII
    elif raw.count("[") + raw.count("{") <= limit:
        return False
    depth = 0
    for token in _TOKENS.finditer(raw):
        first = token.group()[0]
        if first in "[{":
            depth += 1
            if depth > limit:
                return True
        elif first in "]}":
            depth -= 1
    return False
