"""Analytics events: searches through search_proxy are counted, and clicks, carts and
purchases against a search's queryId show in the index's summary. Needs a global_worker
answering behind search_proxy (`--profile full`, or your own in ecom)."""

from __future__ import annotations

import pytest

from hippo_platform.e2e.conftest import Stack, answers, call


def test_search_and_click_are_counted(stack: Stack, cleanup: list[str]) -> None:
    proxy = stack.url("search_proxy")
    if not answers(stack.url("global_worker")):
        pytest.skip("global_worker is not answering (external in --profile ecom): searches "
                    "through search_proxy need it; use --profile full")
    index = stack.new_index()
    cleanup.append(index)
    stack.add_docs(index, [{"_id": "a1", "title": "analytics teapot"}])
    found = call("POST", f"{proxy}/indexes/{index}/search", {"q": "teapot"}, stack.auth)
    assert found.status == 200, found.body
    query_id = found.body["queryId"]
    events = [{"type": "click", "queryId": query_id, "documentId": "a1"},
              {"type": "purchase", "queryId": query_id, "documentId": "a1"}]
    sent = call("POST", f"{proxy}/analytics/events", {"events": events}, stack.auth)
    assert sent.status == 200 and sent.body == {"recorded": 2}, sent.body
    summary = call("GET", f"{proxy}/analytics/indexes/{index}", headers=stack.auth).body
    assert summary["searches"] == 1 and summary["clicks"] == 1 and summary["purchases"] == 1
    assert summary["clickThroughRate"] == 1.0
