"""`invoke seed` / `invoke probes` run the stack file's [commands.NAME], not platform code.

A stack of one's own (no bundled platform at all) declares its own seed and probes
programs; the tasks run them against the running daemon with the stack's env contract
rendered for it (port offset, seed, the dashboard's URL), pass their output and exit
code through, and say what to do when the stack offers no such command.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from data_stack import run_task
from stackutil import HD_CLI, free_offset, hd, wait_for

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

REPORT = ("import os, sys; print('web', os.environ['WEB_URL'], 'seed', os.environ['SEED'], "
          "'dash', os.environ['HIPPODROME_DASHBOARD_URL'], 'own', os.environ['OWN'], "
          "'cwd', os.getcwd()); sys.exit(int(sys.argv[1]))")
STACK = f"""
[stack]
defaults = false

[env]
WEB_URL = "${{url:web}}"
SEED = "${{random_seed}}"

[services.web]
command = ["${{python}}", "-m", "http.server", "${{port}}", "--bind", "127.0.0.1"]
port = 9001

[commands.seed]
command = ["${{python}}", "-c", "{REPORT}", "0"]
env = {{ OWN = "seed's own" }}
cwd = "tools"

[commands.probes]
command = ["${{python}}", "-c", "{REPORT}", "3"]
env = {{ OWN = "probes' own" }}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    root = tmp_path_factory.mktemp("stack-commands") / "proj"
    (root / "tools").mkdir(parents=True)
    (root / "hippodrome.toml").write_text(STACK)
    offset = free_offset()
    try:
        up = hd(root, "up", "--detach", "--port-offset", str(offset))
        assert up.returncode == 0, up.stdout + up.stderr
        yield root, offset
    finally:
        hd(root, "down", timeout=60)
        force_down(Registry(root))


def test_seed_runs_the_stacks_command_with_the_rendered_contract(
        stack: tuple[Path, int]) -> None:
    root, offset = stack
    done = run_task(root, "seed", "--seed", "7")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == [
        "web", f"http://127.0.0.1:{9001 + offset}", "seed", "7",
        "dash", f"http://127.0.0.1:{9000 + offset}", "own", "seed's", "own",
        "cwd", str((root / "tools").resolve())]


def test_probes_pass_the_commands_exit_code_through(stack: tuple[Path, int]) -> None:
    root, _ = stack
    done = run_task(root, "probes")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "own probes' own" in done.stdout and "Traceback" not in done.stderr


def test_a_stack_without_the_command_says_how_to_add_one(stack: tuple[Path, int]) -> None:
    root, _ = stack
    stack_file = root / "hippodrome.toml"
    stack_file.write_text(STACK.split("[commands.probes]")[0])
    try:
        done = run_task(root, "probes")
    finally:
        stack_file.write_text(STACK)
    assert done.returncode != 0
    assert "the stack offers no 'probes' command (its [commands.NAME] tables: seed)" in \
        done.stderr
    assert "add a [commands.probes] table" in done.stderr and "Traceback" not in done.stderr


