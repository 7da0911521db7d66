"""Index settings and merchandising rules as DynamoDB items (the tables on moto).

Item layout, the contract the event pipe, the exporters and global_worker read:
- settings: `pk=INDEX#{index}`, `sk=SETTINGS`, `indexName`, `settings` (a map, the
  JSON object as sent), `updatedAt`, `updatedBy`.
- rules: `pk=RULE#{ruleId}`, `sk=INDEX#{index}`, `ruleId`, `indexName`, `action`,
  `documentId`, `query`, `updatedAt`, `updatedBy`. The table's key is pk+sk, so the
  same rule id under two indexes is two rules.

Listing an index's rules is a filtered scan: the provisioned tables have no secondary
index, and a local stack holds few rules. Every botocore failure becomes an HttpError
here, worded by `events.aws.explain`: a missing table is a 503 (provisioning has not
run), an unreachable endpoint a 502 naming it, a value DynamoDB refuses a 400.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from hippo_tasks.events import aws
from hippo_tasks.services.common import BadGateway, BadRequest, ServiceUnavailable
from hippo_tasks.services.common.errors import HttpError

SETTINGS_SK = "SETTINGS"
T = TypeVar("T")
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_dynamo(value: Any) -> Any:
    """JSON values as DynamoDB accepts them: numbers as Decimal (it refuses floats)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest("NaN and Infinity cannot be stored")
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """And back: Decimals to int when integral, else float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [from_dynamo(v) for v in value]
    return value


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(to_dynamo(v)) for k, v in values.items()}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def _http_error(exc: Exception, table: str) -> HttpError:
    problem = aws.explain(exc, "dynamodb")
    if problem.code == "ResourceNotFoundException":
        return ServiceUnavailable(
            f"table {table} does not exist on the AWS endpoint: has aws_provision run "
            "for this table prefix?"
        )
    if problem.code == "ValidationException":
        return BadRequest(f"DynamoDB refused the item: {problem.sentence}")
    return BadGateway(problem.sentence, extra={"peer": "dynamodb"})


class Records:
    def __init__(self, ddb: Any, settings_table: str, rules_table: str) -> None:
        self.ddb = ddb
        self.settings_table = settings_table
        self.rules_table = rules_table

    def _call(self, table: str, step: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return step()
        except (BotoCoreError, ClientError) as exc:
            raise _http_error(exc, table) from None

    def check_tables(self) -> list[str]:
        """Problems with either table, as sentences (empty when both are there)."""
        problems = []
        for table in (self.settings_table, self.rules_table):
            try:
                self._call(table, partial(self.ddb.describe_table, TableName=table))
            except HttpError as exc:
                problems.append(exc.message)
        return problems

    # -- settings ------------------------------------------------------------------

    def get_settings(self, index: str) -> dict[str, Any] | None:
        key = _item({"pk": f"INDEX#{index}", "sk": SETTINGS_SK})
        table = self.settings_table
        answer = self._call(table, lambda: self.ddb.get_item(TableName=table, Key=key))
        item = answer.get("Item")
        return _settings_view(_plain(item)) if item else None

    def put_settings(self, index: str, settings: dict[str, Any], who: str) -> dict[str, Any]:
        values = {
            "pk": f"INDEX#{index}",
            "sk": SETTINGS_SK,
            "indexName": index,
            "settings": settings,
            "updatedAt": _now(),
            "updatedBy": who,
        }
        item, table = _item(values), self.settings_table
        self._call(table, lambda: self.ddb.put_item(TableName=table, Item=item))
        return _settings_view(values)

    # -- merchandising rules -------------------------------------------------------

    def put_rule(
        self, index: str, rule_id: str, rule: dict[str, str], who: str
    ) -> tuple[dict[str, Any], bool]:
        """The stored rule and whether it is new."""
        values = {
            "pk": f"RULE#{rule_id}",
            "sk": f"INDEX#{index}",
            "ruleId": rule_id,
            "indexName": index,
            **rule,
            "updatedAt": _now(),
            "updatedBy": who,
        }
        item, table = _item(values), self.rules_table
        answer = self._call(
            table,
            lambda: self.ddb.put_item(TableName=table, Item=item, ReturnValues="ALL_OLD"),
        )
        return _rule_view(values), not answer.get("Attributes")

    def get_rule(self, index: str, rule_id: str) -> dict[str, Any] | None:
        key = _item({"pk": f"RULE#{rule_id}", "sk": f"INDEX#{index}"})
        table = self.rules_table
        answer = self._call(table, lambda: self.ddb.get_item(TableName=table, Key=key))
        item = answer.get("Item")
        return _rule_view(_plain(item)) if item else None

    def delete_rule(self, index: str, rule_id: str) -> bool:
        """False when there was no such rule."""
        key = _item({"pk": f"RULE#{rule_id}", "sk": f"INDEX#{index}"})
        table = self.rules_table
        answer = self._call(
            table,
            lambda: self.ddb.delete_item(TableName=table, Key=key, ReturnValues="ALL_OLD"),
        )
        return bool(answer.get("Attributes"))

    def list_rules(self, index: str) -> list[dict[str, Any]]:
        table = self.rules_table
        args: dict[str, Any] = {
            "TableName": table,
            "FilterExpression": "begins_with(pk, :rule) AND indexName = :index",
            "ExpressionAttributeValues": _item({":rule": "RULE#", ":index": index}),
        }
        rules: list[dict[str, Any]] = []
        while True:
            page = self._call(table, lambda: self.ddb.scan(**args))
            rules.extend(_rule_view(_plain(item)) for item in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return sorted(rules, key=lambda r: str(r["ruleId"]))
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _settings_view(values: dict[str, Any]) -> dict[str, Any]:
    return {k: values.get(k) for k in ("indexName", "settings", "updatedAt", "updatedBy")}


RULE_FIELDS = ("ruleId", "indexName", "action", "documentId", "query", "updatedAt", "updatedBy")


def _rule_view(values: dict[str, Any]) -> dict[str, Any]:
    return {k: values.get(k) for k in RULE_FIELDS}
