"""The tasks as a user runs them: up --detach, status, restart, stop/start, logs, down."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from stackutil import alive, free_ports, hd, registry, stack_header, toy_service, write_stack


def make_stack(root: Path, extra: str = "") -> tuple[int, int, int]:
    dash, a, b = free_ports(3)
    write_stack(root, stack_header(dash)
                + toy_service("alpha", a, readiness={"http": "/healthz"})
                + toy_service("beta", b, "--lines", "3", depends_on=["alpha"]) + extra)
    return dash, a, b


def test_up_status_restart_stop_start_logs_down(project: Path) -> None:
    dash, a, b = make_stack(project)
    up = hd(project, "up", "--detach", check=True)
    assert "stack ready in" in up.stdout and f"http://127.0.0.1:{dash}" in up.stdout

    st = json.loads(hd(project, "status", "--json", check=True).stdout)
    assert set(st) >= {"profile", "cell", "table_prefix", "services"}
    rows = {s["name"]: s for s in st["services"]}
    assert set(rows) == {"alpha", "beta"}
    for row in rows.values():
        assert set(row) >= {"name", "state", "healthy", "pid", "port", "restarts", "uptime_s",
                            "exit_code", "blocking", "external"}
        assert row["state"] == "running" and row["healthy"] is True
    assert rows["alpha"]["port"] == a

    table = hd(project, "status", check=True).stdout
    assert "alpha" in table and "running" in table and "healthy" in table

    old_beta, old_alpha = rows["beta"]["pid"], rows["alpha"]["pid"]
    hd(project, "restart", "--service", "beta", check=True)
    rows = {s["name"]: s for s in json.loads(hd(project, "status", "--json").stdout)["services"]}
    assert rows["beta"]["pid"] != old_beta and rows["beta"]["state"] == "running"
    assert rows["alpha"]["pid"] == old_alpha
    assert not alive(old_beta)

    hd(project, "stop", "--service", "beta", check=True)
    rows = {s["name"]: s for s in json.loads(hd(project, "status", "--json").stdout)["services"]}
    assert rows["beta"]["state"] == "stopped" and rows["alpha"]["state"] == "running"
    hd(project, "start", "--service", "beta", check=True)
    rows = {s["name"]: s for s in json.loads(hd(project, "status", "--json").stdout)["services"]}
    assert rows["beta"]["state"] == "running"

    hd(project, "stop", check=True)  # the whole stack; the daemon stays
    st = json.loads(hd(project, "status", "--json", check=True).stdout)
    assert {s["state"] for s in st["services"]} == {"stopped"}
    hd(project, "control.start", check=True)
    st = json.loads(hd(project, "control.status", "--json", check=True).stdout)
    assert {s["state"] for s in st["services"]} == {"running"}

    logs = hd(project, "logs", "--service", "beta", "--lines", "50", check=True).stdout
    assert "line 2" in logs and "starting -> running" in logs
    latest = project / ".logs" / "latest"
    assert latest.is_symlink() and (latest / "alpha.log").exists()

    pids = [s["pid"] for s in st["services"]]
    daemon_pid = registry(project)["daemon"]["pid"]
    down = hd(project, "down", check=True)
    assert "stack stopped" in down.stdout
    assert not alive(daemon_pid) and not any(alive(p) for p in pids)
    assert registry(project)["daemon"] is None


def test_tasks_without_a_daemon_say_so(project: Path) -> None:
    make_stack(project)
    for args in (("status",), ("restart", "--service", "alpha"), ("stop",)):
        res = hd(project, *args)
        assert res.returncode == 5, res
        assert "No Hippodrome daemon is running" in res.stderr
        assert "Traceback" not in res.stderr
    res = hd(project, "down")
    assert res.returncode == 0 and "nothing to stop" in res.stdout


def test_up_twice_names_the_running_daemon(project: Path) -> None:
    dash, _, _ = make_stack(project)
    hd(project, "up", "--detach", check=True)
    res = hd(project, "up", "--detach")
    assert res.returncode == 7
    assert "already running" in res.stderr and f"http://127.0.0.1:{dash}" in res.stderr
    hd(project, "down", check=True)


def test_unknown_service_is_a_clear_error(project: Path) -> None:
    make_stack(project)
    hd(project, "up", "--detach", check=True)
    res = hd(project, "restart", "--service", "gamma")
    assert res.returncode == 2 and "unknown service 'gamma'" in res.stderr
    hd(project, "down", check=True)


def test_a_service_left_out_of_the_run_is_named_as_such_not_unknown(project: Path) -> None:
    """After `up --only app` (as MCP's `start {"service": "app"}` brings a stack up),
    starting another service of the stack file said "unknown service 'other'": an agent
    took the service for one that does not exist."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash)
                + '[services.db]\ncommand = ["sleep", "600"]\n'
                + '[services.app]\ncommand = ["sleep", "600"]\ndepends_on = ["db"]\n'
                + '[services.other]\ncommand = ["sleep", "600"]\n')
    hd(project, "up", "--detach", "--only", "app", check=True)
    try:
        # `hd logs -s other` said "no log for service 'other'", as if its log had gone
        for args in (["start", "--service", "other"], ["logs", "-s", "other"]):
            res = hd(project, *args)
            assert res.returncode == 2, (args, res.stdout + res.stderr)
            assert "'other' is in the stack file but not part of this run (left out by " \
                "--only" in res.stderr, (args, res.stderr)
            assert "unknown service" not in res.stderr and "no log" not in res.stderr, args
    finally:
        hd(project, "down", check=True)