def test_a_command_that_cannot_start_is_one_sentence(stack: tuple[Path, int]) -> None:
    root, _ = stack
    stack_file = root / "hippodrome.toml"
    stack_file.write_text(STACK.replace('["${python}", "-c", "' + REPORT + '", "3"]',
                                        '["./no-such-program"]'))
    try:
        done = run_task(root, "probes")
    finally:
        stack_file.write_text(STACK)
    assert done.returncode != 0
    assert "cannot run the stack's [commands.probes] (./no-such-program)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "env", "said"), [
    (["--seed", "abc"], {}, "--seed must be an integer, got 'abc'"),
    (["--seed", "3.0"], {}, "--seed must be an integer, got '3.0'"),
    (["--seed", "\u0663"], {}, "--seed must be an integer, got '\u0663'"),
    (["--seed", "9" * 200], {}, "--seed must be an integer from -9223372036854775808 to "
                                "9223372036854775807, got one of 200 digits"),
    ([], {"HIPPODROME_RANDOM_SEED": "1e3"}, "HIPPODROME_RANDOM_SEED must be an integer, "
                                            "got '1e3'"),
    ([], {"HIPPODROME_RANDOM_SEED": str(2**63)}, "HIPPODROME_RANDOM_SEED must be an integer "
                                                 "from -9223372036854775808"),
])
def test_a_seed_that_cannot_seed_is_refused_before_the_program_runs(
        stack: tuple[Path, int], args: list[str], env: dict[str, str], said: str) -> None:
    """A seed of 185 digits passed, and seeding failed at the controller (its account
    name over 200 characters); `٣` was taken as 3 (adv59 F5)."""
    root, _ = stack
    done = run_task(root, "seed", *args, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "web http" not in done.stdout  # the program never ran


def test_the_widest_seed_is_taken(stack: tuple[Path, int]) -> None:
    root, _ = stack
    for seed in (str(2**63 - 1), str(-2**63)):
        done = run_task(root, "seed", f"--seed={seed}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f" seed {seed} " in done.stdout


SLOW_SEED = ("import os, time; open('seed.pid', 'w').write(str(os.getpid())); "
             "time.sleep(60); open('seeded', 'w').write('landed')")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_the_seeding_program_ends_with_a_seed_command_killed_alone(
        stack: tuple[Path, int], sig: signal.Signals) -> None:
    """`kill PID` or `kill -9` of `hd seed` alone, not its process group as Ctrl+C
    reaches, left its seeding program running to the end (adv56): it gets SIGTERM."""
    root, _ = stack
    tools = root / "tools"
    stack_file = root / "hippodrome.toml"
    stack_file.write_text(STACK.replace(f'"{REPORT}", "0"', f'"{SLOW_SEED}"'))
    seed = subprocess.Popen([*HD_CLI, "seed", "--project-root", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    child: psutil.Process | None = None
    try:
        wait_for(lambda: (tools / "seed.pid").is_file()
                 and (tools / "seed.pid").read_text(), 60, what="the seeding program")
        child = psutil.Process(int((tools / "seed.pid").read_text()))
        assert child.ppid() == seed.pid
        os.kill(seed.pid, sig)  # the command alone
        assert seed.wait(30) == -sig
        wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE,
                 30, what="the seeding program to end")
        assert not (tools / "seeded").exists()
    finally:
        stack_file.write_text(STACK)
        if seed.poll() is None:
            seed.kill()
            seed.wait(30)
        if child is not None and child.is_running():
            child.kill()
        for name in ("seed.pid", "seeded"):
            (tools / name).unlink(missing_ok=True)


def test_an_edited_dashboard_port_moves_nothing_the_daemon_runs(
        stack: tuple[Path, int]) -> None:
    """The port offset was the daemon's dashboard port less the file's: once
    `dashboard_port` was edited under the running stack, doctor checked and seed seeded
    ports where nothing ran, as "the running daemon's"."""
    root, offset = stack
    stack_file = root / "hippodrome.toml"
    stack_file.write_text(STACK.replace("defaults = false", "defaults = false\n"
                                        "dashboard_port = 9005"))
    try:
        seeded = run_task(root, "seed", "--seed", "7")
        doctor = hd(root, "doctor")
    finally:
        stack_file.write_text(STACK)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert f"http://127.0.0.1:{9001 + offset}" in seeded.stdout.split()
    assert "saved after this stack started" in seeded.stderr, seeded.stderr
    assert f"port offset {offset} (" in doctor.stdout, doctor.stdout
    # the port the daemon listens on, not the edited one, where nothing is meant to run
    assert f"port {9000 + offset} (dashboard) held by this stack" in doctor.stdout, \
        doctor.stdout
    assert f"port {9005 + offset}" not in doctor.stdout, doctor.stdout


@pytest.mark.parametrize("task", ["seed", "probes"])
def test_a_removed_stack_file_is_said_and_no_other_stacks_command_runs(
        stack: tuple[Path, int], task: str) -> None:
    """Without the file, the stack loaded was the bundled one: `hd seed` ran the bundled
    platform's seed at the running stack's offset ('controller is not reachable ... is
    the stack up'), a program of a stack that was not running."""
    root, _ = stack
    stack_file = root / "hippodrome.toml"
    stack_file.rename(root / "hippodrome.toml.away")
    try:
        done = run_task(root, task)
    finally:
        (root / "hippodrome.toml.away").rename(stack_file)
    assert done.returncode == 3, done.stdout + done.stderr
    assert (f"hippodrome: {stack_file}: was removed after this stack started; `hd {task}` "
            f"runs the stack's [commands.{task}], read from that file: put it back") \
        in done.stderr, done.stderr
    assert "controller" not in done.stdout + done.stderr and "web" not in done.stdout
    assert "Traceback" not in done.stderr
    assert run_task(root, task).returncode in (0, 3)  # back: the stack's own command runs


def test_a_command_whose_cwd_is_missing_names_the_folder(stack: tuple[Path, int]) -> None:
    """It said `cannot run ... (python): No such file or directory`, of a program that
    exists, and never named the missing folder."""
    root, _ = stack
    stack_file = root / "hippodrome.toml"
    stack_file.write_text(STACK.replace('cwd = "tools"', 'cwd = "no-such-folder"'))
    try:
        done = run_task(root, "seed")
    finally:
        stack_file.write_text(STACK)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "[commands.seed] runs in" in done.stderr and "no-such-folder" in done.stderr
    assert "is not a folder: fix its `cwd`" in done.stderr


def test_a_cells_url_the_daemon_was_given_serves_seed_and_doctor_from_any_shell(
        tmp_path: Path) -> None:
    """`HIPPODROME_CELL_URL_STAGING=... hd up --cell staging`, then `hd seed` or `hd
    doctor` from a shell without the variable: exit 3 "cell 'staging' has no URL" and
    "[FAIL] stack file", for a stack running with that URL."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "hippodrome.toml").write_text(
        '[stack]\ndefaults = false\n\n[env]\nCELL = "${cell_url}"\n\n[cells.staging]\n'
        'description = "a shared cell"\n\n[services.web]\n'
        'command = ["${python}", "-m", "http.server", "${port}", "--bind", "127.0.0.1"]\n'
        'port = 9001\n\n[commands.seed]\n'
        'command = ["${python}", "-c", "import os; print(\'cell\', os.environ[\'CELL\'])"]\n')
    offset = free_offset()
    given = {"HIPPODROME_CELL_URL_STAGING": "http://127.0.0.1:1/cell"}
    try:
        up = hd(root, "up", "--detach", "--cell", "staging", "--port-offset", str(offset),
                env=given)
        assert up.returncode == 0, up.stdout + up.stderr
        done = run_task(root, "seed")
        assert done.returncode == 0 and "cell http://127.0.0.1:1/cell" in done.stdout, \
            done.stdout + done.stderr
        doctor = hd(root, "doctor")
        assert "[FAIL] stack file" not in doctor.stdout, doctor.stdout
    finally:
        hd(root, "down", timeout=60)
        force_down(Registry(root))


def test_the_bundled_seed_job_runs_in_the_local_cell_only() -> None:
    """With `--cell staging` the bundled seed job, which writes into the local fake_cell
    only, ran and failed at every start ("seed failed"), and `hd probes` failed with it
    on a healthy stack."""
    from hippo_tasks.model.loader import load_stack
    from hippo_tasks.model.plan import build_plan
    from hippo_tasks.tasks.context import build_options

    spec = load_stack(Path("/nonexistent-project-root"))
    for cell, seeded in (("local", True), ("staging", False)):
        opts = build_options(root=Path("/nonexistent-project-root"), profile="core",
                             cell=cell, table_prefix="t-", only=None, offset=0)
        opts = opts._replace(env={**opts.env, "HIPPODROME_CELL_URL_STAGING": "http://x"})
        assert ("seed" in build_plan(spec, opts).names) is seeded, cell
