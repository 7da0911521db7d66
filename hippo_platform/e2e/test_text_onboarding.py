"""Text onboarding: a new index gets its settings through admin_server and its catalog as
a CSV (and as plain lines); the products become searchable in the cell."""

from __future__ import annotations

from hippo_platform.e2e.conftest import Stack, call, wait_until

CSV = "id,title,color\nsku-1,linen shirt,white\nsku-2,wool scarf,grey\nsku-3,linen trousers,\n"


def test_a_csv_catalog_becomes_searchable(stack: Stack, cleanup: list[str]) -> None:
    admin, cell = stack.url("admin_server"), stack.url("marqo_base")
    bearer = {"Authorization": f"Bearer {stack.key}"}
    index = stack.new_index({"type": "text"})
    cleanup.append(index)
    settings = call("PUT", f"{admin}/api/v1/indexes/{index}/settings",
                    {"settings": {"searchableAttributes": ["title"]}}, bearer)
    assert settings.status == 200, settings.body
    sent = call("POST", f"{admin}/api/v1/indexes/{index}/documents/text",
                {"format": "csv", "text": CSV}, bearer)
    assert sent.status == 202 and sent.body["count"] == 3, sent.body
    lines = call("POST", f"{admin}/api/v1/indexes/{index}/documents/text", headers={
        **bearer, "content-type": "text/plain"}, raw=b"linen tote bag\n\ncotton socks\n")
    assert lines.status == 202 and lines.body["count"] == 2, lines.body

    def linen() -> list[str]:
        got = call("POST", f"{cell}/indexes/{index}/search", {"q": "linen", "limit": 10},
                   stack.auth)
        ids = sorted(h["_id"] for h in got.body["hits"]) if got.status == 200 else []
        return ids if len(ids) == 3 else []

    found = wait_until(linen, "the uploaded catalog to be searchable")
    assert found[:2] == ["sku-1", "sku-3"] and found[2].startswith("t-")
    bad = call("POST", f"{admin}/api/v1/indexes/{index}/documents/text",
               {"format": "csv", "text": "id,title\n1,a,extra\n"}, bearer)
    assert bad.status == 400 and "line 2" in bad.body["error"], bad.body
