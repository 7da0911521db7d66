"""Project root detection and the table prefix from the git branch."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hippo_tasks.errors import UsageError
from hippo_tasks.model.project import default_table_prefix, find_project_root, sanitize_branch


def test_sanitize_branch() -> None:
    assert sanitize_branch("feature/add-auth") == "feature-add-auth"
    assert sanitize_branch("Fix__Thing!!") == "fix-thing"
    assert sanitize_branch("///") == "local"


def test_root_is_nearest_marker(tmp_path: Path) -> None:
    (tmp_path / "hippodrome.toml").write_text("")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project_root(deep, env={}) == tmp_path.resolve()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_marker_of_another_user_in_a_parent_folder_is_refused(tmp_path: Path) -> None:
    """`/tmp/hippodrome.toml` planted by another user: `hd up` in any folder below ran
    its commands as this user (adv24 c/6). Refused, naming the file and its owner; in
    the folder itself (or through --project-root) it is taken."""
    shared = tmp_path / "shared"
    mine = shared / "myclone"
    mine.mkdir(parents=True)
    planted = shared / "hippodrome.toml"
    planted.write_text("")
    os.chown(planted, 65534, 65534)
    with pytest.raises(UsageError) as refused:
        find_project_root(mine, env={})
    said = refused.value.message()
    assert f"{planted} (or the file it links to) belongs to another user" in said and \
        "--project-root" in said, said
    with pytest.raises(UsageError):  # in the shared folder itself too (adv25 d/8)
        find_project_root(shared, env={})
    os.chown(planted, 0, 0)  # root's own (a system install) is taken
    assert find_project_root(mine, env={}) == shared.resolve()
    assert find_project_root(shared, env={}) == shared.resolve()
    theirs = shared / "real.toml"  # a root-owned link to another user's file
    planted.rename(theirs)
    os.chown(theirs, 65534, 65534)
    planted.symlink_to(theirs.name)
    with pytest.raises(UsageError):
        find_project_root(mine, env={})


def test_root_falls_back_to_src_dir_then_cwd(tmp_path: Path) -> None:
    lone = tmp_path / "lone"
    lone.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    assert find_project_root(lone, env={"HIPPODROME_SRC_DIR": str(src)}) == src.resolve()
    assert find_project_root(lone, env={}) == lone.resolve()


def test_prefix_from_branch_and_outside_git(tmp_path: Path) -> None:
    assert default_table_prefix(tmp_path) == "dev-local-"
    subprocess.run(["git", "init", "-q", "-b", "feature/add-auth", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t",
                    "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    assert default_table_prefix(tmp_path) == "dev-feature-add-auth-"


def test_prefix_on_an_unborn_branch(tmp_path: Path) -> None:
    """A fresh `git init -b feature/x` with no commit yet already names its branch."""
    subprocess.run(["git", "init", "-q", "-b", "feature/x", str(tmp_path)], check=True)
    assert default_table_prefix(tmp_path) == "dev-feature-x-"


def test_prefix_on_a_detached_head_is_local(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t",
                    "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "checkout", "-q", "--detach"], check=True)
    assert default_table_prefix(tmp_path) == "dev-local-"


def test_branch_read_from_head_agrees_with_git_in_a_worktree_and_a_subfolder(
        tmp_path: Path) -> None:
    """HEAD is read without starting git; a linked worktree (`.git` is a file naming its
    gitdir) and a project in a subfolder give what `git symbolic-ref` gives."""
    from hippo_tasks.model.project import _git_branch_from_git, git_branch

    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t",
                    "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "-b", "fix/one",
                    str(tmp_path / "wt")], check=True)
    sub = repo / "services" / "api"
    sub.mkdir(parents=True)
    for folder, want in ((repo, "main"), (sub, "main"), (tmp_path / "wt", "fix/one")):
        assert git_branch(folder) == want == _git_branch_from_git(folder)
    subprocess.run(["git", "-C", str(tmp_path / "wt"), "checkout", "-q", "--detach"],
                   check=True)
    assert git_branch(tmp_path / "wt") is None is _git_branch_from_git(tmp_path / "wt")


def test_the_stack_file_stamp_is_of_the_file_as_read_not_as_planned(tmp_path: Path) -> None:
    """The daemon took the stamp when its engine was made, after loading and planning: a
    save in between was never noted, and the stack ran the old text as if current."""
    from hippo_tasks.model.loader import load_stack
    from hippo_tasks.model.plan import Options, build_plan
    from hippo_tasks.model.project import changed_since

    stack = tmp_path / "hippodrome.toml"
    stack.write_text('[stack]\ndefaults = false\n[services.a]\ncommand = ["true"]\n')
    spec = load_stack(tmp_path)
    stack.write_text('[stack]\ndefaults = false\n[services.b]\ncommand = ["false"]\n')
    plan = build_plan(spec, Options(project_root=tmp_path))
    assert plan.names == ("a",)
    assert "was saved after this stack started" in changed_since(tmp_path, plan.file_stamp)


def test_a_stack_file_removed_under_a_running_stack_is_said(tmp_path: Path) -> None:
    """An edit was noted, a deletion was not: and the next `up` there runs the bundle."""
    from hippo_tasks.model.project import changed_since, stack_file_stamp

    stack = tmp_path / "hippodrome.toml"
    stack.write_text('[stack]\ndefaults = false\n[services.a]\ncommand = ["true"]\n')
    stamp = stack_file_stamp(tmp_path)
    assert changed_since(tmp_path, stamp) == ""
    stack.unlink()
    assert "hippodrome.toml was removed after this stack started" in \
        changed_since(tmp_path, stamp)
    assert changed_since(tmp_path, None) == ""


def test_a_stack_file_or_env_file_broken_under_a_running_stack_says_what_up_will_do(
        tmp_path: Path) -> None:
    """A stack file made a link to nothing read "was removed ... the next `hd up` runs the
    bundled stack", and an env_file removed read "saved ... `hd down` then `hd up`
    applies the change": both `up`s refuse the file instead (z/10)."""
    from hippo_tasks.model.project import STAMP_PARTS, changed_since, file_stamp

    stack, env = tmp_path / "hippodrome.toml", tmp_path / ".env"
    stack.write_text('[stack]\ndefaults = false\n')
    env.write_text("A=1\n")
    stamp = STAMP_PARTS.join([file_stamp(stack) or "", f"{env}\t{file_stamp(env)}"])
    assert changed_since(tmp_path, stamp) == ""
    env.unlink()
    said = changed_since(tmp_path, stamp)
    assert said.startswith(".env (an env_file) is gone or unreadable") and \
        "refuses the stack file until it is back" in said, said
    env.mkdir()  # a folder in its place (s/3)
    assert changed_since(tmp_path, stamp).startswith(".env (an env_file) is gone or "
                                                     "unreadable")
    env.rmdir()
    env.write_text("A=2\n")
    assert "was saved after this stack started" in changed_since(tmp_path, stamp)
    stack.unlink()
    stack.mkdir()
    said = changed_since(tmp_path, stamp)
    assert said.startswith("hippodrome.toml is no longer a regular file"), said
    stack.rmdir()
    stack.symlink_to("hippodrome.toml")  # a loop
    said = changed_since(tmp_path, stamp)
    assert said.startswith("hippodrome.toml is now a symbolic link that leads nowhere"), said
    assert "bundled" not in said and "refuses it until it is fixed" in said, said


