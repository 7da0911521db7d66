"""The stack-file fields compose and process-compose users reach for, on real processes:
stop_signal, env_file, shell, depends_on conditions, and restart --cascade."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from harness import Harness, run
from stackutil import (
    ESCAPER,
    HD_CLI,
    PY,
    free_ports,
    hd,
    registry,
    stack_header,
    toy_service,
    write_stack,
)

from hippo_tasks.errors import StackFileError
from hippo_tasks.model.loader import load_stack_text
from hippo_tasks.model.plan import Options, build_plan
from hippo_tasks.supervision.states import State

SIGINT_ONLY = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGINT, lambda *a: (print('fast shutdown', flush=True), sys.exit(0)))\n"
    "print('READY', flush=True)\n"
    "while True: time.sleep(1)\n"
)


def test_stop_signal_is_what_stopping_sends(project: Path) -> None:
    (project / "db.py").write_text(SIGINT_ONLY)
    text = (f'[services.db]\ncommand = ["{PY}", "db.py"]\nreadiness = {{ log = "READY" }}\n'
            'stop_signal = "SIGINT"\nstop_timeout = 30\n')

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        await asyncio.wait_for(h.stack.get("db").request("stop"), 10)  # long before 30 s
        assert h.stack.get("db").state == State.STOPPED
        lines = h.lines("db")
        assert "fast shutdown" in lines
        notes = [r.text for r in h.hub.tail("db", 100) if r.system]
        assert not any("SIGKILL" in n for n in notes)

    run(project, text, scenario)


@pytest.mark.parametrize("stop_signal", ["SIGTERM", "SIGINT"])
def test_a_stop_sends_the_stop_signal_once(project: Path, monkeypatch: pytest.MonkeyPatch,
                                           stop_signal: str) -> None:
    """Every stop sent the stop signal twice (the scope's members, then the main process
    again): a program that takes a second SIGTERM or SIGINT as "force quit" dropped its
    graceful shutdown. Every kill() the daemon makes is counted on its way through."""
    (project / "db.py").write_text(SIGINT_ONLY)
    text = (f'[services.db]\ncommand = ["{PY}", "db.py"]\nreadiness = {{ log = "READY" }}\n'
            f'stop_signal = "{stop_signal}"\nstop_timeout = 2\n')
    sent: list[tuple[int, int]] = []
    real_kill = os.kill

    def counted(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", counted)

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        pid = h.stack.get("db").pid
        assert pid is not None
        sent.clear()
        await asyncio.wait_for(h.stack.get("db").request("stop"), 10)
        wanted = int(signal.Signals[stop_signal])
        assert [s for p, s in sent if p == pid and s == wanted] == [wanted], sent

    run(project, text, scenario)


def test_stop_signal_names_are_checked() -> None:
    with pytest.raises(StackFileError, match="stop_signal.*must be one of"):
        load_stack_text('[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\n'
                        'stop_signal = "SIGSTOP"\n')
    spec = load_stack_text('[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\n'
                           'stop_signal = "int"\n')
    assert spec.service("a").stop_signal == "SIGINT"


def test_env_file_is_read_in_order_and_env_wins(project: Path) -> None:
    (project / ".env").write_text(
        "# comment\n"
        "export GREETING=hello\n"
        "QUOTED=\"two\\nlines\"\n"
        "LITERAL='${not_expanded}'\n"
        "WITH_COMMENT=value # trailing comment\n"
        "OVERRIDDEN=from-env-file\n"
        "PORT_OF_A=${port:a}\n"
        # quoted, then a comment: the quotes stayed in the value (adv26 g/2)
        'DB_URL="postgres://127.0.0.1:5432/app" # the local database\n'
        "MODE='fast' # or slow\n"
        'HASH="x # not a comment"\n'
        'ESCAPED="say \\"hi\\"" # a comment after an escaped quote\n'
        "EMPTY= # fill me in\n"  # a template's empty value, not its comment (adv27 i/2)
        "TABBED=x\t#note\n"
    )
    (project / "local.env").write_text("GREETING=hi from local\n")
    (a,) = free_ports(1)
    text = (f'[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\nport = {a}\n'
            '[services.b]\ncommand = ["x"]\nenv_file = [".env", "local.env"]\n'
            'env = { OVERRIDDEN = "from-env" }\n')
    plan = build_plan(load_stack_text(text), Options(project_root=project))
    env = plan.service("b").env
    assert env["GREETING"] == "hi from local"
    assert env["QUOTED"] == "two\nlines"
    assert env["LITERAL"] == "${not_expanded}"
    assert env["WITH_COMMENT"] == "value"
    assert env["OVERRIDDEN"] == "from-env"
    assert env["PORT_OF_A"] == str(a)
    assert env["DB_URL"] == "postgres://127.0.0.1:5432/app"
    assert env["MODE"] == "fast"
    assert env["HASH"] == "x # not a comment"
    assert env["ESCAPED"] == 'say "hi"'
    assert env["EMPTY"] == "" and env["TABBED"] == "x"


def test_env_file_errors_name_the_file_and_line(project: Path) -> None:
    text = ('[stack]\ndefaults = false\n[services.b]\ncommand = ["x"]\n'
            'env_file = ".env"\n')
    with pytest.raises(StackFileError, match="env_file not found"):
        build_plan(load_stack_text(text), Options(project_root=project))
    (project / ".env").write_text("OK=1\nthis is not an assignment\n")
    with pytest.raises(StackFileError, match=r"\.env:2.*not a NAME=value line") as cut:
        build_plan(load_stack_text(text), Options(project_root=project))
    # Never the line itself: a pasted secret went into CI logs whole (adv52 J/5).
    (project / ".env").write_text("sk-live-51Hs3cr3t\n")
    for line, shown in ((1, "it has no '='"), (2, "'1KEY' before its '='")):
        if line == 2:
            (project / ".env").write_text("OK=1\n1KEY=hunter2\n")
        with pytest.raises(StackFileError) as cut:
            build_plan(load_stack_text(text), Options(project_root=project))
        said = cut.value.message()
        assert f".env:{line}" in said and shown in said, said
        assert "s3cr3t" not in said and "hunter2" not in said, said
    for text_, line in (('OK=1\nKEY="-----BEGIN\n-----END"\n', 2), ('X="open\n', 1)):
        (project / ".env").write_text(text_)  # a value over lines was blamed on line 2
        with pytest.raises(StackFileError, match=rf"\.env:{line}: .*: \w+: the \" that opens "
                                                 r"its value does not close on this line"):
            build_plan(load_stack_text(text), Options(project_root=project))
    (project / ".env").write_text("OK=1\nURL='http://x'/path\n")
    with pytest.raises(StackFileError, match=r"\.env:2.*URL: text after the closing quote: "
                                             r"'/path'"):
        build_plan(load_stack_text(text), Options(project_root=project))


def test_shell_runs_through_sh_and_excludes_command(project: Path) -> None:
    with pytest.raises(StackFileError, match="not both"):
        load_stack_text('[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\n'
                        'shell = "echo hi"\n')
    text = ('[services.piped]\nshell = "echo hello world | tr a-z A-Z; echo READY; '
            'exec sleep 300"\nreadiness = { log = "READY" }\n')

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        assert "HELLO WORLD" in h.lines("piped")

    run(project, text, scenario)


def test_depends_on_conditions(project: Path) -> None:
    """`started`: the dependant starts while its dependency is still getting ready;
    `completed_successfully`: after a job's exit 0."""
    marker = project / "pids"
    text = (
        f'[services.slow]\ncommand = ["{PY}", "{ESCAPER}", "--ready-after", "3", "--pids", '
        f'"{marker}"]\nreadiness = {{ log = "READY" }}\n\n'
        f'[services.eager]\ncommand = ["{PY}", "-c", "print(\'EAGER\', flush=True); '
        f'import time; time.sleep(300)"]\nreadiness = {{ log = "EAGER" }}\n'
        'depends_on = [{ name = "slow", condition = "started" }]\n\n'
        f'[services.migrate]\ncommand = ["{PY}", "-c", "print(\'migrated\')"]\nkind = "job"\n\n'
        f'[services.app]\ncommand = ["{PY}", "-c", "print(\'APP\', flush=True); '
        f'import time; time.sleep(300)"]\nreadiness = {{ log = "APP" }}\n'
        'depends_on = [{ name = "migrate", condition = "completed_successfully" }]\n'
    )

    async def scenario(h: Harness) -> None:
        starting = asyncio.ensure_future(h.stack.start_and_wait())
        eager = h.stack.get("eager")
        while eager.state != State.RUNNING:
            await asyncio.sleep(0.02)
        assert h.stack.get("slow").state == State.STARTING  # not ready yet, and that is fine
        assert await starting is None
        assert h.stack.get("app").state == State.RUNNING
        assert h.stack.get("migrate").state == State.STOPPED

    run(project, text, scenario)