def test_a_service_name_that_is_no_text_is_an_unknown_service(project: Path) -> None:
    """`café` typed in a Latin-1 terminal reaches hd as bytes that are not UTF-8: `hd
    why`, `restart`, `stop`, `start` and `logs --timestamps` ended in a UnicodeEncodeError
    traceback, exit 1 (adv30 q/6). Each says it is an unknown service, shown as typed,
    exit 2, as `hd logs -s` did."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.cafe]\ncommand = ["sleep", "600"]\n'
                'readiness = "none"\n')
    hd(project, "up", "--detach", check=True)
    try:
        name = os.fsdecode(b"caf\xe9")
        for args in (["why", name], ["restart", "-s", name], ["stop", "-s", name],
                     ["start", "-s", name], ["logs", "--timestamps", "-s", name],
                     ["logs", "-s", name]):
            res = hd(project, *args)
            said = res.stdout + res.stderr
            assert res.returncode == 2 and "Traceback" not in said, (args, said)
            assert "'caf\\xe9'" in res.stderr and "did you mean 'cafe'" in res.stderr, \
                (args, res.stderr)
    finally:
        hd(project, "down", check=True)


def test_bad_stack_file_starts_nothing(project: Path) -> None:
    write_stack(project, '[stack]\ndefaults = false\n[services.a]\ncommand = "oops"\n')
    res = hd(project, "up", "--detach")
    assert res.returncode == 3
    assert "hippodrome.toml:4: service 'a': field 'command'" in res.stderr
    assert not (project / ".hippodrome" / "registry.json").exists() or \
        registry(project)["daemon"] is None


def test_blocking_failure_in_detach_reports_reason_and_lines(project: Path) -> None:
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service(
        "broken", a, "--lines", "30", "--exit", "42"))
    began = time.monotonic()
    res = hd(project, "up", "--detach")
    assert res.returncode == 1
    assert "service 'broken' failed: exited with code 42" in res.stderr
    assert "line 29" in res.stderr and "line 5" not in res.stderr.split("last log lines")[1]
    assert "broken.log" in res.stderr
    assert time.monotonic() - began < 30
    assert registry(project)["daemon"] is None


def test_detach_waits_for_jobs_to_complete_not_run(project: Path) -> None:
    dash, a = free_ports(2)
    marker = project / "migrated"
    write_stack(project, stack_header(dash) + f"""
[services.migrate]
command = ["sh", "-c", "sleep 0.3; touch {marker}; echo migrated"]
kind = "job"

""" + toy_service("app", a, depends_on=["migrate"]))
    res = hd(project, "up", "--detach", check=True)
    assert "stack ready" in res.stdout and marker.exists()
    rows = {s["name"]: s for s in json.loads(hd(project, "status", "--json").stdout)["services"]}
    assert rows["migrate"]["state"] == "stopped" and rows["migrate"]["exit_code"] == 0
    assert rows["app"]["state"] == "running"
    hd(project, "down", check=True)


def test_failed_job_stops_the_stack_with_its_output(project: Path) -> None:
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + """
[services.migrate]
command = ["sh", "-c", "echo 'migration 7 failed: table exists'; exit 4"]
kind = "job"

