"""Bad stack values and wrong-shaped registries through the real CLI: a sentence and an
exit code, never a traceback or a hang."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from stackutil import (
    HD_CLI,
    PY,
    REPO,
    free_ports,
    hd,
    registry,
    stack_header,
    toy_service,
    write_stack,
)

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry


def assert_clean(res: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr


@pytest.mark.parametrize("extra,words", [
    ('env = { GREETING = "hi\\u0000there" }', "field 'env': env.GREETING contains a NUL byte"),
    ("start_timeout = nan", "field 'start_timeout': is nan; write a finite number"),
    ('env = { "A=B" = "1" }', "variable name 'A=B' contains '='"),
])
def test_unusable_value_exits_3_before_starting_anything(project: Path, extra: str,
                                                         words: str) -> None:
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port) + extra + "\n")
    res = hd(project, "up", "--detach", timeout=60)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "hippodrome.toml" in res.stderr and "service 'web'" in res.stderr
    assert words in res.stderr
    assert_clean(res)
    assert not (project / ".hippodrome" / "daemon.log").exists()  # no daemon was spawned


def test_dashboard_pushed_out_of_range_by_the_offset(project: Path) -> None:
    (port,) = free_ports(1)
    write_stack(project, stack_header(65535) + toy_service("web", port))
    up = hd(project, "up", "--detach", "--port-offset", "300", timeout=60)
    assert up.returncode == 2, up.stdout + up.stderr
    assert "--port-offset 300 moves the dashboard" in up.stderr and "65835" in up.stderr
    assert_clean(up)
    doctor = hd(project, "doctor", "--port-offset", "300", timeout=60)
    assert doctor.returncode == 2, doctor.stdout + doctor.stderr  # a bad argument, as for up
    assert "--port-offset 300 moves the dashboard" in doctor.stderr
    assert_clean(doctor)


@pytest.mark.parametrize("value", ["\u0663", "\uff11\uff10", "1_0", "3x", "\udcff"])
def test_a_port_offset_in_other_digits_is_refused(project: Path, value: str) -> None:
    """`HIPPODROME_PORT_OFFSET=٣` (pasted Arabic-Indic digit) moved every port by 3. A
    byte that is not UTF-8 (`$'\\xff'`) is shown as typed, not as Python's `'\\udcff'`."""
    (port,) = free_ports(1)
    write_stack(project, stack_header(port) + "\n")
    up = hd(project, "up", "--detach", env={"HIPPODROME_PORT_OFFSET": value}, timeout=60)
    assert up.returncode == 2, up.stdout + up.stderr
    shown = "\\xff" if value == "\udcff" else value
    assert f"HIPPODROME_PORT_OFFSET must be an integer, got '{shown}'" in up.stderr
    assert_clean(up)
    assert not (project / ".hippodrome" / "daemon.log").exists()


@pytest.mark.parametrize(("name", "value"), [("HIPPODROME_CGROUP", "maybe"),
                                           ("HIPPODROME_WATCH_POLL", "abc")])
def test_a_yes_or_no_setting_given_another_word_is_refused(
        project: Path, name: str, value: str) -> None:
    """`HIPPODROME_CGROUP=maybe` ran in cgroup mode, `HIPPODROME_WATCH_POLL=abc` watched
    without polling, neither with a word (adv52 J/5): refused before anything starts."""
    (port,) = free_ports(1)
    write_stack(project, stack_header(port) + "\n")
    up = hd(project, "up", "--detach", env={name: value}, timeout=60)
    assert up.returncode == 2, up.stdout + up.stderr
    assert f"{name}='{value}' is none of the words it takes" in up.stderr, up.stderr
    assert_clean(up)
    assert not (project / ".hippodrome" / "daemon.log").exists()
    fine = hd(project, "up", "--detach", env={name: "OFF" if "CGROUP" in name else "1"},
              timeout=60)
    assert fine.returncode == 0, fine.stdout + fine.stderr
    hd(project, "down", check=True)


