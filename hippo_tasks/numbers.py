"""Numbers as a person types them: ASCII digits, an optional sign.

`int()` and `float()` also take `'٣'` (Arabic-Indic), `'１２'` (full-width) and `'1_0'`.
`HIPPODROME_PORT_OFFSET=٣` moved every port by 3 without a word, where the value was
most likely pasted from somewhere it did not mean a number; such a value is refused as
any other non-number is, with the caller's sentence.
"""

from __future__ import annotations


def plain_int(text: str) -> int:
    """`text` as an integer, or ValueError unless it is ASCII digits with a sign at most."""
    stripped = text.strip()
    digits = stripped[1:] if stripped[:1] in ("+", "-") else stripped
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"not an integer: {text!r}")
    return int(stripped)


def plain_float(text: str) -> float:
    """`text` as a float (`1.5`, `1e3`, `inf`), or ValueError for other scripts' digits
    and underscores."""
    if not text.isascii() or "_" in text:
        raise ValueError(f"not a number: {text!r}")
    return float(text)
