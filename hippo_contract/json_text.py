"""JSON that Python reads but cannot write back: a lone UTF-16 surrogate.

`json.loads('"\\ud800"')` gives a str holding half of a UTF-16 pair, which no UTF-8
encoder takes: whatever accepted it failed later, where it wrote the value out (an
answer, a journal line, a record), with a 500 or a connection closed unanswered, and a
queue holding it stalled (adv28 k/3). The daemon and every bundled service refuse it
where they read the body, with the same sentence.
"""

from __future__ import annotations

import json
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
