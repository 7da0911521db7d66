"""Checking an EventBridge event from a DynamoDB stream, and reading DynamoDB JSON.

Everything here turns a malformed event into a `BadRequest` naming the field, because
the exporters are fed by hand (`hd events.send`, curl) as much as by event_pipe,
and a typo must come back as a 400 that says what is wrong, never a 500.
"""

from __future__ import annotations

import decimal
from typing import Any, NamedTuple
from urllib.parse import quote

from hippo_platform.services.common import BadRequest

EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")
KEY_ORDER = ("pk", "sk")  # the tables' own key names, first in the object key
MAX_DEPTH = 32
MAX_KEY_BYTES = 1024  # S3's limit on an object key
_KEY_SAFE = "#=@:+-_.,~!$&'()*;"  # kept readable in the object key; '/' is escaped


class StreamEvent(NamedTuple):
    detail_type: str
    event_name: str
    table_name: str
    keys: dict[str, Any]  # plain values, in key order
    new_item: dict[str, Any] | None
    old_item: dict[str, Any] | None
    event_id: str | None


def parse_event(body: Any, detail_type_prefix: str) -> StreamEvent:
    """The event a POST /events body describes, or a 400 naming the first problem."""
    if not isinstance(body, dict):
        raise BadRequest("the event must be a JSON object")
    detail_type = body.get("detail-type")
    if not isinstance(detail_type, str) or not detail_type:
        raise BadRequest("Missing 'detail-type' field in event")
    if not detail_type.startswith(detail_type_prefix):
        raise BadRequest(
            f"this exporter takes '{detail_type_prefix}*' events, got detail-type "
            f"'{detail_type}'"
        )
    detail = body.get("detail")
    if not isinstance(detail, dict):
        raise BadRequest("field 'detail' is required and must be a JSON object")
    event_name = detail.get("eventName")
    if event_name not in EVENT_NAMES:
        raise BadRequest(f"field 'detail.eventName' must be one of {', '.join(EVENT_NAMES)}")
    table_name = detail.get("tableName", "")
    if not isinstance(table_name, str):
        raise BadRequest("field 'detail.tableName' must be a string")
    raw_keys = detail.get("keys")
    if not isinstance(raw_keys, dict) or not raw_keys:
        raise BadRequest("field 'detail.keys' is required: a non-empty object in DynamoDB JSON")
    keys = {}
    for name in ordered_key_names(raw_keys):
        value = unmarshal(raw_keys[name], f"detail.keys.{name}")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise BadRequest(f"field 'detail.keys.{name}' must be a string, number or binary")
        keys[name] = value
    event_id = body.get("id")
    return StreamEvent(
        detail_type=detail_type,
        event_name=event_name,
        table_name=table_name,
        keys=keys,
        new_item=_image(detail, "newImage"),
        old_item=_image(detail, "oldImage"),
        event_id=event_id if isinstance(event_id, str) else None,
    )


def _image(detail: dict[str, Any], field: str) -> dict[str, Any] | None:
    raw = detail.get(field)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest(f"field 'detail.{field}' must be an object in DynamoDB JSON or null")
    return {name: unmarshal(value, f"detail.{field}.{name}") for name, value in raw.items()}


def ordered_key_names(keys: dict[str, Any]) -> list[str]:
    """pk, then sk, then any other key attribute by name: a stable object key."""
    first = [k for k in KEY_ORDER if k in keys]
    return first + sorted(k for k in keys if k not in KEY_ORDER)


def object_key(folder: str, keys: dict[str, Any]) -> str:
    """`settings/INDEX#abc/SETTINGS.json`: one path segment per key value, in key order.

    A '/' inside a value is escaped so one value never becomes two folders, and two
    different items can never share an object.
    """
    segments = [quote(_key_text(v), safe=_KEY_SAFE) for v in keys.values()]
    key = f"{folder}/{'/'.join(segments)}.json"
    if len(key.encode()) > MAX_KEY_BYTES:
        raise BadRequest(f"the item's keys make an S3 key over {MAX_KEY_BYTES} bytes")
    return key


def _key_text(value: Any) -> str:
    text = str(value)
    return text if text not in (".", "..") else text.replace(".", "%2E")


def unmarshal(value: Any, where: str, depth: int = 0) -> Any:
    """One DynamoDB JSON attribute value (`{"S": "x"}`, `{"N": "1"}`...) as plain JSON.

    Numbers become int when integral, else float; binary stays its base64 text; sets
    become lists. Anything that is not exactly one known type tag is a 400.
    """
    if depth > MAX_DEPTH:
        raise BadRequest(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if not isinstance(value, dict) or len(value) != 1:
        raise BadRequest(f"{where}: expected a DynamoDB attribute value like {{\"S\": \"...\"}}")
    ((tag, inner),) = value.items()
    if tag in ("S", "B"):
        return _expect(inner, str, where, tag)
    if tag == "N":
        return _number(_expect(inner, str, where, tag), where)
    if tag == "BOOL":
        return _expect(inner, bool, where, tag)
    if tag == "NULL":
        if inner is not True:
            raise BadRequest(f"{where}: NULL must be true")
        return None
    if tag in ("SS", "BS"):
        items = _expect(inner, list, where, tag)
        return [_expect(i, str, where, tag) for i in items]
    if tag == "NS":
        items = _expect(inner, list, where, tag)
        return [_number(_expect(i, str, where, tag), where) for i in items]
    if tag == "L":
        items = _expect(inner, list, where, tag)
        return [unmarshal(v, f"{where}[{n}]", depth + 1) for n, v in enumerate(items)]
    if tag == "M":
        fields = _expect(inner, dict, where, tag)
        return {k: unmarshal(v, f"{where}.{k}", depth + 1) for k, v in fields.items()}
    raise BadRequest(f"{where}: unknown DynamoDB type {tag!r}")


def _expect(value: Any, kind: type, where: str, tag: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadRequest(f"{where}: {tag} must hold a {kind.__name__}")
    return value


DIGITS = 38
"""DynamoDB keeps numbers to 38 significant digits, with magnitudes from 1E-130 to
below 1E+126: what a stream record can carry."""


def _number(text: str, where: str) -> int | float | decimal.Decimal:
    """The number as exactly as JSON can write it: an int, a float when the float is
    the same number, else the Decimal itself (store.put writes its digits). `1e400` was
    written to S3 as `Infinity`, which is no JSON, and 38-digit numbers were rounded."""
    try:
        number = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise BadRequest(f"{where}: {text!r} is not a number") from None
    if not number.is_finite():
        raise BadRequest(f"{where}: {text!r} is not a finite number")
    significant = "".join(map(str, number.as_tuple().digits)).strip("0")  # (normalize()
    magnitude = number.adjusted() if number else 0                     # rounds to 28)
    if len(significant) > DIGITS or not -130 <= magnitude <= 125:
        raise BadRequest(f"{where}: {text!r} is not a number DynamoDB holds (at most "
                         f"{DIGITS} significant digits, magnitude 1E-130 to 9.9E+125)")
    if number == number.to_integral_value() and "e" not in text.lower() and "." not in text:
        return int(number)
    as_float = float(number)
    return as_float if decimal.Decimal(repr(as_float)) == number else number