def test_restart_cascade_restarts_dependants_in_order(project: Path) -> None:
    dash, a, b, c, lone = free_ports(5)
    marker = project / "pids"
    write_stack(project, stack_header(dash)
                + toy_service("a", a, "--marker", str(marker))
                + toy_service("b", b, "--marker", str(marker), depends_on=["a"])
                + toy_service("c", c, "--marker", str(marker), depends_on=["b"])
                + toy_service("lone", lone))
    hd(project, "up", "--detach", check=True)
    before = {n: e["pid"] for n, e in registry(project)["services"].items()}
    out = hd(project, "restart", "--service", "a", "--cascade", check=True).stdout
    after = {n: e["pid"] for n, e in registry(project)["services"].items()}
    assert all(after[n] != before[n] for n in "abc"), (before, after)
    assert after["lone"] == before["lone"]
    assert [ln.split(":")[0] for ln in out.splitlines()] == ["a", "b", "c"]
    starts = [int(ln.split()[1]) for ln in marker.read_text().splitlines()]
    assert starts[-3:] == [after["a"], after["b"], after["c"]]  # in dependency order
    bad = hd(project, "restart", "--cascade")
    assert bad.returncode == 2 and "--cascade needs --service" in bad.stderr
    status = json.loads(hd(project, "status", "--json", check=True).stdout)
    assert {r["name"]: r["state"] for r in status["services"]} == dict.fromkeys(
        ["a", "b", "c", "lone"], "running")
    hd(project, "down", check=True)


