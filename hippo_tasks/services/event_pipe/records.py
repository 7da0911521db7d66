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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SOURCE = "marqo.dynamodb"


@dataclass(frozen=True)
class Source:
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
    """DynamoDB JSON as boto3 returns it, made JSON-able: binary back to base64 text."""
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


def _iso(value: Any) -> str:
    when = value if isinstance(value, datetime) else datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