""" + toy_service("app", a, depends_on=["migrate"]))
    res = hd(project, "up", "--detach")
    assert res.returncode == 1
    assert "service 'migrate' failed: exited with code 4" in res.stderr
    assert "migration 7 failed: table exists" in res.stderr


def test_setup_step_runs_once_when_creates_is_missing(project: Path) -> None:
    dash, a = free_ports(2)
    (project / "svc").mkdir()
    write_stack(project, stack_header(dash) + toy_service(
        "app", a, cwd="svc",
        setup={"command": ["sh", "-c", "echo installing; mkdir node_modules"],
               "creates": "node_modules"}))
    hd(project, "up", "--detach", check=True)
    assert (project / "svc" / "node_modules").is_dir()
    log = (project / ".logs" / "latest" / "app.log").read_text()
    assert "installing" in log and "setup:" in log
    hd(project, "restart", "--service", "app", check=True)
    hd(project, "down", check=True)
    hd(project, "up", "--detach", check=True)
    log = (project / ".logs" / "latest" / "app.log").read_text()
    assert "installing" not in log
    hd(project, "down", check=True)


def test_a_job_that_leaves_a_process_behind_is_timed_to_its_exit(project: Path) -> None:
    """A job exiting 0 after starting something in the background (`pg_ctl start`,
    `docker run -d`): the leftover's stop_timeout was counted as the job's own time
    (adv26 f/3). Its dependants still start once the leftover is gone: one holding a
    dependant's port failed `up` when they did not wait (adv27 i/13)."""
    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + """
[services.migrate]
command = ["sh", "-c", "setsid sh -c 'trap \\"\\" TERM; exec sleep 1000' & echo migrated"]
kind = "job"
stop_timeout = 4

""" + toy_service("app", a, depends_on=[{"name": "migrate",
                                          "condition": "completed_successfully"}]))
    try:
        hd(project, "up", "--detach", check=True)
        rows = {s["name"]: s for s in
                json.loads(hd(project, "status", "--json").stdout)["services"]}
        job = rows["migrate"]["timings"]
        assert job["ready_at"] - job["spawned_at"] < 2, job  # not the leftover's 4 s
        assert rows["app"]["timings"]["deps_met_at"] >= job["ready_at"] + 3, rows["app"]
        log = (project / ".logs" / "latest" / "migrate.log").read_text()
        assert "did not stop within stop_timeout=4s after SIGTERM: sending SIGKILL" in log
    finally:
        hd(project, "down", check=True)