@pytest.mark.parametrize("prefix", ["has space-", "\u00fcn\u00ef-", "x" * 41, "a.b-", "-x",
                                    "--help"])
def test_a_table_prefix_aws_refuses_is_refused_first(project: Path, prefix: str) -> None:
    """It passed pre-flight; services started, and `up` failed seconds later inside one
    of them, naming a queue (`CreateQueue ... InvalidParameterValue`), not the flag.
    One beginning with `-` was read as an option by the provisioning job (adv59 F2)."""
    (port,) = free_ports(1)
    write_stack(project, stack_header(port) + "\n")
    up = hd(project, "up", "--detach", f"--table-prefix={prefix}", timeout=60)
    assert up.returncode == 2, up.stdout + up.stderr
    assert f"--table-prefix '{prefix}' cannot name AWS resources: use ASCII letters, " \
           "digits, '-' and '_', not '-' first, at most 40 characters" in up.stderr, up.stderr
    assert_clean(up)
    assert not (project / ".hippodrome" / "daemon.log").exists()


def test_misspelt_bundled_service_suggests_the_right_name(project: Path) -> None:
    write_stack(project, "[services.controler]\nport = 9102\n")
    res = hd(project, "up", "--detach", timeout=60)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "not a bundled service (did you mean 'controller'?)" in res.stderr
    assert_clean(res)


WRONG = json.dumps({"daemon": {"pid": "4242", "url": "http://127.0.0.1:1", "port": 1},
                    "services": {"web": None}})


def break_registry(root: Path) -> None:
    (root / ".hippodrome").mkdir(exist_ok=True)
    (root / ".hippodrome" / "registry.json").write_text(WRONG)


def test_every_command_recovers_from_a_wrong_shaped_registry(project: Path) -> None:
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    for args, code in ((("status",), 5), (("down", "--force"), 0), (("down",), 0),
                       (("doctor",), None)):
        break_registry(project)
        res = hd(project, *args, timeout=60)
        assert_clean(res)
        out = res.stdout + res.stderr
        assert "was corrupt (daemon.pid must be a process id" in out, (args, out)
        assert code is None or res.returncode == code, (args, res.returncode, out)
        assert "[WARN] warning:" not in out, out  # one word of warning (adv58)
    break_registry(project)
    up = hd(project, "up", "--detach", timeout=60)
    assert up.returncode == 0, up.stdout + up.stderr
    # said as every other line of `up` (it had no `hippodrome | ` before it, adv58)
    assert "\nhippodrome | warning: " in up.stdout and "was corrupt" in up.stdout, up.stdout
    assert registry(project)["services"]["web"]["state"] == "running"
    hd(project, "down", check=True)


