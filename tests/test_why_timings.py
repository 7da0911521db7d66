"""Start-up timings, the critical path after `up`, and `hd why` from live state, on real
processes (supervision/timeline.py, daemon/why.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

from harness import Harness, run
from stackutil import (
    HD_CLI,
    PY,
    TOY,
    free_ports,
    hd,
    script_service,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)

from hippo_tasks.daemon.why import explain, render
from hippo_tasks.supervision.states import State
from hippo_tasks.supervision.timeline import critical_path, describe


def test_up_prints_the_critical_path_and_status_carries_the_instants(project: Path) -> None:
    dash, a, b, c, side = free_ports(5)
    write_stack(project, stack_header(dash)
                + toy_service("a", a, "--delay", "0.3")
                + toy_service("b", b, "--delay", "0.2", depends_on=["a"])
                + toy_service("c", c, depends_on=["b"])
                + toy_service("side", side))
    try:
        out = hd(project, "up", "--detach", check=True).stdout
        line = next(ln for ln in out.splitlines() if "critical path" in ln)
        path = line.split("critical path ", 1)[1].split(";")[0]
        assert [seg.split()[0] for seg in path.split(" → ")] == ["a", "b", "c"], line
        status = json.loads(hd(project, "status", "--json", check=True).stdout)
        rows = {r["name"]: r for r in status["services"]}
        for name, row in rows.items():
            t = row["timings"]
            assert t["requested_at"] <= t["deps_met_at"] <= t["spawned_at"] <= t["ready_at"], \
                (name, t)
            assert row["waiting_on"] == []
        # b could not start before a was ready, nor c before b
        assert rows["b"]["timings"]["deps_met_at"] >= rows["a"]["timings"]["ready_at"]
        assert rows["c"]["timings"]["deps_met_at"] >= rows["b"]["timings"]["ready_at"]
        # a's own time includes its 0.3 s before listening; side's path is not critical
        assert [s.service for s in critical_path(status["services"])] == ["a", "b", "c"]
        assert critical_path(status["services"])[0].seconds >= 0.3
        assert status["critical_path"] == [[s.service, round(s.seconds, 3)]
                                           for s in critical_path(status["services"])]

        # A restart of a alone, later: its latest start is its own, the start-up stays
        # (the path was [a] alone, ready last, and the page said "ready in" the uptime).
        time.sleep(1.0)
        hd(project, "restart", "--service", "a", check=True)
        hd(project, "restart", "--service", "a", check=True)  # twice: the first start kept
        again = json.loads(hd(project, "status", "--json", check=True).stdout)
        after = {r["name"]: r for r in again["services"]}
        assert after["a"]["startup"] == rows["a"]["timings"], after["a"]
        assert after["a"]["timings"]["requested_at"] > rows["c"]["timings"]["ready_at"] + 0.9
        assert after["c"]["startup"] == after["c"]["timings"] == rows["c"]["timings"]
        assert [p[0] for p in again["critical_path"]] == ["a", "b", "c"], again["critical_path"]
    finally:
        hd(project, "down")


def test_why_walks_down_the_chain_to_the_service_that_is_not_ready(project: Path) -> None:
    db, app, top = free_ports(3)
    text = ("[stack]\ndefaults = false\n\n"
            + toy_service("db", db, "--lines", "1", "--delay", "30",
                          start_timeout=60)
            + toy_service("app", app, depends_on=["db"])
            + toy_service("top", top, depends_on=[{"name": "app", "condition": "started"}]))

    async def scenario(h: Harness) -> None:
        starting = asyncio.ensure_future(h.stack.start_and_wait())
        try:
            while not (h.stack.get("db").state == State.STARTING
                       and "line 0" in h.lines("db")
                       and h.stack.get("app").waiting_on):
                await asyncio.sleep(0.02)
            snaps = {s.name: s for s in h.stack.snapshots()}
            readiness = {n: s.planned.spec.readiness.describe()
                         for n, s in h.stack.services.items()}
            answer = explain("top", snaps, readiness, h.lines, h.stack.log_path)
            assert answer["ready"] is False and answer["state"] == "pending"
            assert [(b["service"], b["depth"], b["condition"]) for b in answer["blockers"]] == \
                [("app", 1, "started"), ("db", 2, "healthy")]
            db_row = answer["blockers"][1]
            assert db_row["state"] == "starting" and db_row["waiting_on"] == []
            assert "line 0" in db_row["last_lines"]
            assert db_row["log_path"] and db_row["log_path"].endswith("db.log")
            assert "waiting for app (started)" in answer["summary"]
            assert "not ready yet" in answer["summary"]  # the bottom of the chain, named
            text = render(answer)
            assert "db [starting]" in text and "| line 0" in text
            # a ready service answers for itself, with nothing below it
            snaps = {s.name: s for s in h.stack.snapshots()}
            assert snaps["db"].timings["spawned_at"] is not None
            assert snaps["db"].timings["ready_at"] is None
        finally:
            starting.cancel()

    run(project, text, scenario)


def test_why_over_the_cli_for_a_failed_service_and_an_unknown_name(project: Path) -> None:
    dash, ok, bad = free_ports(3)
    write_stack(project, stack_header(dash)
                + toy_service("ok", ok)
                + toy_service("flaky", bad, "--lines", "1", "--exit", "3",
                              blocking=False))
    try:
        out = hd(project, "up", "--detach", check=True).stdout
        assert "critical path ok" in out
        flaky = hd(project, "why", "flaky", check=True).stdout
        assert "flaky failed: exited with code 3" in flaky
        assert "| line 0" in flaky and "| exiting with 3" in flaky and "flaky.log" in flaky
        as_json = json.loads(hd(project, "why", "flaky", "--json", check=True).stdout)
        assert as_json["state"] == "failed" and as_json["blockers"] == []
        assert as_json["last_lines"][-2:] == ["line 0", "exiting with 3"]
        fine = hd(project, "why", "ok", check=True).stdout
        assert fine.startswith("ok is ready")
        unknown = hd(project, "why", "nosuch")
        assert unknown.returncode != 0 and "nosuch" in unknown.stderr
        assert "flaky" in unknown.stderr and "Traceback" not in unknown.stderr
    finally:
        hd(project, "down")


def test_critical_path_from_rows_tolerates_missing_and_odd_values() -> None:
    rows = [
        {"name": "x", "depends_on": [], "timings": {"requested_at": 1.0, "deps_met_at": 1.0,
                                                     "ready_at": 2.5}},
        {"name": "y", "depends_on": ["x", "ghost"],
         "timings": {"requested_at": 1.0, "deps_met_at": 2.5, "ready_at": 3.0}},
        {"name": "ext", "depends_on": [], "timings": None},
        {"name": "weird", "depends_on": None, "timings": {"ready_at": "soon"}},
    ]
    path = critical_path(rows)
    assert [(s.service, round(s.seconds, 2)) for s in path] == [("x", 1.5), ("y", 0.5)]
    assert describe(rows).startswith("critical path x 1.50s → y 0.50s")
    assert critical_path([]) == [] and describe([{"name": "n"}]) == ""


FLAKY_DB = (
    "import os, sys\n"
    "if os.path.exists(os.environ['BROKEN']):\n"
    "    print('db: cannot read its data directory', flush=True)\n"
    "    sys.exit(1)\n"
    "os.execv(sys.executable, [sys.executable, os.environ['TOY'], *sys.argv[1:]])\n"
)


def test_a_service_that_failed_for_its_dependency_is_explained_and_cascaded_back(
        project: Path) -> None:
    """web gives up because db failed: `why web` names db (and db's own last lines),
    and once db is fixed, `restart db --cascade` brings web back too."""
    db, web = free_ports(2)
    broken = project / "broken"
    broken.write_text("yes")
    script = project / "db.py"
    script.write_text(FLAKY_DB)
    text = ("[stack]\ndefaults = false\n\n"
            + script_service("db", str(script), db, env={"BROKEN": str(broken), "TOY": TOY})
            + toy_service("web", web, depends_on=["db"]))
    async def scenario(h: Harness) -> None:
        failure = await h.stack.start_and_wait()
        assert failure is not None and failure.service == "db"
        while h.stack.get("web").state != State.FAILED:
            await asyncio.sleep(0.02)
        snaps = {s.name: s for s in h.stack.snapshots()}
        readiness = {n: s.planned.spec.readiness.describe()
                     for n, s in h.stack.services.items()}
        answer = explain("web", snaps, readiness, h.lines, h.stack.log_path)
        assert [(b["service"], b["depth"]) for b in answer["blockers"]] == [("db", 1)]
        assert "db: cannot read its data directory" in answer["blockers"][0]["last_lines"]
        assert "at the bottom of the chain: db failed: exited with code 1" in \
            answer["summary"]
        broken.unlink()
        touched = await h.stack.restart_cascade("db")
        assert list(touched) == ["db", "web"]
        assert h.stack.get("db").state == State.RUNNING
        assert h.stack.get("web").state == State.RUNNING
        assert explain("web", {s.name: s for s in h.stack.snapshots()}, readiness,
                       h.lines, h.stack.log_path)["blockers"] == []

    run(project, text, scenario)


def test_a_chain_deeper_than_the_listing_still_names_its_bottom() -> None:
    """The walk stopped at depth 32 without a word: on a 40-link chain `hd why s39` said
    only "s39 is waiting for s38" and the service holding everything up (s0) was never
    named, in the summary or the blockers."""
    from hippo_tasks.daemon.why import MAX_DEPTH
    from hippo_tasks.supervision.snapshot import ServiceSnapshot

    def snap(i: int) -> ServiceSnapshot:
        waiting = ((f"s{i - 1}", "healthy"),) if i else ()
        return ServiceSnapshot(f"s{i}", "pending" if i else "starting", False, None, None,
                               None, 0, None, None, False, True, False, "service", "",
                               (f"s{i - 1}",) if i else (), None, None, None, {}, waiting)

    snaps = {f"s{i}": snap(i) for i in range(40)}
    answer = explain("s39", snaps, {"s0": "tcp"}, lambda _: [], lambda _: None)
    assert "at the bottom of the chain: s0 started" in answer["summary"], answer["summary"]
    names = [b["service"] for b in answer["blockers"]]
    assert names[-1] == "s0" and len(names) == MAX_DEPTH + 1
    assert answer["hidden"] == 39 - len(names)
    text = render(answer)
    assert f"... {answer['hidden']} more services waiting in between" in text
    assert text.splitlines()[-1].lstrip().startswith("- s0 [starting]")


def test_a_restart_after_an_exit_carries_its_own_instants(project: Path) -> None:
    """A service that exits and is restarted by itself: `requested_at` and
    `deps_met_at` stayed the first start's, and `hd why` said "took 7.03s after its
    dependencies" (201 s in a stack up for 200 s) for a restart of 0.5 s (s/8)."""
    import time

    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash)
                + '[services.app]\ncommand = ["sleep", "2"]\n')
    try:
        hd(project, "up", "--detach", check=True)
        first = json.loads(hd(project, "status", "--json", check=True).stdout)
        began = first["services"][0]["timings"]["requested_at"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            row = json.loads(hd(project, "status", "--json", check=True).stdout)["services"][0]
            if row["restarts"] >= 1 and row["ready"]:
                break
            time.sleep(0.3)
        t = row["timings"]
        # the first process ran its 2 s before this start could be asked for
        assert row["restarts"] >= 1 and t["requested_at"] > began + 1.5, (row, began)
        assert t["requested_at"] <= t["deps_met_at"] <= t["spawned_at"] <= t["ready_at"], t
    finally:
        hd(project, "down")


def test_a_job_is_described_as_a_job_with_the_condition_its_dependant_needs() -> None:
    """A running job read "waiting for its readiness check (none)", and once it was
    stopped its dependant's line said "needed: ready" where the wait had said
    completed_successfully a second before (adv24 a/8)."""
    from hippo_tasks.supervision.snapshot import ServiceSnapshot

    def snap(name: str, state: str, kind: str, reason: str = "",
             deps: tuple[str, ...] = ()) -> ServiceSnapshot:
        return ServiceSnapshot(name, state, False, 42 if state == "starting" else None, None,
                               None, 0, None, None, False, True, False, kind, reason, deps,
                               None, None, None, {"spawned_at": None}, ())

    running = {"job": snap("job", "starting", "job"),
               "app": snap("app", "pending", "service", "dependency 'job' is running",
                           ("job",))}
    said = explain("job", running, {"job": "none"}, lambda _: [], lambda _: None)
    assert said["summary"] == "job is a job, running (pid 42): done when it exits 0", said
    stopped = {"job": snap("job", "stopped", "job", "stop requested"),
               "app": snap("app", "stopped", "service", "dependency 'job' is stopped",
                           ("job",))}
    answer = explain("app", stopped, {}, lambda _: [], lambda _: None,
                     {"app": {"job": "completed_successfully"}})
    assert [(b["service"], b["condition"]) for b in answer["blockers"]] == [
        ("job", "completed_successfully")], answer["blockers"]


def test_a_service_that_failed_at_up_and_started_later_keeps_the_start_up(
        project: Path) -> None:
    """A non-blocking service failing at `up`, started by hand once fixed: its later
    start was read as the start-up's, and the page said `ready in` the time until then,
    with it alone on the critical path (adv27 j/2)."""
    import shlex

    dash, a, b, f = free_ports(4)
    fixed = project / "fixed"
    run = f"[ -e {shlex.quote(str(fixed))} ] || exit 1; exec {shlex.quote(PY)} " \
          f"{shlex.quote(TOY)} --port {f}"
    write_stack(project, stack_header(dash)
                + toy_service("db", a, "--delay", "0.3")
                + toy_service("app", b, depends_on=["db"])
                + f"[services.flaky]\ncommand = {json.dumps(['sh', '-c', run])}\n"
                  f"port = {f}\nblocking = false\nauto_restart = false\n")
    try:
        hd(project, "up", "--detach", check=True)
        first = {r["name"]: r for r in json.loads(
            hd(project, "status", "--json", check=True).stdout)["services"]}
        assert first["flaky"]["state"] == "failed"
        time.sleep(1.0)
        fixed.touch()
        hd(project, "start", "-s", "flaky", check=True)
        now = json.loads(hd(project, "status", "--json", check=True).stdout)
        rows = {r["name"]: r for r in now["services"]}
        assert rows["flaky"]["state"] == "running"
        assert rows["flaky"]["startup"] == first["flaky"]["timings"], rows["flaky"]
        assert rows["flaky"]["startup"]["ready_at"] is None
        assert [p[0] for p in now["critical_path"]] == ["db", "app"], now["critical_path"]
    finally:
        hd(project, "down")


def test_why_and_status_during_a_shutdown_say_so_and_advise_no_start(project: Path) -> None:
    """While another terminal's `hd down` waited out a service's stop_timeout, `hd why
    app` said "`hd start --service app` starts it", which the daemon then refused (exit
    5), and `hd status` never said the stack was going (adv36 c/2)."""
    dash, db, app = free_ports(3)
    write_stack(project, stack_header(dash)
                + toy_service("db", db, "--ignore-term", stop_timeout=6)
                + toy_service("app", app, depends_on=["db"]))
    hd(project, "up", "--detach", check=True)
    down = subprocess.Popen([*HD_CLI, "down"], cwd=project, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        said = wait_for(lambda: (r := hd(project, "status")).returncode == 0 and
                        "the stack is shutting down (by `hd down`" in r.stderr and r, 30,
                        every=0.1, what="status saying the stack is shutting down")
        assert "app" in said.stdout, said.stdout
        why = hd(project, "why", "app")
        assert why.returncode == 0, why.stderr
        assert why.stdout.startswith("the stack is shutting down (by `hd down`"), why.stdout
        assert "hd start" not in why.stdout, why.stdout
    finally:
        down.wait(60)
        hd(project, "down")