def test_a_stack_file_edited_into_one_up_refuses_says_so_before_down(tmp_path: Path) -> None:
    """A cycle or a TOML error saved under a running stack read "`hd down` then `hd up`
    applies the change": the user took the stack down, and `up` refused the file (adv24
    a/2). The note now carries the load error, line and all."""
    from hippo_tasks.model.project import changed_since, stack_file_stamp

    stack = tmp_path / "hippodrome.toml"
    good = ('[stack]\ndefaults = false\n[services.db]\ncommand = ["true"]\n'
            '[services.app]\ncommand = ["true"]\ndepends_on = ["db"]\n')
    stack.write_text(good)
    stamp = stack_file_stamp(tmp_path)
    stack.write_text(good.replace('[services.db]\ncommand = ["true"]\n',
                                  '[services.db]\ncommand = ["true"]\ndepends_on = ["app"]\n'))
    said = changed_since(tmp_path, stamp)
    assert "was saved after this stack started, and the next `hd up` here refuses" in said
    assert "dependency cycle" in said and "hippodrome.toml:" in said, said
    assert "applies the change" not in said and "fix the file before `hd down`" in said
    stack.write_text(good + "garbage [[[\n")
    said = changed_since(tmp_path, stamp)
    assert "refuses the stack file as it is now: " in said and ":8" in said, said
    stack.write_text(good + "# a comment\n")
    assert changed_since(tmp_path, stamp).endswith("`hd down` then `hd up` applies the change")


def test_a_file_saved_back_to_its_bytes_is_not_a_change(tmp_path: Path) -> None:
    """`git stash` then `git stash pop`, an editor's save with no change, `touch`: the
    note said the file was saved and `hd down` then `hd up` applied the change, for the
    rest of the run (adv24 a/6). An edit that keeps the size is still one."""
    from hippo_tasks.model.project import STAMP_PARTS, changed_since, file_stamp

    stack, env = tmp_path / "hippodrome.toml", tmp_path / ".env"
    stack.write_text('[stack]\ndefaults = false\n')
    env.write_text("A=1\n")
    stamp = STAMP_PARTS.join([file_stamp(stack) or "", f"{env}\t{file_stamp(env)}"])
    for path in (stack, env):
        text = path.read_text()
        path.write_text(text + "# x\n")
        assert changed_since(tmp_path, stamp), path
        path.write_text(text)
        os.utime(path, ns=(1, 2_000_000_000_000_000_000))  # another time, the same bytes
        assert changed_since(tmp_path, stamp) == "", path
    env.write_text("A=2\n")  # the same size, other bytes
    assert changed_since(tmp_path, stamp).startswith(".env was saved"), \
        changed_since(tmp_path, stamp)
    old = stamp.replace(":" + (file_stamp(stack) or "").rsplit(":", 1)[1], ":", 1)
    assert changed_since(tmp_path, old.split(STAMP_PARTS)[0]) != "", "no checksum: by time"
