"""Merchandising rules: read from the table, cached briefly, applied to search hits.

The rule (documented, and what the tests pin down): a rule applies when its `query`
equals the search's `q`, compared case-insensitively after trimming, and only to the
first page (offset 0): later pages are the cell's ranking untouched, so a pinned
document is not repeated on every page.
- pin: the document comes first. If the search did not find it, it is fetched from the
  cell and inserted (with `_score` 0.0); a pinned id the cell does not have is skipped.
  Several pins keep the order of their rule ids.
- bury: the document, if among the hits, moves to the end of the page (it is not
  removed). A document both pinned and buried stays pinned.
The page never grows past the search's `limit`: an inserted pin pushes the last hit out.
Merchandised hits carry `_merchandising: "pinned"|"buried"`.

The whole table is scanned at most once per TTL (1 s by default) and shared by every
index and request thread: rules changed through admin_server apply within a second.
When the scan fails, the last good rules are used (none if there never were any) and
the response says why under `merchandising.error`: search keeps working without moto.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from hippo_platform.services.common.aws_lite import AwsClient, AwsError
from hippo_platform.services.common.aws_lite_dynamo import DynamoTypeError, unmarshal_item
from hippo_platform.services.common.log import log_error

Fetch = Callable[[str], dict[str, Any] | None]


class Rule:
    """One merchandising rule (a plain class: a NamedTuple's `index` is tuple.index)."""

    __slots__ = ("rule_id", "index", "action", "document_id", "query")

    def __init__(self, rule_id: str, index: str, action: str, document_id: str,
                 query: str) -> None:
        self.rule_id = rule_id
        self.index = index
        self.action = action
        self.document_id = document_id
        self.query = query

    def __repr__(self) -> str:
        return (f"Rule({self.rule_id!r}, {self.index!r}, {self.action!r}, "
                f"{self.document_id!r}, {self.query!r})")


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


class RulesCache:
    def __init__(self, dynamo: AwsClient, table: str, *, ttl: float = 1.0) -> None:
        self.dynamo = dynamo
        self.table = table
        self.ttl = ttl
        self._lock = threading.Lock()  # one scan at a time; the others wait and reuse it
        self._by_index: dict[str, list[Rule]] = {}
        self._fetched = float("-inf")
        self._error: str | None = None

    def rules(self, index: str) -> tuple[list[Rule], str | None]:
        """The index's rules and, when the last scan failed, why."""
        with self._lock:
            if time.monotonic() - self._fetched >= self.ttl:
                self._refresh()
            return self._by_index.get(index, []), self._error

    def _refresh(self) -> None:
        self._fetched = time.monotonic()  # a failure is also not retried within the TTL
        try:
            items = scan_all(self.dynamo, self.table)
        except (AwsError, DynamoTypeError) as exc:
            if self._error is None:
                log_error(f"global_worker: cannot read rules from {self.table}: {exc}")
            self._error = str(exc)
            return
        by_index: dict[str, list[Rule]] = {}
        for item in items:
            rule = _rule(item)
            if rule is not None:
                by_index.setdefault(rule.index, []).append(rule)
        for rules in by_index.values():
            rules.sort(key=lambda r: r.rule_id)
        self._by_index, self._error = by_index, None


def scan_all(dynamo: AwsClient, table: str) -> list[dict[str, Any]]:
    """Every item of `table` (numbers as Decimal, as boto3 gives them), page by page."""
    items: list[dict[str, Any]] = []
    body: dict[str, Any] = {"TableName": table}
    while True:
        page = dynamo.call("dynamodb", "Scan", body)
        items.extend(unmarshal_item(item) for item in page.get("Items") or [])
        if not page.get("LastEvaluatedKey"):
            return items
        body["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _rule(item: dict[str, Any]) -> Rule | None:
    """A well-formed rule item, else None (a bad item must not break every search)."""
    fields = [item.get(k) for k in ("ruleId", "indexName", "action", "documentId", "query")]
    if not all(isinstance(f, str) and f for f in fields):
        return None
    rule = Rule(*(str(f) for f in fields))
    return rule if rule.action in ("pin", "bury") else None


def apply_rules(
    hits: list[dict[str, Any]], rules: list[Rule], q: str, limit: int, fetch: Fetch
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The re-ordered page and the ids pinned and buried."""
    wanted = _norm(q)
    matching = [r for r in rules if _norm(r.query) == wanted]
    rest = list(hits)
    pinned: list[dict[str, Any]] = []
    for rule in (r for r in matching if r.action == "pin"):
        if any(h.get("_id") == rule.document_id for h in pinned):
            continue
        found = next((h for h in rest if h.get("_id") == rule.document_id), None)
        if found is not None:
            rest.remove(found)
        else:
            doc = fetch(rule.document_id)
            if doc is None:
                continue
            found = {**doc, "_score": 0.0}
        pinned.append({**found, "_merchandising": "pinned"})
    bury_ids = {r.document_id for r in matching if r.action == "bury"}
    kept = [h for h in rest if h.get("_id") not in bury_ids]
    buried = [{**h, "_merchandising": "buried"} for h in rest if h.get("_id") in bury_ids]
    page = (pinned + kept + buried)[:limit]
    applied: dict[str, list[str]] = {"pinned": [], "buried": []}
    for hit in page:
        mark = hit.get("_merchandising")
        if mark is not None:
            applied[str(mark)].append(str(hit["_id"]))
    return page, applied
