"""Import/export: an index exported to S3 on moto and imported as another index holds the
same settings and documents."""

from __future__ import annotations

from hippo_platform.e2e.conftest import Stack, call


def test_export_then_import(stack: Stack, cleanup: list[str]) -> None:
    ctl = stack.url("controller")
    source = stack.new_index({"model": "lexical", "e2e": "import"})
    cleanup.append(source)
    docs = [{"_id": f"x{i}", "title": f"export item {i}", "price": i} for i in range(20)]
    stack.add_docs(source, docs)
    out = call("POST", f"{ctl}/api/v2/indexes/{source}/export", headers=stack.auth)
    assert out.status == 201, out.body
    assert out.body["numberOfDocuments"] == 20
    target = source + "-imported"
    cleanup.append(target)
    back = call("POST", f"{ctl}/api/v2/indexes/{target}/import", {"key": out.body["key"]},
                stack.auth)
    assert back.status == 200 and back.body["created"] is True, back.body
    assert stack.cell_docs(target) == stack.cell_docs(source)
    info = call("GET", f"{ctl}/api/v2/indexes/{target}", headers=stack.auth).body
    assert info["settings"] == {"model": "lexical", "e2e": "import"}
    missing = call("POST", f"{ctl}/api/v2/indexes/{target}/import", {"key": "no/such.jsonl"},
                   stack.auth)
    assert missing.status == 404