def test_ctrl_c_of_a_restart_says_the_restart_goes_on(project: Path) -> None:
    """Ctrl+C ends the command's wait, not the restart: it exited 130 with no word, and
    the daemon carried the restart out (adv26 f's notes)."""
    import signal
    import subprocess

    from stackutil import HD_CLI, wait_for

    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("slow", a, "--delay", "3"))
    try:
        hd(project, "up", "--detach", check=True)
        before = registry(project)["services"]["slow"]["pid"]
        proc = subprocess.Popen([*HD_CLI, "restart", "-s", "slow", "--project-root",
                                 str(project)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        wait_for(lambda: not alive(before), 20, what="the old process to end")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "stopped waiting; the restart goes on in the daemon" in err, err
        wait_for(lambda: json.loads(hd(project, "status", "--json").stdout)["services"][0][
            "ready"], 30, what="the restart carried out")
    finally:
        hd(project, "down", check=True)


def test_a_job_ending_its_leftovers_runs_again_on_start_and_cascades(
        project: Path) -> None:
    """`hd start -s job` asked while the job's leftover was ended answered `stopped`
    without running the job (adv27 i/8); a cascade from it after that (whose take-down
    waits for the leftover) said `job did not come up` and left its dependant out."""
    dash, a = free_ports(2)
    runs = project / "runs"
    shell = f"sh -c 'trap \"\" TERM; while :; do sleep 0.2; done' & echo run >> {runs}"
    write_stack(project, stack_header(dash) + f"""
[services.job]
shell = {json.dumps(shell)}
kind = "job"
stop_timeout = 6

""" + toy_service("app", a, depends_on=[{"name": "job",
                                          "condition": "completed_successfully"}]))
    try:
        hd(project, "up", "--detach", check=True)
        assert runs.read_text().split() == ["run"]
        started = hd(project, "start", "-s", "job", timeout=60)  # its leftover still ending
        assert started.returncode == 0, started.stdout + started.stderr
        assert runs.read_text().split() == ["run", "run"], started.stdout
        assert "job: completed" in started.stdout, started.stdout  # as the table says
        cascade = hd(project, "restart", "-s", "job", "--cascade", timeout=60)
        assert cascade.returncode == 0, cascade.stdout + cascade.stderr
        assert runs.read_text().split() == ["run"] * 3
        assert "app: running" in cascade.stdout, cascade.stdout
    finally:
        hd(project, "down", check=True, timeout=60)


def test_logs_of_a_service_not_started_yet_say_so_and_follow_it(project: Path) -> None:
    """`hd logs -s app` while app waited for db refused it as an unknown name, exit 2,
    and so did `hd logs -f -s app`, whose use that is (adv28 l/3)."""
    import subprocess

    from stackutil import HD_CLI, wait_for

    dash, db, app = free_ports(3)
    write_stack(project, stack_header(dash)
                + toy_service("db", db, "--delay", "4", readiness={"http": "/"})
                + toy_service("app", app, "--say", "app is up", depends_on=["db"]))
    up = subprocess.Popen([*HD_CLI, "up", "--detach"], cwd=project, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    follow: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: (project / ".hippodrome" / "registry.json").exists()
                 and registry(project).get("services", {}).get("app", {}).get("state")
                 == "pending", timeout=30, what="app waiting for db")
        res = hd(project, "logs", "-s", "app")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "app has no log yet (it is pending: waiting for db)" in res.stderr, res.stderr
        timed = hd(project, "logs", "-s", "app", "--timestamps")  # said nothing (adv29 n/9)
        assert timed.returncode == 0 and "app has no log yet (it is pending: waiting for " \
            "db)" in timed.stderr, timed.stdout + timed.stderr
        follow = subprocess.Popen([*HD_CLI, "logs", "-f", "-s", "app"], cwd=project,
                                  text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert up.wait(60) == 0
        assert follow.stdout is not None
        seen = [follow.stdout.readline() for _ in range(3)]  # blocks until lines come
        assert any("app is up" in line for line in seen), seen
        assert hd(project, "logs", "-s", "nope").returncode == 2
    finally:
        if follow is not None:
            follow.kill()
            follow.wait(10)
        up.wait(60)
        hd(project, "down", check=True)


def test_a_restart_waiting_on_a_dependency_in_backoff_says_so(project: Path) -> None:
    """`hd restart -s app` whose dependency db had crashed and waited out a 6 s backoff
    sat silent all that time, a wait no one could tell from a hang. Past 2 s it says what
    app waits for and where db is, then ends as before once db is back."""
    import re
    import signal

    from stackutil import wait_for

    dash, d, a = free_ports(3)
    write_stack(project, stack_header(dash, backoff_initial=6)
                + toy_service("db", d, readiness={"http": "/healthz"})
                + toy_service("app", a, depends_on=["db"]))
    try:
        hd(project, "up", "--detach", check=True)
        db = registry(project)["services"]["db"]["pid"]
        os.kill(db, signal.SIGKILL)
        wait_for(lambda: registry(project)["services"]["db"]["state"] == "backoff", 20,
                 what="db in its crash backoff")

        def left() -> float:  # `hd status` showed "restarting in 6s" all the 6 s
            rows = json.loads(hd(project, "status", "--json", check=True).stdout)["services"]
            reason = next(r for r in rows if r["name"] == "db")["reason"]
            found = re.search(r"; restarting in ([0-9.]+)s$", reason)
            assert found, reason
            return float(found.group(1))

        first = left()
        time.sleep(1.0)
        assert left() <= first - 0.5, "the backoff's countdown stood still"
        done = hd(project, "restart", "-s", "app", timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "app: running" in done.stdout
        waits = [line for line in done.stderr.splitlines() if "is waiting for" in line]
        assert waits and waits[0].startswith(
            "hippodrome | app is waiting for db (healthy); db: backoff — "), done.stderr
        # the time left, not the 6 s of the start of the backoff (a countdown), said once;
        # said again only when more than the countdown changed (db starting, on a loaded
        # machine that reached the command late in the backoff)
        assert re.search(r"; restarting in [0-5](\.\d)?s$", waits[0]), waits
        states = [re.sub(r"; restarting in [0-9.]+s$", "", w) for w in waits]
        assert len(set(states)) == len(states), waits
    finally:
        hd(project, "down", check=True)


def test_the_table_says_completed_and_names_the_signal(project: Path) -> None:
    """A job that ran to exit 0 read `stopped` in `hd status`, as if stopped before it was
    done, and a service ended by `hd stop` had EXIT `-15`, a code no program returns: the
    table says `completed` and `SIGTERM`; the JSON keeps `stopped` and -15."""
    import re

    dash, a = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", a) + f"""
[services.setup]
kind = "job"
command = {json.dumps(["sh", "-c", "exit 0"])}
""")
    try:
        hd(project, "up", "--detach", check=True)
        hd(project, "stop", "-s", "web", check=True)
        table = hd(project, "status", check=True).stdout
        rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
        assert rows["setup"][1] == "completed" and rows["setup"][-1] == "0", table
        assert rows["web"][1] == "stopped" and rows["web"][-1] == "SIGTERM", table
        assert re.search(r"^EXIT$", table.splitlines()[1].split()[-1]), table
        st = {s["name"]: s for s in json.loads(hd(project, "status", "--json").stdout)[
            "services"]}
        assert (st["setup"]["state"], st["setup"]["exit_code"]) == ("stopped", 0)
        assert (st["web"]["state"], st["web"]["exit_code"]) == ("stopped", -15)
    finally:
        hd(project, "down", check=True)


def test_logs_of_several_services_by_repeated_or_listed_flags(project: Path) -> None:
    """`hd logs -s a -s b` was invoke's `No idea what 'b' is`, exit 1, where `docker
    compose logs a b` shows both: each named service's lines, labelled, once each, with
    --timestamps too; a name no service has is still said as before."""
    import re

    dash, a, b, c = free_ports(4)
    write_stack(project, stack_header(dash) + toy_service("alpha", a, "--say", "from-alpha")
                + toy_service("beta", b, "--say", "from-beta")
                + toy_service("gamma", c, "--say", "from-gamma"))
    try:
        hd(project, "up", "--detach", check=True)
        for flags in (["-s", "alpha", "-s", "beta"], ["-s", "alpha,beta"],
                      ["-s", "beta", "-s", "alpha", "-s", "beta"],
                      ["-s", "alpha", "-s", "beta", "--timestamps"]):
            out = hd(project, "logs", *flags)
            assert out.returncode == 0, (flags, out.stdout + out.stderr)
            shown = [line for line in out.stdout.splitlines() if "from-" in line]
            stamp = r"\d{4}-\d\d-\d\d [\d:.]+ " if "--timestamps" in flags else ""
            for label in ("alpha | from-alpha", "beta  | from-beta"):
                assert any(re.fullmatch(stamp + re.escape(label), line) for line in shown), \
                    (flags, label, out.stdout)
            assert len(shown) == 2 and "from-gamma" not in out.stdout, (flags, out.stdout)
        wrong = hd(project, "logs", "-s", "alpha", "-s", "delta")
        assert wrong.returncode == 2 and "no log for service 'delta'" in wrong.stderr, \
            wrong.stderr
        empty = hd(project, "logs", "-s", "alpha,")
        assert empty.returncode == 2 and "names no service" in empty.stderr, empty.stderr
    finally:
        hd(project, "down", check=True)


def test_a_job_stopped_mid_run_that_exits_0_is_not_completed(project: Path) -> None:
    """A job with a graceful SIGTERM handler (exit 0), stopped 1 s into its run: the
    table said `completed`, and its `completed_successfully` dependant started, while
    the JSON said stopped, `stop requested`, not ready (adv31 r/4)."""
    import subprocess

    from stackutil import HD_CLI, PY, wait_for

    dash, a = free_ports(2)
    job = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
           "print('migrating', flush=True); time.sleep(60); print('migration done')")
    write_stack(project, stack_header(dash) + f"""
[services.jt]
kind = "job"
command = {json.dumps([PY, "-c", job])}
blocking = false
""" + toy_service("app", a, depends_on=[{"name": "jt", "condition": "completed_successfully"}],
                  blocking=False))
    up = subprocess.Popen([*HD_CLI, "up", "--detach", "--project-root", str(project)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (project / ".logs" / "latest" / "jt.log").exists() and "migrating"
                 in (project / ".logs" / "latest" / "jt.log").read_text(), 20,
                 what="the job under way")
        hd(project, "stop", "-s", "jt", check=True)
        up.communicate(timeout=60)
        rows = {s["name"]: s for s in json.loads(hd(project, "status", "--json").stdout)[
            "services"]}
        assert rows["jt"]["exit_code"] == 0 and not rows["jt"]["ready"], rows["jt"]
        assert rows["app"]["state"] in ("pending", "stopped") and rows["app"]["pid"] is None, \
            rows["app"]
        table = hd(project, "status", check=True).stdout
        line = next(x for x in table.splitlines() if x.startswith("jt "))
        assert line.split()[1] == "stopped", table
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        hd(project, "down", check=True)


def test_logs_of_a_file_named_in_no_utf8_and_colours_with_timestamps(project: Path) -> None:
    """A service wrote a log of its own into ${logs_dir} under a Latin-1 name: `hd logs`
    and `hd logs -f` ended in a UnicodeEncodeError traceback for every service (adv31
    r/8). And `hd logs --timestamps` kept a service's colour escapes with colour off (a
    pipe, NO_COLOR), which plain `hd logs` takes out (adv31 r/9)."""
    dash, a = free_ports(2)
    extra = ("import os; open(os.fsencode(os.environ['LOGS']) + b'/caf\\xe9.log', 'wb')"
             ".write(b'extra log\\n'); print('\\x1b[31mred words\\x1b[0m', flush=True)")
    write_stack(project, stack_header(dash) + toy_service("web", a) + f"""
[services.app]
kind = "job"
command = {json.dumps(["python3", "-c", extra])}
env = {{ LOGS = "${{logs_dir}}" }}
""")
    try:
        hd(project, "up", "--detach", check=True)
        out = hd(project, "logs")
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
        assert "caf\\xe9 | extra log" in out.stdout, out.stdout
        odd = hd(project, "logs", "-s", os.fsdecode(b"caf\xe9"))
        assert odd.returncode == 2 and "did you mean" not in odd.stderr, odd.stderr
        for args in (["logs", "-s", "app"], ["logs", "-s", "app", "--timestamps"]):
            shown = hd(project, *args)  # NO_COLOR is set by hd()
            assert "red words" in shown.stdout and "\x1b" not in shown.stdout, \
                (args, shown.stdout)
    finally:
        hd(project, "down", check=True)


def test_a_start_of_a_running_service_waiting_on_its_dependency_says_so(
        project: Path) -> None:
    """`hd start -s mid` while mid runs and its dependency db was stopped: the start brings
    db up first and waited for it in silence, where a stopped mid got the notice (adv31
    r/10). And down a chain the notice names what each level waits for."""
    dash, d, m, t = free_ports(4)
    write_stack(project, stack_header(dash)
                + toy_service("db", d, "--delay", "4", readiness={"http": "/healthz"})
                + toy_service("mid", m, depends_on=["db"])
                + toy_service("top", t, depends_on=["mid"]))
    try:
        hd(project, "up", "--detach", check=True, timeout=60)
        hd(project, "stop", "-s", "db", check=True)
        start = hd(project, "start", "-s", "mid", timeout=60)
        assert start.returncode == 0, start.stdout + start.stderr
        assert "hippodrome | mid is waiting for db; db: starting" in start.stderr, start.stderr
        hd(project, "stop", "-s", "db", check=True)
        hd(project, "stop", "-s", "top", check=True)
        hd(project, "stop", "-s", "mid", check=True)
        chain = hd(project, "start", "-s", "top", timeout=60)
        assert chain.returncode == 0, chain.stdout + chain.stderr
        assert "hippodrome | top is waiting for mid (healthy); mid is waiting for db " \
               "(healthy); db: starting" in chain.stderr, chain.stderr
    finally:
        hd(project, "down", check=True)
