"""`invoke probes`, `invoke e2e` and `invoke seed` against a real core stack (its own
seed job ran at `up`), through invoke's CLI machinery in subprocesses."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from data_stack import run_task
from stackutil import free_offset, hd

from hippo_platform.seed.files import read_env_file
from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry
from hippo_tasks.tasks.data import pytest_args

USER_SUITE = textwrap.dedent('''
    import os
    import requests

    def test_env_is_loaded():
        assert os.environ["ENVIRONMENT"] == "hippodrome"
        assert os.environ["HIPPODROME_RANDOM_SEED"] == "42"

    def test_lists_the_seeded_indexes():
        answer = requests.get(os.environ["CONTROLLER_URL"] + "/api/v2/indexes", timeout=10,
                              headers={"x-api-key": os.environ["HIPPODROME_API_KEY"]})
        names = {ix["indexName"] for ix in answer.json()["results"]}
        assert set(os.environ["HIPPODROME_SEED_INDEXES"].split(",")) <= names

    def test_fails_on_purpose():
        assert False, "deselect me with -k"
''')


def line(status: str, name: str, text: str, output: str) -> bool:
    """A report line, whatever the column widths."""
    pattern = rf"^\s+\[{status}\]\s+{re.escape(name)}\s+{re.escape(text)}"
    return re.search(pattern, output, re.MULTILINE) is not None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("data-tasks") / "proj"
    root.mkdir()
    try:
        up = hd(root, "up", "--detach", "--port-offset", str(free_offset()),
                env={"HIPPODROME_RANDOM_SEED": "42"})
        assert up.returncode == 0, up.stdout + up.stderr
        yield root
    finally:
        hd(root, "down", timeout=60)
        force_down(Registry(root))


def test_probes_pass_on_a_healthy_stack(stack: Path) -> None:
    done = run_task(stack, "probes")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("fake_cell", "controller", "console"):
        assert line("OK", name, "running, healthy", done.stdout)
    assert line("OK", "seed", "job, exited 0", done.stdout)
    for step in ("api key", "create index", "add document", "search", "remove document",
                 "search after remove", "delete index"):
        assert line("OK", step, "", done.stdout)
    assert "the seeded account" in done.stdout and "0 failed" in done.stdout
    # `--json "$OUT"` with OUT unset ran the probes and wrote no file, exit 0 (adv26 g/4)
    empty = run_task(stack, "probes", "--json", "")
    assert empty.returncode == 2 and "--json '' names nothing" in empty.stderr, empty.stderr
    assert "OK" not in empty.stdout
    for after in (["--", "--json", ""], ["--", "--json="], ["--json", "a.json", "--",
                                                             "--json", "b.json"]):
        done = run_task(stack, "probes", *after)  # past hd's check, to the program (j/5)
        assert done.returncode == 2 and "--json" in done.stderr, done.stderr
        assert "OK" not in done.stdout


def test_probes_fail_readably_when_a_service_is_down(stack: Path) -> None:
    assert hd(stack, "stop", "--service", "controller").returncode == 0
    try:
        done = run_task(stack, "probes")
    finally:
        assert hd(stack, "start", "--service", "controller").returncode == 0
    assert done.returncode == 1, done.stdout + done.stderr
    assert line("FAIL", "controller", "stopped", done.stdout)
    assert line("FAIL", "api key", "", done.stdout) and "unreachable" in done.stdout
    assert line("SKIP", "create index", "", done.stdout)
    assert line("SKIP", "delete index", "", done.stdout)
    assert line("OK", "fake_cell", "", done.stdout)


def test_e2e_runs_a_user_suite_with_the_env_file_and_pytest_args(
    stack: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_user.py").write_text(USER_SUITE)
    quiet = ["-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]  # a fast start
    chosen = run_task(stack, "e2e", str(suite), "--", *quiet,
                      "-k", "env_is_loaded or lists_the_seeded")
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    assert "2 passed, 1 deselected" in chosen.stdout
    assert ".env.e2e" in chosen.stdout
    everything = run_task(stack, "e2e", str(suite), "--", *quiet)
    assert everything.returncode == 1  # pytest's own exit code
    assert "1 failed, 2 passed" in everything.stdout


def test_e2e_refuses_an_env_file_from_another_run(stack: Path, tmp_path: Path) -> None:
    """`.env.e2e` from an earlier `up` (other ports, another prefix): the suite ran
    against dead URLs (or whatever else listened there) without a word."""
    env_file = stack / ".env.e2e"
    kept = env_file.read_text()
    try:
        env_file.write_text(kept.replace("HIPPODROME_TABLE_PREFIX=", "HIPPODROME_TABLE_PREFIX=x"
                                         ).replace("export HIPPODROME_DASHBOARD_URL=",
                                                   "export HIPPODROME_DASHBOARD_URL=old"))
        done = run_task(stack, "e2e", str(tmp_path))
        assert done.returncode == 2, done.stdout + done.stderr
        assert "was written for another run of the stack: HIPPODROME_DASHBOARD_URL" in \
            done.stderr and "Run `hd seed`" in done.stderr, done.stderr
        assert "pytest" not in done.stdout
    finally:
        env_file.write_text(kept)
    # seeded for another cell (adv59 F4: a local one handed to a `--cell staging` suite)
    assert "export HIPPODROME_CELL=local\n" in kept
    try:
        env_file.write_text(kept.replace("HIPPODROME_CELL=local", "HIPPODROME_CELL=staging"))
        done = run_task(stack, "e2e", str(tmp_path))
        assert done.returncode == 2, done.stdout + done.stderr
        assert "was written for another run of the stack: HIPPODROME_CELL 'staging' " \
            "(running: 'local'). Run `hd seed`" in done.stderr, done.stderr
    finally:
        env_file.write_text(kept)
    # a byte that is not UTF-8, or a folder there: the codec's words naming no file, and
    # "no .env.e2e" (adv59)
    try:
        env_file.write_bytes(kept.encode() + b"# caf\xe9\n")
        done = run_task(stack, "e2e", str(tmp_path))
        line = kept.count("\n") + 1
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"{env_file}:{line}: not UTF-8 text (byte 0xe9)" in done.stderr, done.stderr
        env_file.unlink()
        env_file.mkdir()
        done = run_task(stack, "e2e", str(tmp_path))
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"{env_file} is a directory, where seeding writes a file" in done.stderr
    finally:
        if env_file.is_dir():
            env_file.rmdir()
        env_file.write_text(kept)
    lonely = tmp_path / "lonely"  # no stack runs there at all
    lonely.mkdir()
    (lonely / ".env.e2e").write_text(kept)
    done = run_task(lonely, "e2e", str(tmp_path))
    assert done.returncode == 5 and "No Hippodrome daemon is running" in done.stderr, done.stderr


def test_e2e_help_is_usage_not_a_path(tmp_path: Path) -> None:
    done = run_task(tmp_path, "e2e", "--help")
    assert done.returncode == 0 and "Usage: invoke e2e" in done.stdout


def test_e2e_without_an_env_file_says_how_to_get_one(tmp_path: Path) -> None:
    done = run_task(tmp_path, "e2e", str(tmp_path))
    assert done.returncode == 2
    assert ".env.e2e" in done.stderr and "hd seed" in done.stderr


def test_seed_task_reuses_the_jobs_account_and_takes_a_seed(stack: Path) -> None:
    before = read_env_file(stack / ".env.e2e")
    again = run_task(stack, "seed")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "seed 42" in again.stdout and "(reused)" in again.stdout
    assert read_env_file(stack / ".env.e2e")["HIPPODROME_API_KEY"] == before["HIPPODROME_API_KEY"]
    other = run_task(stack, "seed", "--seed", "5")
    assert other.returncode == 0 and "seed 5" in other.stdout
    assert read_env_file(stack / ".env.e2e")["HIPPODROME_RANDOM_SEED"] == "5"
    assert run_task(stack, "seed", "--seed", "x").returncode == 2
    assert run_task(stack, "seed").returncode == 0  # back to 42 for whoever runs next


def test_tasks_without_a_daemon_exit_5(tmp_path: Path) -> None:
    for task in ("seed", "probes"):
        done = run_task(tmp_path, task)
        assert done.returncode == 5 and "hd up" in done.stderr


class _Ctx:
    def __init__(self, remainder: str | None) -> None:
        if remainder is not None:
            self.remainder = remainder


def test_pytest_args_keep_quoting_when_the_argv_proves_it() -> None:
    argv = ["invoke", "e2e", "p", "--", "-k", "a and b", "-x"]
    assert pytest_args(_Ctx("-k a and b -x"), argv) == ["-k", "a and b", "-x"]  # type: ignore[arg-type]
    assert pytest_args(_Ctx("-k 'a and b'"), ["prog"]) == ["-k", "a and b"]  # type: ignore[arg-type]
    assert pytest_args(_Ctx(""), ["x", "--", "-q"]) == []  # type: ignore[arg-type]
    assert pytest_args(_Ctx(None), argv) == ["-k", "a and b", "-x"]  # type: ignore[arg-type]
