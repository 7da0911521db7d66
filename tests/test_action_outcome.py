"""One judge of an action's rows for the command line's exit code, the API's `ok` and the
MCP tools' `ok` (hippo_tasks/action_outcome.py): a pure function, so each rule is held
here row by row; the three callers are held to it against real daemons elsewhere
(test_daemon_http, test_mcp_tools, test_cli_faults)."""

from __future__ import annotations

from typing import Any

from hippo_tasks.action_outcome import EXITED, problems


def row(name: str, state: str, ready: bool = False, blocking: bool = True,
        reason: str = "", **more: Any) -> dict[str, Any]:
    return {"name": name, "state": state, "ready": ready, "blocking": blocking,
            "reason": reason, **more}


def texts(verb: str, service: str | None, rows: list[dict[str, Any]],
          cascade: bool = False) -> list[str]:
    return [p.text for p in problems(verb, service, cascade, rows)]


def test_a_non_blocking_service_that_exits_does_not_fail_a_whole_stack_restart() -> None:
    """It read "fail did not come up: another command (a stop, `hd down`) changed the
    stack", with no other command, in 15 of 16 whole-stack restarts."""
    rows = [row("web", "running", ready=True),
            row("fail", "stopping", blocking=False, reason=EXITED)]
    assert texts("restart", None, rows) == []


def test_a_service_that_exits_as_it_starts_is_said_so_not_blamed_on_others() -> None:
    for service, rows in (("fail", [row("fail", "stopping", blocking=False, reason=EXITED)]),
                          (None, [row("db", "stopping", reason=EXITED)])):
        said = texts("restart", service, rows)
        assert len(said) == 1 and "exited as it started" in said[0], said
        assert "another command" not in said[0]


def test_a_blocking_service_still_moving_was_changed_by_another_command() -> None:
    said = texts("start", None, [row("db", "starting", reason="pid 12")])
    assert said == ["db did not come up: another command (a stop, `hd down`) changed the "
                    "stack while this one waited; `hd status` shows where it is now"]


def test_stopping_an_external_service_by_name_is_not_a_success() -> None:
    """MCP said `ok: true, ext: stopped` while the external server kept running."""
    ext = row("ext", "external", ready=True, external=True)
    said = texts("stop", "ext", [ext])
    assert said == ["ext is external: Hippodrome does not run it, so it was not stopped"]
    assert texts("stop", None, [ext, row("web", "stopped")]) == []  # the whole stack: fine


def test_restarting_or_starting_an_external_service_by_name_says_what_it_did() -> None:
    """A restart exited 0 (`ok: true`) having done nothing, and a start said ok for
    one that does not answer, while a stop of it exits 1 (adv24 b/8)."""
    up = row("ext", "external", ready=True, external=True, healthy=True)
    down = row("ext", "external", ready=True, external=True, healthy=False)  # as the
    # daemon gives it: an external is always `ready` (adv25 e/1)
    assert texts("restart", "ext", [up]) == [
        "ext is external: Hippodrome does not run it, so it was not restarted"]
    assert texts("start", "ext", [up]) == []  # it answers: what a start asks
    assert texts("start", "ext", [down]) == [
        "ext is external and does not answer: Hippodrome does not run it; start it "
        "yourself"]
    assert texts("restart", None, [up]) == texts("start", "app", [down]) == []
    # --cascade restarts what runs on it, which is what was asked of it: it said "not
    # restarted", exit 1, having restarted app (adv28 l/5)
    app = row("app", "running", ready=True)
    assert texts("restart", "ext", [up, app], cascade=True) == []


def test_a_start_whose_dependency_another_command_stopped_is_not_a_success() -> None:
    """`hd start -s up2` brought up ss, which `hd stop -s ss` stopped a second later: it
    printed `ss: stopped` and exited 0 (adv29 n/3)."""
    rows = [row("ss", "stopped", reason="stop requested"), row("up2", "running", ready=True)]
    assert texts("start", "up2", rows) == [
        "'ss' is stopped (stop requested, while this one waited); `hd start --service ss` "
        "starts it with what it depends on"]
    assert texts("restart", "up2", rows) == []  # a restart of up2 does not touch ss


def test_failed_stopped_and_cascades() -> None:
    assert texts("restart", "a", [row("a", "failed", reason="exited with code 3")]) == [
        "a failed: exited with code 3"]
    assert texts("start", None, [row("b", "failed", blocking=False)]) == []
    assert "'c' is stopped (another command stopped it, while this one waited)" in \
        texts("restart", "c", [row("c", "stopped")])[0]
    left = row("d", "running", ready=True, not_restarted="its dependency 'e' is stopped")
    assert texts("restart", "a", [left], cascade=True) == [
        "d: its dependency 'e' is stopped"]
    # a whole-stack action asks every service: one another command stopped meanwhile
    # (it answered `running`, exit 0) is not a success
    assert texts("restart", None, [row("w", "running", ready=True),
                                   row("leaf", "stopped", reason="stop requested")]) \
        == ["'leaf' is stopped (stop requested, while this one waited); `hd start "
            "--service leaf` starts it with what it depends on"]
