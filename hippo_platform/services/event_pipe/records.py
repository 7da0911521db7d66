"""A DynamoDB stream record as the EventBridge event the real pipe would publish.

The shape is the reference README's: `source: marqo.dynamodb`, `detail-type:
<Prefix>.<INSERT|MODIFY|REMOVE>`, `detail: {eventName, tableName, keys, newImage,
oldImage}` with keys and images in DynamoDB JSON, inside the usual EventBridge
envelope (id, time, account, region, resources) so a consumer written against real
EventBridge deliveries reads these unchanged. An image the record lacks (no newImage
on REMOVE, no oldImage on INSERT) is null rather than absent, so every event has the
same five detail fields.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

SOURCE = "marqo.dynamodb"


class Source(NamedTuple):
    """One table the pipe follows, and where its changes go."""

    table: str
    detail_type_prefix: str  # EcomIndexSettings | Merchandising
    bus: str


def to_event(record: dict[str, Any], source: Source, stream_arn: str) -> dict[str, Any]:
    change = record.get("dynamodb") or {}
    event_name = str(record.get("eventName") or "MODIFY")
    arn_parts = stream_arn.split(":")
    region = arn_parts[3] if len(arn_parts) > 4 else str(record.get("awsRegion") or "")
    account = arn_parts[4] if len(arn_parts) > 4 else ""
    return {
        "version": "0",
        "id": str(record.get("eventID") or uuid.uuid4()),
        "detail-type": f"{source.detail_type_prefix}.{event_name}",
        "source": SOURCE,
        "account": account,
        "time": _iso(change.get("ApproximateCreationDateTime")),
        "region": region,
        "resources": [stream_arn],
        "detail": {
            "eventName": event_name,
            "tableName": source.table,
            "keys": plain(change.get("Keys") or {}),
            "newImage": plain(change["NewImage"]) if "NewImage" in change else None,
            "oldImage": plain(change["OldImage"]) if "OldImage" in change else None,
        },
    }


def plain(value: Any) -> Any:
    """DynamoDB JSON made JSON-able. On the wire binary is already base64 text; bytes
    (what boto3 hands out) are turned back into it, so either source gives one shape."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [plain(v) for v in value]
    return value


def key_text(keys: dict[str, Any]) -> str:
    """`INDEX#abc/SETTINGS`: the item's key values for a log line."""
    first = [k for k in ("pk", "sk") if k in keys]
    names = first + sorted(k for k in keys if k not in first)
    values = []
    for name in names:
        attr = keys[name]
        values.append(str(next(iter(attr.values()))) if isinstance(attr, dict) and attr else "?")
    return "/".join(values)


def epoch_seconds(value: Any) -> float | None:
    """A timestamp from a JSON-protocol answer (epoch seconds; ISO 8601 text from some
    servers; a datetime from boto3) as epoch seconds, None when there is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    when: datetime | None = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _iso(value: Any) -> str:
    seconds = epoch_seconds(value)
    when = datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
