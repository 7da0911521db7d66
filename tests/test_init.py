"""`hd init` (issue 12): the files it writes load and run; it never overwrites unasked."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
from hd_shell import Shell, free_offset, hd_bin_dir, user_env
from stackutil import PY, registry

from hippo_tasks.model.loader import load_stack
from hippo_tasks.supervision.scope import marked_pids
from hippo_tasks.tasks import starter


def shell_in(folder: Path, scratch: Path, **env: str) -> Shell:
    return Shell(folder, user_env(hd_bin_dir(scratch / "bin"), **env), scratch)


EXAMPLE = re.compile(r"# ((?:\[|[a-z_]+ = ).*)")
"""A commented TOML line (a table header or `key = value`), not a comment in prose."""


def uncommented(text: str, after: str) -> str:
    """`text` with every commented example from the line `after` on made real."""
    head, sep, tail = text.partition(after)
    assert sep, after
    return head + "\n".join(m.group(1) if (m := EXAMPLE.fullmatch(ln)) else ln
                            for ln in (sep + tail).splitlines())


def test_the_own_stack_loads_and_runs(project: Path, tmp_path: Path) -> None:
    offset = free_offset([9000, 8080])
    sh = shell_in(project, tmp_path / "scratch", HIPPODROME_PORT_OFFSET=str(offset))
    init = sh.run("hd init")
    assert init.returncode == 0, init.stderr
    assert f"wrote hippodrome.toml in {project}" in init.stdout
    assert "next: hd up --detach" in init.stdout
    assert not (project / "tasks.py").exists()
    assert load_stack(project).names == ("page", "web")
    # the port it names is the one `up` here serves (it named the file's 8080, adv57)
    named = re.search(r"serves it on port (\d+)", init.stdout)
    assert named and int(named.group(1)) == 8080 + offset, init.stdout
    assert f"HIPPODROME_PORT_OFFSET={offset}" in init.stdout
    up = sh.run("hd up --detach")
    assert up.returncode == 0, up.stdout + up.stderr
    with urllib.request.urlopen(f"http://127.0.0.1:{named.group(1)}/", timeout=30) as page:
        assert "It works" in page.read().decode()
    token = registry(project)["daemon"]["token"]
    down = sh.run("hd down")
    assert down.returncode == 0, down.stderr
    assert marked_pids(token) == []


def test_an_offset_up_would_refuse_is_named_not_applied(project: Path,
                                                        tmp_path: Path) -> None:
    init = shell_in(project, tmp_path / "scratch", HIPPODROME_PORT_OFFSET="1e2").run("hd init")
    assert init.returncode == 0, init.stderr
    assert "serves it on port 8080, which HIPPODROME_PORT_OFFSET would move, but hd up " \
        "refuses its value" in init.stdout


def test_from_bundled_keeps_the_bundled_stack(project: Path, tmp_path: Path) -> None:
    res = shell_in(project, tmp_path / "scratch").run("hd init --from-bundled")
    assert res.returncode == 0, res.stderr
    text = (project / "hippodrome.toml").read_text()
    assert "defaults = true" in text and text == starter.BUNDLED_STACK
    assert load_stack(project).names == load_stack(None).names


def test_the_commented_examples_load_once_uncommented(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "hippodrome.toml").write_text(uncommented(starter.OWN_STACK, "# [services.db]"))
    assert {"db", "migrate", "app", "search"} <= set(load_stack(own).names)
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    (bundled / "hippodrome.toml").write_text(
        uncommented(starter.BUNDLED_STACK, "# dashboard_port"))
    stack = load_stack(bundled)
    assert {"api", "fixtures", "controller"} <= set(stack.names)
    assert stack.service("console").enabled is False


def test_existing_files_are_never_overwritten_without_force(project: Path,
                                                            tmp_path: Path) -> None:
    sh = shell_in(project, tmp_path / "scratch")
    (project / "hippodrome.toml").write_text("# mine\n")
    res = sh.run("hd init")
    assert res.returncode == 2  # UsageError, in the README's exit-code table
    assert res.stderr.startswith(f"hippodrome: hippodrome.toml already exists in {project}")
    assert "hd init --force" in res.stderr and "nothing was written" in res.stderr
    assert (project / "hippodrome.toml").read_text() == "# mine\n"
    # tasks.py alone in the way: neither file is written
    (project / "hippodrome.toml").unlink()
    (project / "tasks.py").write_text("# mine\n")
    res = sh.run("hd init --tasks")
    assert res.returncode == 2 and "tasks.py already exists" in res.stderr
    assert not (project / "hippodrome.toml").exists()
    res = sh.run("hd init --tasks --force")
    assert res.returncode == 0, res.stderr
    assert (project / "tasks.py").read_text() == starter.TASKS_PY
    assert (project / "hippodrome.toml").read_text() == starter.OWN_STACK
    res = sh.run("hd init --tasks")
    assert "hippodrome.toml and tasks.py already exist" in res.stderr


def test_a_folder_at_a_files_name_is_refused_before_anything_is_written(
        project: Path, tmp_path: Path) -> None:
    """`hd init` advised `--force` for a folder named tasks.py, and `--force` failed
    (exit 10, a message for runtime files) after replacing the user's hippodrome.toml."""
    sh = shell_in(project, tmp_path / "scratch")
    (project / "hippodrome.toml").write_text("# mine, edited by hand\n")
    (project / "tasks.py").mkdir()
    (project / "tasks.py" / "x").write_text("")
    for flags in ("--tasks", "--tasks --force"):
        res = sh.run(f"hd init {flags}")
        assert res.returncode == 2, res.stderr
        assert "tasks.py in " in res.stderr and " is a directory: hd init writes" in res.stderr
        assert "--force" not in res.stderr and "nothing was written" in res.stderr
        assert (project / "hippodrome.toml").read_text() == "# mine, edited by hand\n"
    assert sorted(p.name for p in project.iterdir()) == ["hippodrome.toml", "tasks.py"]
    # what else may stand there is named as `hd up` names it (adv26 g/9)
    (project / "hippodrome.toml").unlink()
    os.mkfifo(project / "hippodrome.toml")
    res = sh.run("hd init --force")
    assert res.returncode == 2 and "hippodrome.toml in " in res.stderr and \
        " is a named pipe (FIFO): hd init writes regular files only" in res.stderr, res.stderr
    (project / "hippodrome.toml").unlink()
    (project / "hippodrome.toml").symlink_to("/dev/null")
    res = sh.run("hd init --force")
    assert res.returncode == 2 and " is a link to /dev/null, which is a device: " in \
        res.stderr, res.stderr


