"""DynamoDB JSON to Python and back, as boto3's TypeSerializer/TypeDeserializer do it.

Why a copy: those two live in boto3, and importing boto3 for them alone costs a
service what importing the whole SDK does. The rules are boto3's, so callers that
were written against it keep their behaviour: numbers come back as Decimal (never
float, which would lose digits), binary as bytes, sets as sets; floats are refused on
the way in (convert them to Decimal first, as admin_server's `to_dynamo` does), as is
any number DynamoDB could not store exactly (38 significant digits).
"""

from __future__ import annotations

import base64
import decimal
from collections.abc import Mapping, Set
from decimal import Decimal
from typing import Any

# DynamoDB's own number limits; a number they cannot hold exactly is refused, not rounded.
DYNAMODB_CONTEXT = decimal.Context(
    Emin=-128, Emax=126, prec=38, traps=[decimal.Clamped, decimal.Overflow, decimal.Inexact,
                                         decimal.Rounded, decimal.Underflow],
)


class DynamoTypeError(ValueError):
    """A value with no DynamoDB type, or a number DynamoDB cannot store exactly."""


def _number(value: int | Decimal) -> str:
    try:
        text = str(DYNAMODB_CONTEXT.create_decimal(value))
    except (decimal.Overflow, decimal.Underflow):  # 1e200 was said to have too many
        raise DynamoTypeError(f"{value} is outside the numbers DynamoDB stores (about "  # digits
                              "1E-130 to 1E+126 in size)") from None  # (adv29 o/9)
    except decimal.DecimalException:
        raise DynamoTypeError(f"{value} cannot be stored exactly in DynamoDB "
                              "(at most 38 significant digits)") from None
    if text in ("Infinity", "-Infinity", "NaN", "sNaN"):
        raise DynamoTypeError("Infinity and NaN are not supported by DynamoDB")
    return text


MAX_NESTING = 32
"""DynamoDB's limit on nested maps and lists in one attribute. Held here, not left to
the endpoint: moto stores deeper values that DynamoDB refuses, and past ~300 levels
fails with a 500 of its own (adv28 k/1)."""


def check_nesting(depth: int) -> None:
    if depth > MAX_NESTING:
        raise DynamoTypeError(f"a value nested more than {MAX_NESTING} levels deep "
                              "(DynamoDB's limit on nested maps and lists)")


def marshal(value: Any, _depth: int = 0) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute value on the wire (`{"S": "x"}`)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": _number(value)}
    if isinstance(value, float):
        raise DynamoTypeError("float values are not supported: use Decimal")
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray):
        return {"B": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Set):
        return _set(value)
    if isinstance(value, Mapping):
        check_nesting(_depth + 1)
        return {"M": {str(k): marshal(v, _depth + 1) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        check_nesting(_depth + 1)
        return {"L": [marshal(v, _depth + 1) for v in value]}
    raise DynamoTypeError(f"unsupported type {type(value).__name__} for a DynamoDB value")


def _set(values: Set[Any]) -> dict[str, Any]:
    items = list(values)
    if items and all(isinstance(v, str) for v in items):
        return {"SS": items}
    if items and all(isinstance(v, int | Decimal) and not isinstance(v, bool) for v in items):
        return {"NS": [_number(v) for v in items]}
    if items and all(isinstance(v, bytes | bytearray) for v in items):
        return {"BS": [base64.b64encode(bytes(v)).decode("ascii") for v in items]}
    raise DynamoTypeError("a set must be non-empty and hold only strings, numbers or bytes")


def marshal_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: marshal(value) for name, value in values.items()}


def unmarshal(attr: Mapping[str, Any]) -> Any:
    """One attribute value from the wire as Python: Decimal, bytes, set, list, dict..."""
    if len(attr) != 1:
        raise DynamoTypeError(f"not a DynamoDB attribute value: {dict(attr)!r:.80}")
    ((tag, inner),) = attr.items()
    if tag == "S":
        return inner
    if tag == "N":
        return DYNAMODB_CONTEXT.create_decimal(inner)
    if tag == "B":
        return base64.b64decode(inner)
    if tag == "BOOL":
        return bool(inner)
    if tag == "NULL":
        return None
    if tag == "M":
        return {k: unmarshal(v) for k, v in inner.items()}
    if tag == "L":
        return [unmarshal(v) for v in inner]
    if tag == "SS":
        return set(inner)
    if tag == "NS":
        return {DYNAMODB_CONTEXT.create_decimal(v) for v in inner}
    if tag == "BS":
        return {base64.b64decode(v) for v in inner}
    raise DynamoTypeError(f"unknown DynamoDB type {tag!r}")


def unmarshal_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: unmarshal(value) for name, value in item.items()}
