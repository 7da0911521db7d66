"""Index aliasing: search and write through an alias, then move it to a new index in one
step, as a reindex does."""

from __future__ import annotations

from hippo_platform.e2e.conftest import Stack, call


def test_an_alias_moves_from_old_to_new(stack: Stack, cleanup: list[str]) -> None:
    ctl, cell = stack.url("controller"), stack.url("marqo_base")
    old, new = stack.new_index(), stack.new_index()
    cleanup += [old, new]
    stack.add_docs(old, [{"_id": "o1", "title": "old catalog lamp"}])
    stack.add_docs(new, [{"_id": "n1", "title": "new catalog lamp"}])
    alias = old + "-live"
    made = call("PUT", f"{ctl}/api/v2/aliases/{alias}", {"index": old}, stack.auth)
    assert made.status == 201, made.body
    cleanup.append("alias:" + alias)

    def hits() -> list[str]:
        got = call("POST", f"{cell}/indexes/{alias}/search", {"q": "lamp"}, stack.auth)
        assert got.status == 200, got.body
        return [h["_id"] for h in got.body["hits"]]

    assert hits() == ["o1"]
    moved = call("PUT", f"{ctl}/api/v2/aliases/{alias}", {"index": new}, stack.auth)
    assert moved.status == 200 and moved.body["previousIndex"] == old
    assert hits() == ["n1"]
    held = call("DELETE", f"{ctl}/api/v2/indexes/{new}", headers=stack.auth)
    assert held.status == 409 and alias in held.body["error"]
