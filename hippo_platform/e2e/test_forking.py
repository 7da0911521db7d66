"""Index forking: a fork holds exactly its source's settings and documents, reported
through the controller (the Step Functions workflow and fork_action_worker in ecom/full)."""

from __future__ import annotations

from hippo_platform.e2e.conftest import Stack, call, wait_until


def test_a_fork_copies_settings_and_documents(stack: Stack, cleanup: list[str]) -> None:
    ctl = stack.url("controller")
    source = stack.new_index({"model": "lexical", "e2e": True})
    cleanup.append(source)
    stack.add_docs(source, [{"_id": f"f{i}", "title": f"fork item {i}"} for i in range(12)])
    target = source + "-fork"
    started = call("POST", f"{ctl}/api/v2/indexes/{source}/fork", {"target": target},
                   stack.auth)
    assert started.status in (201, 202), started.body
    cleanup.append(target)

    def finished() -> object:
        got = call("GET", f"{ctl}/api/v2/forks/{started.body['forkId']}", headers=stack.auth)
        assert got.status == 200, got.body
        return got.body if got.body["status"] != "RUNNING" else None

    done = wait_until(finished, "the fork to finish")
    assert done["status"] == "SUCCEEDED" and done["numberOfDocuments"] == 12, done
    assert stack.cell_docs(target) == stack.cell_docs(source)
    info = call("GET", f"{ctl}/api/v2/indexes/{target}", headers=stack.auth).body
    assert info["settings"] == {"model": "lexical", "e2e": True}


def test_fork_errors_are_answers(stack: Stack) -> None:
    ctl = stack.url("controller")
    missing = call("POST", f"{ctl}/api/v2/indexes/no-such-index/fork", {"target": "x"},
                   stack.auth)
    assert missing.status == 404 and "not found" in missing.body["error"]
    unknown = call("GET", f"{ctl}/api/v2/forks/fork-0000000000000000", headers=stack.auth)
    assert unknown.status == 404
