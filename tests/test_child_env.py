"""What a service's environment holds of Hippodrome's own: PYTHONPATH only for a
program run by Hippodrome's interpreter (`${python}`), never for a service's own; and
there Hippodrome's folder, even one whose path holds the ':' PYTHONPATH is split at."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Harness, run
from stackutil import PY, free_ports, hd, stack_header, wait_for, write_stack

from hippo_tasks.supervision import child_env
from hippo_tasks.supervision.states import State

PARENT = str(Path(__file__).resolve().parents[1])  # where hippo_tasks is, in a checkout
SAY = 'echo "PP=[${PYTHONPATH-unset}]"; exec sleep 600'


def said(lines: list[str]) -> str:
    return next(ln for ln in lines if ln.startswith("PP="))


def test_only_a_program_run_by_our_interpreter_gets_our_packages(project: Path) -> None:
    """Every child got this install's site-packages first on PYTHONPATH: a service in its
    own virtualenv imported our yaml and a 3.11 pydantic_core (adv26 f/2)."""
    mine = os.environ.get("PYTHONPATH", "")
    ours = ('import os, time; print("PP=[" + os.environ.get("PYTHONPATH", "unset") + "]", '
            'flush=True); time.sleep(600)')
    text = (f"[services.own]\ncommand = ['sh', '-c', {SAY!r}]\nreadiness = 'none'\n"
            f"[services.ours]\ncommand = [{PY!r}, '-c', {ours!r}]\nreadiness = 'none'\n")

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        for name in ("own", "ours"):
            assert h.stack.get(name).state == State.RUNNING, h.states(name)
        assert said(h.lines("own")) == f"PP=[{mine or 'unset'}]"
        got = said(h.lines("ours"))[4:-1].split(os.pathsep)
        given = [p for p in mine.split(os.pathsep) if p]
        assert got == (given if PARENT in given else [PARENT, *given]), (got, given)

    run(project, text, scenario)


@pytest.mark.parametrize("mode", ["fork", "exec"])
def test_a_daemon_started_either_way_passes_the_users_pythonpath_as_it_is(
        project: Path, mode: str) -> None:
    """`python -m hippo_tasks.daemon` (HIPPODROME_DAEMON_EXEC=1) is itself run by our
    interpreter, so it gets the entry; its services must not inherit it."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash)
                + f"[services.own]\ncommand = ['sh', '-c', {SAY!r}]\nreadiness = 'none'\n")
    env = {"PYTHONPATH": f"/opt/mine{os.pathsep}/opt/theirs",
           "HIPPODROME_DAEMON_EXEC": "1" if mode == "exec" else "0"}
    hd(project, "up", "--detach", check=True, env=env)
    try:
        log = project / ".logs" / "latest" / "own.log"
        wait_for(lambda: log.exists() and "PP=" in log.read_text(), what="own's line")
        assert f"PP=[/opt/mine{os.pathsep}/opt/theirs]" in log.read_text(), log.read_text()
    finally:
        hd(project, "down", env=env)


def packages_in(folder: Path) -> Path:
    """A folder standing in for Hippodrome's, with one package a service imports."""
    (folder / "probe_pkg").mkdir(parents=True)
    (folder / "probe_pkg" / "__init__.py").write_text("WHERE = __file__\n")
    return folder


@pytest.mark.parametrize("name", ["plain", "wei:rd=x", "a:b:c"])
def test_a_python_service_imports_from_hippodromes_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    folder = packages_in(tmp_path / name / "pkgs")
    monkeypatch.setattr(child_env, "PACKAGES", str(folder))
    # The link a ':' path is named through goes in the temporary folder: this test's
    # own, removed with it (each run left two links in /tmp/hippodrome-UID).
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    child_env.path_entry.cache_clear()
    argv = [sys.executable, "-c", "import probe_pkg, os; print(os.path.realpath(probe_pkg.WHERE))"]
    env = child_env.for_program({k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                                argv)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str((folder / "probe_pkg" / "__init__.py").resolve())
    if ":" in name:
        assert str(folder) not in env["PYTHONPATH"].split(os.pathsep)
        assert env["PYTHONPATH"].split(os.pathsep)[0].startswith(str(tmp_path / "tmp")), \
            env["PYTHONPATH"]
    child_env.path_entry.cache_clear()  # no entry naming this test's folders kept


def test_a_link_in_a_folder_others_may_write_is_not_trusted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the user's folder under the temporary directory is not theirs alone, no
    link is made there (one could be swapped for another folder): the path as it is."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    shared = tmp_path / f"hippodrome-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    folder = str(tmp_path / "x:y")
    child_env.path_entry.cache_clear()
    try:
        assert child_env.path_entry(folder) == folder
        assert list(shared.iterdir()) == []
    finally:
        child_env.path_entry.cache_clear()


def test_a_relative_temporary_directory_gives_an_absolute_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`TMPDIR=.`: tempfile keeps "." as it is, and the entry was relative, so a service
    with a cwd of its own imported another copy of Hippodrome (adv48 A/5)."""
    import tempfile

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", ".")
    monkeypatch.setattr(tempfile, "tempdir", None)
    folder = packages_in(tmp_path / "x:y")
    child_env.path_entry.cache_clear()
    try:
        entry = child_env.path_entry(str(folder))
        assert os.path.isabs(entry), entry
        assert Path(entry).resolve() == folder.resolve()
    finally:
        child_env.path_entry.cache_clear()