def test_overlapping_cascades_each_answer_with_their_own_outcome(project: Path) -> None:
    """Three `restart -s a --cascade` from three terminals, 0.25 s apart: two exited 1
    with "did not come up: another command (a stop, `hd down`) changed the stack",
    though nothing was stopped. Their answer was read after their cascade, when the
    next one was restarting the same services."""
    dash, a, b, c = free_ports(4)
    write_stack(project, stack_header(dash) + toy_service("a", a)
                + toy_service("b", b, "--delay", "0.3", depends_on=["a"])
                + toy_service("c", c, "--delay", "0.3", depends_on=["b"]))
    hd(project, "up", "--detach", check=True)
    try:
        procs = []
        for _ in range(3):
            procs.append(subprocess.Popen([*HD_CLI, "restart", "-s", "a", "--cascade"],
                                          cwd=project, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
            time.sleep(0.25)
        outs = [(p.wait(120), p.stdout.read() if p.stdout else "") for p in procs]
        for code, out in outs:
            assert code == 0, out
            assert [ln.split(":")[0] for ln in out.splitlines()] == ["a", "b", "c"], out
            assert "did not come up" not in out
    finally:
        hd(project, "down")


def test_a_job_that_never_finishes_fails_at_start_timeout(project: Path) -> None:
    """A job was waited for with no deadline: one that hung kept `up` waiting for ever."""
    text = (f'[services.migrate]\ncommand = ["{PY}", "-c", "import time; time.sleep(300)"]\n'
            'kind = "job"\nstart_timeout = 1\n')

    async def scenario(h: Harness) -> None:
        failure = await h.stack.start_and_wait()
        assert failure is not None and failure.service == "migrate"
        assert "did not finish within start_timeout=1s" in failure.reason
        assert h.stack.get("migrate").snapshot().pid is None, "the hung job was ended"

    run(project, text, scenario, timeout=20)


def test_completed_successfully_on_a_service_is_a_load_error() -> None:
    """A service never completes (an exit is a crash): the dependant waited for ever."""
    with pytest.raises(StackFileError) as info:
        load_stack_text('[stack]\ndefaults = false\n[services.db]\ncommand = ["x"]\n'
                        '[services.app]\ncommand = ["y"]\ndepends_on = [{ name = "db", '
                        'condition = "completed_successfully" }]\n')
    assert info.value.service == "app" and "'db', which is not a job" in info.value.problem


def test_a_dependency_the_profile_leaves_out_is_said_aloud(project: Path) -> None:
    """`app` depends on `db`, which only profile `full` runs: the default profile starts
    app without it (one stack file serves every profile), and `up` used to say nothing."""
    dash, app, db = free_ports(3)
    write_stack(project, stack_header(dash) + toy_service("app", app)
                + 'depends_on = [{ name = "db", condition = "healthy" }]\n'
                + toy_service("db", db) + 'profiles = ["full"]\n')
    try:
        up = hd(project, "up", "--detach", check=True, timeout=60)
        assert ("hippodrome | app starts without db (named in its depends_on; db: not in "
                "profile core)") in up.stdout, up.stdout
        hd(project, "down", check=True)
        up_full = hd(project, "up", "--detach", "--profile", "full", check=True, timeout=60)
        assert "starts without" not in up_full.stdout, up_full.stdout
    finally:
        hd(project, "down", timeout=60)


def test_each_dependency_left_out_is_named_with_what_left_it_out(tmp_path: Path) -> None:
    """A job switched off with `enabled = false` was said to be "left out of profile
    core", and the user looked at profiles and cells for the cause."""
    from hippo_tasks.model.plan import left_out_dependencies

    text = ('[stack]\ndefaults = false\n[services.schema]\ncommand = ["x"]\nkind = "job"\n'
            'enabled = false\n[services.cache]\ncommand = ["c"]\nprofiles = ["full"]\n'
            '[services.seed]\ncommand = ["s"]\n[services.app]\ncommand = ["y"]\n'
            'depends_on = [{ name = "schema", condition = "completed_successfully" }, '
            '"cache", "seed"]\n')
    plan = build_plan(load_stack_text(text), Options(project_root=tmp_path, skip=("seed",)))
    assert left_out_dependencies(plan) == [
        "app starts without schema, cache, seed (named in its depends_on; schema: switched "
        "off with enabled = false; cache: not in profile core; seed: left out by "
        "--no-seed)"]


def test_a_url_or_port_of_a_service_left_out_is_named_too(tmp_path: Path) -> None:
    """`DB_URL = "${url:db}"` with db switched off: the app was given the URL of a port
    no service of the run held (a stranger's, there), and nothing said so, where a
    `depends_on = ["db"]` was noted (z/5). Once per service it names."""
    from hippo_tasks.model.plan import left_out_dependencies

    text = ('[stack]\ndefaults = false\n[services.db]\ncommand = ["d"]\nport = 7001\n'
            'enabled = false\n[services.cache]\ncommand = ["c"]\nport = 7002\n'
            'profiles = ["full"]\n[services.app]\ncommand = ["y", "--db", "${url:db}"]\n'
            'env = { DB = "${url:db}", CACHE_PORT = "${port:cache}" }\n')
    plan = build_plan(load_stack_text(text), Options(project_root=tmp_path))
    assert left_out_dependencies(plan) == [
        "app is given ${url:db} of db, which this run leaves out (switched off with enabled "
        "= false): nothing of this stack answers there, and whatever else listens on that "
        "port gets its requests",
        "app is given ${port:cache} of cache, which this run leaves out (not in profile "
        "core): nothing of this stack answers there, and whatever else listens on that "
        "port gets its requests"]


def test_the_bundled_stack_says_nothing_of_the_dependencies_it_drops(tmp_path: Path) -> None:
    """The bundled seed job names services of every profile by design: `invoke up` on
    the default stack opened with a line about it."""
    from hippo_tasks.model.loader import load_stack
    from hippo_tasks.model.plan import left_out_dependencies

    plan = build_plan(load_stack(tmp_path), Options(project_root=tmp_path))
    assert any(p.spec.depends_on != p.depends_on for p in plan.services)  # it does drop
    assert left_out_dependencies(plan) == []


def test_a_service_switched_off_is_named_so_with_what_runs_it(tmp_path: Path) -> None:
    """`enabled = false`: `--only cache` blamed the profile, and the left-out sentence
    advised `hd up` with options that include it, which none does (s/4)."""
    from hippo_tasks.errors import UnknownServiceError, UsageError

    text = ('[stack]\ndefaults = false\n[services.app]\ncommand = ["y"]\n'
            '[services.cache]\ncommand = ["c"]\nenabled = false\n')
    with pytest.raises(UsageError) as only:
        build_plan(load_stack_text(text), Options(project_root=tmp_path, only=("cache",)))
    assert "switched off with enabled = false in the stack file: set enabled = true" \
        in str(only.value), str(only.value)
    said = UnknownServiceError("cache", ("app",), "switched off with enabled = false").message()
    assert "set enabled = true for it in the stack file" in said, said
    assert "with options that include it" not in said, said