def test_a_service_name_no_route_can_hold_is_an_unknown_service(project: Path) -> None:
    """A space, a dot, an empty or a newline-ended name used to reach the daemon as a
    path no route matches: `the daemon answered 404: no such route`, exit 1."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True)
    for args in (("why", "a b"), ("restart", "--service", "a.b"), ("stop", "--service", "a/b"),
                 ("logs", "--timestamps", "--service", "a.b"), ("why", "web\n")):
        res = hd(project, *args, timeout=60)
        assert res.returncode == 2, (args, res.stdout + res.stderr)
        assert "unknown service" in res.stderr and "web" in res.stderr, res.stderr
        assert_clean(res)
    hd(project, "down", check=True)


def test_a_service_name_ending_in_a_newline_is_a_load_error(project: Path) -> None:
    """`$` matches before a final newline: `[services."a\\n"]` loaded, then failed at
    spawn as an internal error, with a log file named `a\\n.log`."""
    dash, = free_ports(1)
    write_stack(project, stack_header(dash) + '[services."a\\n"]\ncommand = ["sleep", "1"]\n')
    up = hd(project, "up", "--detach", timeout=60)
    assert up.returncode == 3, up.stdout + up.stderr
    assert_clean(up)


@pytest.mark.parametrize("args,words", [
    (("logs", "--lines", "abc"), "--lines takes a whole number of lines, got 'abc'"),
    (("logs", "--lines", "-5"), "--lines must be 0 or more, got -5"),
    (("status", "--bogus"), "no command or flag is '--bogus'"),
    (("nosuchcommand",), "no command or flag is 'nosuchcommand'"),
    # invoke's own object was shown: `Flag <Argument: detail_type> needed value` (adv59)
    (("events.send", "--detail-type", "--file", "x"), "--detail-type needs a value"),
    (("events.send", "--detail-type", "X", "--file", "a", "--file", "b"),
     "no command or flag is 'b', and no flag here takes it as its value (a flag given "
     "twice takes one)"),
])
def test_bad_arguments_to_hd_are_exit_2_and_a_sentence(project: Path, args: tuple[str, ...],
                                                       words: str) -> None:
    """invoke exited 1 on an unknown flag, and `--lines abc` was a 20-line traceback."""
    res = subprocess.run([*HD_CLI, *args], cwd=project, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert words in res.stderr and ("`hd --help`" in res.stderr or "--lines" in words)
    assert_clean(res)


def test_invoke_itself_says_a_bad_lines_value_as_a_sentence(project: Path) -> None:
    """Under the stock `invoke` (no hd program to catch it), invoke's parser ran int()
    on `--lines abc` and printed a traceback."""
    res = subprocess.run([PY, "-m", "invoke", "-r", str(REPO), "logs", "--lines", "abc",
                          "--project-root", str(project)], cwd=project, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--lines takes a whole number of lines, got 'abc'" in res.stderr, res.stderr
    assert_clean(res)


@pytest.mark.parametrize("args", [["status"], ["up", "--detach"], ["down"], ["init"]])
def test_a_deleted_current_folder_is_a_sentence(tmp_path: Path, args: list[str]) -> None:
    """getcwd() fails in a folder removed under the shell (rm -rf, a pruned worktree):
    every command printed FileNotFoundError's traceback."""
    gone = tmp_path / "gone"
    gone.mkdir()
    # -P: as the installed `hd` script, no '' (the current folder) on sys.path. With it,
    # Python 3.13.0's own imports fail in a deleted folder (SystemError in socket's)
    # before any Hippodrome code runs; the console script never has it.
    hd_script = [HD_CLI[0], "-P", *HD_CLI[1:]]
    res = subprocess.run(["sh", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "$@"', "sh",
                          *hd_script, *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "the current folder no longer exists" in res.stderr
    assert_clean(res)


def test_a_missing_src_dir_is_refused_and_not_made(tmp_path: Path) -> None:
    """HIPPODROME_SRC_DIR naming no folder was made by `up`, which then brought the
    bundled stack up in it; -p naming no folder has always been refused."""
    lone, missing = tmp_path / "lone", tmp_path / "typo"
    lone.mkdir()
    try:
        res = subprocess.run([*HD_CLI, "up", "--detach"], cwd=lone, capture_output=True,
                             text=True, timeout=60,
                             env={**os.environ, "HIPPODROME_SRC_DIR": str(missing)})
    finally:  # where the bug is back, `up` brought the bundled stack up in `missing`
        if (missing / ".hippodrome").is_dir():
            force_down(Registry(missing))
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"HIPPODROME_SRC_DIR={missing}: no such folder" in res.stderr
    assert not missing.exists() and not (lone / ".hippodrome").exists()
    assert_clean(res)


def test_every_collection_task_can_be_named_as_two_words() -> None:
    """README promised `hd control ...`; only `hd export k8s` worked as two words."""
    from hippo_tasks.tasks import ns
    from hippo_tasks.tasks.program import SUBCOMMANDS, TOP_TASKS, dotted

    collections = {name: tuple(sorted(c.task_names)) for name, c in ns.collections.items()}
    assert {k: tuple(sorted(v)) for k, v in SUBCOMMANDS.items()} == collections
    assert sorted(TOP_TASKS) == sorted(ns.tasks)
    assert dotted(["control", "status", "-j"]) == ["control.status", "-j"]
    assert dotted(["why", "--help"]) == ["--help", "why"]
    assert dotted(["status", "--help", "--project-root", "x"]) == ["--help", "status"]
    assert dotted(["control", "stop", "-h"]) == ["--help", "control.stop"]
    assert dotted(["stauts", "--help"]) == ["stauts", "--help"]  # invoke's sentence, exit 2


def test_help_after_a_task_with_a_positional_argument_is_help(tmp_path: Path) -> None:
    """`hd why --help` asked the daemon about a service named '--help' (exit 5 with no
    daemon, 2 with one) instead of showing the task's flags."""
    for argv in (["why", "--help"], ["why", "-h"], ["control", "status", "--help"]):
        res = subprocess.run([*HD_CLI, *argv], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0 and res.stdout.startswith("Usage: hd"), (argv, res)
    for argv in (["stauts", "--help"], ["control"], ["control", "--help"]):
        res = subprocess.run([*HD_CLI, *argv], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 2 and res.stderr.startswith("hippodrome: "), (argv, res)
        assert "Traceback" not in res.stderr
    two = subprocess.run([*HD_CLI, "control", "status"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    one = subprocess.run([*HD_CLI, "status"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert (two.returncode, two.stderr) == (one.returncode, one.stderr) and one.returncode == 5


def test_an_edit_to_an_env_file_after_up_is_said_not_silently_ignored(
        project: Path) -> None:
    """`.env` edited during the day, then `hd restart`: the service kept the old value,
    and nothing said so (an edit of hippodrome.toml was noted)."""
    dash, port = free_ports(2)
    (project / ".env").write_text("FOO=old\n")
    write_stack(project, stack_header(dash) + toy_service("web", port)
                + 'env_file = [".env"]\n')
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        assert "was saved after" not in hd(project, "status", check=True).stderr
        (project / ".env").write_text("FOO=new\n")
        note = (".env was saved after this stack started; the running stack (and a "
                "restart) uses it as it was then: `hd down` then `hd up` applies the change")
        for args in (["status"], ["restart", "--service", "web"]):
            res = hd(project, *args, timeout=60)
            assert res.returncode == 0 and note in res.stderr, (args, res.stderr)
    finally:
        hd(project, "down", timeout=60)


def test_up_on_a_running_stack_whose_file_was_broken_says_it_runs(project: Path) -> None:
    """`hd up` again after an edit made a cycle: the load error alone, exit 3, did not
    say the stack still ran (adv24 a/2). It is "already running", exit 7, and the note
    gives the load error."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        stack = project / "hippodrome.toml"
        stack.write_text(stack.read_text() + 'depends_on = ["web"]\n')
        up = hd(project, "up", "--detach", timeout=60)
        assert up.returncode == 7, up.stdout + up.stderr
        assert "is already running" in up.stderr and "depends on itself (a cycle)" in \
            up.stderr and "fix the file before `hd down`" in up.stderr, up.stderr
        status = hd(project, "status", timeout=60)
        assert status.returncode == 0 and "(a cycle)" in status.stderr, status.stderr
    finally:
        hd(project, "down", timeout=60)
    up = hd(project, "up", "--detach", timeout=60)  # nothing runs now: the error alone
    assert up.returncode == 3 and "(a cycle)" in up.stderr, up.stdout + up.stderr


def test_an_env_file_edited_into_one_up_refuses_is_said_before_down(project: Path) -> None:
    """The note checked the stack file alone: a `.env` line that is no NAME=value (or an
    unset ${env:X}) read "hd down then hd up applies the change", and `up` on the running
    stack gave the load error alone, exit 3 (adv25 d/5)."""
    dash, port = free_ports(2)
    (project / ".env").write_text("X=1\n")
    write_stack(project, stack_header(dash) + toy_service("web", port)
                + 'env_file = [".env"]\n')
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        (project / ".env").write_text("X=1\nnot a valid line\n")
        for argv, code in ((("status",), 0), (("up", "--detach"), 7)):
            res = hd(project, *argv, timeout=60)
            assert res.returncode == code, (argv, res.stdout + res.stderr)
            assert "the next `hd up` here refuses the stack file as it is now" in \
                res.stderr and "not a NAME=value line" in res.stderr, res.stderr
            assert "applies the change" not in res.stderr
    finally:
        hd(project, "down", timeout=60)


def test_a_service_added_after_up_is_named_as_such_to_the_api(project: Path) -> None:
    """A service written into the stack file after `up`, then started through the API
    (as MCP does): a bare "unknown service", where the command line said the file had
    changed; an agent that had just added it was told it did not exist."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        with open(project / "hippodrome.toml", "a") as fh:
            fh.write('\n[services.newone]\ncommand = ["sleep", "600"]\n')
        request = urllib.request.Request(f"http://127.0.0.1:{dash}/api/services/newone/start",
                                         data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        body = json.loads(refused.value.read())
        assert refused.value.code == 404, body
        assert "'newone' is in the stack file but not part of this run (added to " \
               "hippodrome.toml after this stack started" in body["error"], body
    finally:
        hd(project, "down", timeout=60)


def test_an_edit_to_the_stack_file_after_up_is_said_not_silently_ignored(
        project: Path) -> None:
    """The daemon runs the stack as read at `up`: a restart kept the old env, a new
    service was 'unknown', and nothing said the file had changed. A file whose time is
    in the future (from an archive) is not 'changed' for ever after."""
    dash, port = free_ports(2)
    stack_file = project / "hippodrome.toml"
    write_stack(project, stack_header(dash) + toy_service("web", port))
    future = time.time() + 3600
    os.utime(stack_file, (future, future))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        quiet = hd(project, "status", check=True)
        assert "was saved after this stack started" not in quiet.stderr, quiet.stderr
        stack_file.write_text(stack_file.read_text() + 'env = { GREETING = "new" }\n')
        note = ("hippodrome.toml was saved after this stack started; the running stack "
                "(and a restart) uses it as it was then: `hd down` then `hd up` applies "
                "the change")
        for args, code in ((["status"], 0), (["restart", "--service", "web"], 0),
                           (["up", "--detach"], 7),
                           # a service the edit added (or a rename): unknown to the
                           # running stack, and the note is when it is needed most
                           (["restart", "--service", "webapp"], 2),
                           (["start", "--service", "webapp"], 2)):
            res = hd(project, *args, timeout=60)
            assert res.returncode == code and note in res.stderr, (args, res.stderr)
        assert json.loads(hd(project, "status", "--json", check=True).stdout)["services"]
        hd(project, "down", check=True)
        hd(project, "up", "--detach", check=True, timeout=60)
        again = hd(project, "status", check=True)
        assert "was saved after" not in again.stderr, again.stderr
    finally:
        hd(project, "down", timeout=60)


def test_only_naming_no_service_is_refused_not_the_whole_stack(project: Path) -> None:
    """`--only ,` (say `--only "$SERVICES"` with the variable empty of names) started
    every service of the profile."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    res = hd(project, "up", "--detach", "--only", ",", timeout=60)
    try:
        assert res.returncode == 2, res.stdout + res.stderr
        assert "--only ',' names no service" in res.stderr
        assert not (project / ".hippodrome" / "daemon.log").exists()
    finally:
        hd(project, "down", timeout=60)


@pytest.mark.parametrize("fast", ["1", "0"])
def test_an_empty_service_name_is_refused_not_the_whole_stack(project: Path, fast: str) -> None:
    """`hd stop -s "$SVC"` with SVC unset stopped every service and exited 0 (through
    the fast path and through invoke alike)."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True)
    try:
        pid = registry(project)["services"]["web"]["pid"]
        for verb in ("stop", "restart", "start"):
            res = hd(project, verb, "--service", "", timeout=60,
                     env={"HIPPODROME_FAST_CLI": fast})
            assert res.returncode == 2, (verb, res.stdout + res.stderr)
            assert "--service needs a service's name, got ''" in res.stderr
            assert_clean(res)
        assert registry(project)["services"]["web"]["pid"] == pid
        assert registry(project)["services"]["web"]["state"] == "running"
    finally:
        hd(project, "down", timeout=60)


def test_a_project_root_too_long_for_the_file_system_is_a_sentence(project: Path) -> None:
    res = hd(project, "status", "--project-root", "x" * 300, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--project-root xxx" in res.stderr and "File name too long" in res.stderr
    assert_clean(res)


@pytest.mark.parametrize("args,words", [
    (("down", "--bogus"), "no command or flag is '--bogus'"),
    (("why",), "'why' did not receive required positional arguments"),
    (("nosuchtask",), "no command or flag is 'nosuchtask'"),
    (("logs", "--lines"), "--lines needs a value"),
])
def test_the_stock_invoke_says_bad_arguments_as_hd_does(project: Path, args: tuple[str, ...],
                                                       words: str) -> None:
    """`hd X` is `invoke X`: invoke's own Program exited 1 on these, where hd exits 2."""
    res = subprocess.run([PY, "-m", "invoke", "-r", str(REPO), *args], cwd=project,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert words in res.stderr, res.stderr
    assert_clean(res)


@pytest.mark.parametrize("argv", [("down",), ("status",), ("up", "--detach"),
                                  ("up", "--show", "")])
def test_an_empty_project_root_or_show_is_refused_not_taken_for_everything(
        project: Path, argv: tuple[str, ...]) -> None:
    """`hd down -p "$P"` with P unset stopped the stack of wherever the script ran, and
    `--show ''` showed every service (adv24 c/8), where an empty `--only` is refused."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        daemon = registry(project)["daemon"]["pid"]
        args = [*argv, "--project-root", ""] if argv[-1] != "" else \
            [*argv, "--project-root", str(project)]
        res = subprocess.run([*HD_CLI, *args], cwd=project, capture_output=True, text=True,
                             timeout=60)
        assert res.returncode in (2, 7), res.stdout + res.stderr
        if argv[-1] == "":
            assert "--show '' names no service" in res.stderr, res.stderr
        else:
            assert res.returncode == 2 and "--project-root '' names no folder" in \
                res.stderr, res.stderr
        assert registry(project)["daemon"]["pid"] == daemon
    finally:
        hd(project, "down", timeout=60)


def test_invoke_search_root_acts_on_that_folders_stack(tmp_path: Path) -> None:
    """`invoke -r projA down`, run from projB: invoke loaded projA's tasks.py, and the
    task stopped projB's stack, the current folder's (adv24 c/10)."""
    from hippo_tasks.tasks.starter import TASKS_PY

    projects = [tmp_path / "projA", tmp_path / "projB"]
    for folder, (dash, port) in zip(projects, (free_ports(2), free_ports(2)), strict=True):
        folder.mkdir()
        write_stack(folder, stack_header(dash) + toy_service("web", port))
        (folder / "tasks.py").write_text(TASKS_PY)
        hd(folder, "up", "--detach", check=True, timeout=60)
    a, b = projects
    try:
        b_daemon = registry(b)["daemon"]["pid"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
        res = subprocess.run([PY, "-m", "invoke", "-r", str(a), "down"], cwd=b, env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        assert not (registry(a).get("daemon") or {}), registry(a)
        assert registry(b)["daemon"]["pid"] == b_daemon
        status = subprocess.run([PY, "-m", "invoke", "status"], cwd=b, env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "web" in status.stdout, status.stderr
    finally:
        for folder in projects:
            hd(folder, "down", timeout=60)


@pytest.mark.parametrize("how", ["nested", "src_dir"])
def test_a_running_stack_whose_file_was_removed_is_still_this_folders(
        tmp_path: Path, how: str) -> None:
    """A nested project's hippodrome.toml removed while its stack runs (a checkout of a
    branch without it): the search walked on to the parent's stack file, and `hd down`
    in the nested folder stopped the PARENT's stack and left its own running; with
    HIPPODROME_SRC_DIR set, that folder's (adv45 R/12). The running stack here wins."""
    outer = tmp_path / "outer"
    inner = outer / "pkg" / "inner" if how == "nested" else tmp_path / "inner"
    for folder in (outer, inner):
        folder.mkdir(parents=True, exist_ok=True)
        dash, port = free_ports(2)
        write_stack(folder, stack_header(dash) + toy_service("web", port))
        hd(folder, "up", "--detach", check=True, timeout=60)
    try:
        outer_daemon = registry(outer)["daemon"]["pid"]
        inner_url = registry(inner)["daemon"]["url"]
        (inner / "hippodrome.toml").unlink()
        env = {**os.environ, "NO_COLOR": "1",
               **({"HIPPODROME_SRC_DIR": str(outer)} if how == "src_dir" else {})}
        status = subprocess.run([*HD_CLI, "status"], cwd=inner, env=env, capture_output=True,
                                text=True, timeout=60)
        assert status.returncode == 0 and inner_url in status.stdout, \
            status.stdout + status.stderr
        down = subprocess.run([*HD_CLI, "down"], cwd=inner, env=env, capture_output=True,
                              text=True, timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not registry(inner).get("daemon"), registry(inner)
        assert registry(outer)["daemon"]["pid"] == outer_daemon, "the outer stack was stopped"
        if how == "nested":  # a copy of a running stack's .hippodrome makes no root (G/1)
            import shutil

            hd(inner, "up", "--detach", check=True, timeout=60)
            copy = outer / "pkg" / "copy"
            copy.mkdir()
            shutil.copytree(inner / ".hippodrome", copy / ".hippodrome",
                            ignore=shutil.ignore_patterns("*.lock"))
            status = subprocess.run([*HD_CLI, "status"], cwd=copy, env=env,
                                    capture_output=True, text=True, timeout=60)
            assert status.returncode == 0 and registry(outer)["daemon"]["url"] in \
                status.stdout, status.stdout + status.stderr
    finally:
        for folder in (inner, outer):
            hd(folder, "down", timeout=60)
            force_down(Registry(folder))


def test_down_from_a_subfolder_names_the_folder_whose_stack_it_stops(project: Path) -> None:
    """`hd down` in a subfolder with no stack file stops the nearest project's stack, as
    documented, and said only "stopping the stack" (adv53 F8): a nested stack file just
    removed by a checkout, and another project's stack went with no word of which."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True, timeout=60)
    sub = project / "sub"
    sub.mkdir()
    try:
        env = {**os.environ, "NO_COLOR": "1"}
        down = subprocess.run([*HD_CLI, "down"], cwd=sub, env=env, capture_output=True,
                              text=True, timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        assert f"stopping the stack of {project} (daemon pid" in down.stdout, down.stdout
        hd(project, "up", "--detach", check=True, timeout=60)
        down = subprocess.run([*HD_CLI, "down"], cwd=project, env=env, capture_output=True,
                              text=True, timeout=60)
        assert "stopping the stack (daemon pid" in down.stdout, down.stdout
    finally:
        hd(project, "down", timeout=60)


def test_a_dry_run_is_refused_not_carried_out(project: Path) -> None:
    """`hd --help` offered `-R, --dry  Echo commands instead of running`, and `hd --dry
    down` (or `invoke --dry down`) stopped the stack (adv24 c/11): the tasks run no
    shell commands for it to echo. Refused, exit 2, and gone from hd's help."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        daemon = registry(project)["daemon"]["pid"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
        for argv in ([*HD_CLI, "--dry", "down"], [PY, "-m", "invoke", "-r", str(REPO), "-R",
                                                  "down", "--project-root", str(project)]):
            res = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True,
                                 timeout=60)
            assert res.returncode == 2 and "--dry (invoke's dry run" in res.stderr, \
                res.stdout + res.stderr
            assert registry(project)["daemon"]["pid"] == daemon
        # invoke then asked for the password, and with no terminal: EOFError traceback
        sudo = subprocess.run([*HD_CLI, "--prompt-for-sudo-password", "status"], cwd=project,
                              env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert sudo.returncode == 2 and "Traceback" not in sudo.stderr and \
            "--prompt-for-sudo-password asks for sudo's password" in sudo.stderr, sudo.stderr
        helped = subprocess.run([*HD_CLI, "--help"], capture_output=True, text=True, timeout=60)
        assert helped.returncode == 0 and "--dry" not in helped.stdout, helped.stdout
        assert "--pty" not in helped.stdout and "--list" in helped.stdout and \
            "Subcommands:" in helped.stdout
    finally:
        hd(project, "down", timeout=60)


def test_a_bad_up_argument_is_exit_2_with_a_stack_running(project: Path) -> None:
    """With a daemon running, `hd up --only nosuch` (or --show, --profile '', --cell)
    said "already running", exit 7, and never named the typo (adv36 c/4); with none,
    exit 2 naming it. Exit 2 naming it either way."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True, timeout=60)
    try:
        for flags, says in ((["--detach", "--only", "nosuch"], "--only names 'nosuch'"),
                            (["--show", "nosuch"], "--show names 'nosuch'"),  # foreground
                            (["--detach", "--profile", ""], "unknown profile ''")):
            res = hd(project, "up", *flags, timeout=60)
            assert res.returncode == 2 and says in res.stderr, (flags, res.stderr)
    finally:
        hd(project, "down", timeout=60)


def test_words_after_dashes_are_refused_by_a_task_that_takes_none(project: Path) -> None:
    """`hd logs -- -s b` printed every service's log, `hd down -- --force` did a plain
    down, exit 0, the words ignored in silence (adv36 c/5); `hd probes` and `hd e2e`
    hand them to pytest. Refused, exit 2, under hd and the stock invoke alike."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    for argv in ([*HD_CLI, "logs", "--", "-s", "b"],
                 [PY, "-m", "invoke", "-r", str(REPO), "down", "--project-root", str(project),
                  "--", "--force"]):
        res = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 2 and "takes no words after `--`" in res.stderr, \
            res.stdout + res.stderr


@pytest.mark.parametrize(("flag", "words"), [
    ("--profile", "unknown profile 'caf\\xe9'"), ("--only", "--only names 'caf\\xe9', which"),
])
def test_a_name_that_is_no_text_is_shown_as_typed(project: Path, flag: str, words: str) -> None:
    """`--profile $'caf\\xe9'` (a Latin-1 terminal) was said as `'caf\\udce9'`, Python's name
    for the byte, where the service errors said `'caf\\xe9'` (adv31's notes)."""
    (port,) = free_ports(1)
    write_stack(project, stack_header(port) + '[services.a]\ncommand = ["sleep", "30"]\n')
    up = hd(project, "up", "--detach", flag, os.fsdecode(b"caf\xe9"), timeout=60)
    assert up.returncode == 2 and words in up.stderr, up.stderr
    assert "udce9" not in up.stdout + up.stderr, up.stdout + up.stderr