def test_a_link_to_nothing_at_a_files_name_is_not_taken_for_no_file(
        project: Path, tmp_path: Path) -> None:
    """A hippodrome.toml linked to a dotfiles stack not checked out yet: `hd init`
    replaced the link with a file, exit 0 (adv24 c/4). `--force` still replaces it."""
    sh = shell_in(project, tmp_path / "scratch")
    (project / "hippodrome.toml").symlink_to("../dotfiles/shop.toml")
    res = sh.run("hd init")
    assert res.returncode == 2, res.stdout + res.stderr
    assert (f"hippodrome.toml in {project} is a link to ../dotfiles/shop.toml, which does "
            "not exist") in res.stderr and "nothing was written" in res.stderr, res.stderr
    assert os.readlink(project / "hippodrome.toml") == "../dotfiles/shop.toml"
    # a loop is said as one, not as a file to create (adv27 i/6)
    (project / "hippodrome.toml").unlink()
    (project / "hippodrome.toml").symlink_to("hippodrome.toml")
    res = sh.run("hd init")
    assert res.returncode == 2 and "is a symbolic link that leads back to itself (a loop)" \
        in res.stderr, res.stderr
    res = sh.run("hd init --force")
    assert res.returncode == 0, res.stderr
    assert (project / "hippodrome.toml").read_text() == starter.OWN_STACK


def test_a_folder_it_cannot_write_says_nothing_was_written(tmp_path: Path) -> None:
    """It ended "nothing was started or stopped", words for up and down (adv24 c/4)."""
    from hippo_tasks.errors.state_dir import StateDirError
    from hippo_tasks.tasks.scaffold import write_starter

    gone = tmp_path / "deleted-under-the-shell"
    try:
        write_starter(gone)
    except StateDirError as exc:
        said = exc.message()
    else:
        raise AssertionError("wrote into a folder that does not exist")
    assert said.startswith(f"cannot write {gone / 'hippodrome.toml'}: No such file"), said
    assert said.endswith("nothing was written.") and "started or stopped" not in said


def test_tasks_py_makes_invoke_work_in_that_folder(project: Path, tmp_path: Path) -> None:
    offset = free_offset([9000, 8080])
    sh = shell_in(project, tmp_path / "scratch", HIPPODROME_PORT_OFFSET=str(offset))
    assert sh.run("hd init --tasks").returncode == 0
    env = sh.env
    invoke = [PY, "-m", "invoke"]  # no -r: invoke finds this folder's tasks.py
    listed = subprocess.run([*invoke, "--list"], cwd=project, env=env, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert {"up", "down", "status", "init"} <= {ln.split()[0] for ln in
                                                listed.stdout.splitlines()[1:] if ln.strip()}
    up = subprocess.run([*invoke, "up", "--detach"], cwd=project, env=env,
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    assert registry(project)["daemon"]["pid"]
    down = subprocess.run([*invoke, "down"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=120)
    assert down.returncode == 0, down.stderr


def test_a_file_made_while_init_writes_is_not_replaced(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `hd init` at once both passed the check and both said they wrote the file,
    the second over the first (adv24 c). Without --force a file that appears meanwhile
    is kept and nothing is written."""
    from hippo_tasks.errors import UsageError
    from hippo_tasks.tasks import scaffold

    class Racing(dict[str, str]):
        def items(self):  # type: ignore[override]  # the other init wins here
            (tmp_path / "hippodrome.toml").write_text("# the other init's\n")
            return super().items()

    monkeypatch.setattr(scaffold, "starter_files",
                        lambda *_: Racing({"hippodrome.toml": "mine", "tasks.py": "mine"}))
    with pytest.raises(UsageError, match="appeared in .* while hd init wrote"):
        scaffold.write_starter(tmp_path)
    assert (tmp_path / "hippodrome.toml").read_text() == "# the other init's\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hippodrome.toml"]
