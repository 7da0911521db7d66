"""invoke's own configuration files, read by `hd` before any task runs.

A malformed `~/.invoke.yaml` was a YAML traceback for every command, `hd down`
included, so a running stack could not be stopped; HOME=/dev/null (a service account,
`su`) was NotADirectoryError for `hd init`, `doctor` and `why`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from stackutil import HD_CLI, free_ports, hd, registry, stack_header, toy_service, write_stack


def run(project: Path, home: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    return subprocess.run([*HD_CLI, *args], cwd=project, capture_output=True, text=True,
                          timeout=120, env={**env, "HOME": home, "NO_COLOR": "1"})


@pytest.fixture
def bad_home(tmp_path: Path) -> str:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".invoke.yaml").write_text("run: [1, 2\n")
    return str(home)


def test_a_malformed_user_config_still_lets_the_stack_be_stopped(
        project: Path, bad_home: str) -> None:
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True)
    try:
        for args, code in ((("status",), 0), (("doctor",), 2), (("--list",), 2)):
            res = run(project, bad_home, *args)
            said = res.stdout + res.stderr
            assert res.returncode == code, said
            assert "Traceback" not in said, said
            assert f"cannot read invoke's configuration file {bad_home}/.invoke.yaml " \
                   "(ParserError: " in res.stderr, said
        down = run(project, bad_home, "down")
        assert down.returncode == 0 and "stack stopped" in down.stdout, down.stdout + down.stderr
        assert registry(project)["daemon"] is None
    finally:
        hd(project, "down", check=True)


@pytest.mark.parametrize("args", [("init",), ("doctor",), ("why", "web")])
def test_a_home_that_is_not_a_folder_has_no_config_in_it(project: Path,
                                                         args: tuple[str, ...]) -> None:
    res = run(project, "/dev/null", *args)
    said = res.stdout + res.stderr
    assert "Traceback" not in said and "NotADirectoryError" not in said, said
    assert res.returncode in (0, 1, 5), said  # init writes; doctor checks; why: no daemon
