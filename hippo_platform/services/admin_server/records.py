"""Index settings and merchandising rules as DynamoDB items (the tables on moto).

Item layout, the contract the event pipe, the exporters and global_worker read:
- settings: `pk=INDEX#{index}`, `sk=SETTINGS`, `indexName`, `settings` (a map, the
  JSON object as sent), `updatedAt`, `updatedBy`.
- rules: `pk=RULE#{ruleId}`, `sk=INDEX#{index}`, `ruleId`, `indexName`, `action`,
  `documentId`, `query`, `updatedAt`, `updatedBy`. The table's key is pk+sk, so the
  same rule id under two indexes is two rules.

Listing an index's rules is a filtered scan: the provisioned tables have no secondary
index, and a local stack holds few rules. Every failed call becomes an HttpError
here, from the AWS error code common.aws_lite reports: a missing table is a 503
(provisioning has not run), an unreachable endpoint a 502 naming it, a value DynamoDB
refuses a 400. Items are converted as boto3's TypeSerializer would (aws_lite_dynamo),
so what is stored is what the boto3 version stored.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hippo_platform.services.common import BadGateway, BadRequest, ServiceUnavailable
from hippo_platform.services.common.aws_lite import AwsClient, AwsError
from hippo_platform.services.common.aws_lite_dynamo import (
    DynamoTypeError,
    check_nesting,
    marshal,
    unmarshal,
)
from hippo_platform.services.common.errors import HttpError

SETTINGS_SK = "SETTINGS"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_dynamo(value: Any, _depth: int = 0) -> Any:
    """JSON values as DynamoDB accepts them: numbers as Decimal (it refuses floats).
    The depth is checked on the way down: a settings object 500 levels deep was a
    RecursionError here, a 500 with a traceback (adv28 k/1)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest("NaN and Infinity cannot be stored")
        return Decimal(repr(value))
    if isinstance(value, dict):
        check_nesting(_depth + 1)
        return {k: to_dynamo(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        check_nesting(_depth + 1)
        return [to_dynamo(v, _depth + 1) for v in value]
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
    try:
        return {k: marshal(to_dynamo(v)) for k, v in values.items()}
    except DynamoTypeError as exc:  # a number with more than 38 digits, a value too deep
        raise BadRequest(f"DynamoDB cannot store the item: {exc}") from None


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: from_dynamo(unmarshal(v)) for k, v in item.items()}


def _http_error(problem: AwsError, table: str) -> HttpError:
    if problem.code == "ResourceNotFoundException":
        return ServiceUnavailable(
            f"table {table} does not exist on the AWS endpoint: has aws_provision run "
            "for this table prefix?"
        )
    if problem.code == "ValidationException":
        return BadRequest(f"DynamoDB refused the item: {problem.sentence}")
    return BadGateway(problem.sentence, extra={"peer": "dynamodb"})


class Records:
    def __init__(self, ddb: AwsClient, settings_table: str, rules_table: str) -> None:
        self.ddb = ddb
        self.settings_table = settings_table
        self.rules_table = rules_table

    def _call(self, table: str, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.ddb.call("dynamodb", operation, {"TableName": table, **body})
        except AwsError as exc:
            raise _http_error(exc, table) from None

    def check_tables(self) -> list[str]:
        """Problems with either table, as sentences (empty when both are there)."""
        problems = []
        for table in (self.settings_table, self.rules_table):
            try:
                self._call(table, "DescribeTable", {})
            except HttpError as exc:
                problems.append(exc.message)
        return problems

    # -- settings ------------------------------------------------------------------

    def get_settings(self, index: str) -> dict[str, Any] | None:
        key = _item({"pk": f"INDEX#{index}", "sk": SETTINGS_SK})
        table = self.settings_table
        item = self._call(table, "GetItem", {"Key": key}).get("Item")
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
        self._call(table, "PutItem", {"Item": item})
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
        answer = self._call(table, "PutItem", {"Item": item, "ReturnValues": "ALL_OLD"})
        return _rule_view(values), not answer.get("Attributes")

    def get_rule(self, index: str, rule_id: str) -> dict[str, Any] | None:
        key = _item({"pk": f"RULE#{rule_id}", "sk": f"INDEX#{index}"})
        table = self.rules_table
        item = self._call(table, "GetItem", {"Key": key}).get("Item")
        return _rule_view(_plain(item)) if item else None

    def delete_rule(self, index: str, rule_id: str) -> bool:
        """False when there was no such rule."""
        key = _item({"pk": f"RULE#{rule_id}", "sk": f"INDEX#{index}"})
        table = self.rules_table
        answer = self._call(table, "DeleteItem", {"Key": key, "ReturnValues": "ALL_OLD"})
        return bool(answer.get("Attributes"))

    def list_rules(self, index: str) -> list[dict[str, Any]]:
        table = self.rules_table
        args: dict[str, Any] = {
            "FilterExpression": "begins_with(pk, :rule) AND indexName = :index",
            "ExpressionAttributeValues": _item({":rule": "RULE#", ":index": index}),
        }
        rules: list[dict[str, Any]] = []
        while True:
            page = self._call(table, "Scan", args)
            rules.extend(_rule_view(_plain(item)) for item in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return sorted(rules, key=lambda r: str(r["ruleId"]))
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _settings_view(values: dict[str, Any]) -> dict[str, Any]:
    return {k: values.get(k) for k in ("indexName", "settings", "updatedAt", "updatedBy")}


RULE_FIELDS = ("ruleId", "indexName", "action", "documentId", "query", "updatedAt", "updatedBy")


def _rule_view(values: dict[str, Any]) -> dict[str, Any]:
    return {k: values.get(k) for k in RULE_FIELDS}
