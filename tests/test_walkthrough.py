"""The README's "Your own stack in five minutes", run word for word (issue 12).

The walkthrough's blocks are marked in README.md with HTML comments:
`<!-- walkthrough:setup -->` (putting `hd` on PATH: not run here, the test does that),
`<!-- walkthrough:run -->` (shell lines, run one at a time in order, a `cd` holding for
the next line) and `<!-- walkthrough:file NAME -->` (a file written, as shown, into the
folder the shell is in). Ports move by a free HIPPODROME_PORT_OFFSET, which the README
offers for a taken port. The whole walkthrough runs once; each test checks one claim.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hd_shell import Shell, free_offset, hd_bin_dir, user_env
from stackutil import REPO, alive

from hippo_tasks.model.loader import load_stack
from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry
from hippo_tasks.supervision.scope import marked_pids

BLOCK = re.compile(r"<!-- walkthrough:(setup|run|file)(?: (\S+))? -->\n```\w*\n(.*?)^```",
                   re.S | re.M)
COMMANDS = ["mkdir mystack && cd mystack && hd init", "hd up --detach", "hd status",
            "hd restart --service db --cascade", "hd down"]
"""What the walkthrough promises to run, in order (the issue's acceptance)."""
PORTS = [9000, 8400, 8401]  # the dashboard's, app's and db's in the README


@dataclass
class Step:
    kind: str
    name: str
    text: str


def walkthrough(readme: str) -> list[Step]:
    return [Step(kind, name or "", text) for kind, name, text in BLOCK.findall(readme)]


def lines(step: Step) -> list[str]:
    return [ln for ln in step.text.splitlines() if ln.strip() and not ln.startswith("#")]


@dataclass
class Run:
    """What happened, recorded along the way."""

    offset: int
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    folder: Path | None = None
    init_services: tuple[str, ...] = ()
    status: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    visits: list[str] = field(default_factory=list)
    schema_runs: dict[str, int] = field(default_factory=dict)
    token: str = ""
    daemon_pid: int = 0
    left: list[int] = field(default_factory=list)
    error: str = ""


def status_of(shell: Shell) -> dict[str, dict[str, Any]]:
    out = shell.run("hd status --json")
    assert out.returncode == 0, out.stderr
    return {s["name"]: s for s in json.loads(out.stdout)["services"]}


def visit(run: Run) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{8400 + run.offset}/", timeout=30) as r:
        return str(r.read().decode().strip())


def schema_runs(folder: Path) -> int:
    return (folder / ".logs" / "latest" / "schema.log").read_text().count("schema ready")


def check_after(line: str, shell: Shell, run: Run) -> None:
    """What the README says each command leaves behind, recorded for the tests."""
    folder = run.folder = shell.cwd
    if line.endswith("hd init"):
        run.init_services = load_stack(folder).names  # the file `hd init` wrote loads
    elif line in ("hd up --detach", "hd restart --service db --cascade"):
        run.status[line] = status_of(shell)
        run.schema_runs[line] = schema_runs(folder)
        run.visits.append(visit(run))
        if line == "hd up --detach":
            daemon = json.loads((folder / ".hippodrome" / "registry.json").read_text())["daemon"]
            run.token, run.daemon_pid = daemon["token"], daemon["pid"]
            run.visits.append(visit(run))
    elif line == "hd down":
        run.left = marked_pids(run.token)


def play(root: Path, scratch: Path) -> Run:
    steps = walkthrough((REPO / "README.md").read_text())
    run = Run(offset=free_offset(PORTS))
    shell = Shell(root, user_env(hd_bin_dir(scratch / "bin"),
                                 HIPPODROME_PORT_OFFSET=str(run.offset)), scratch)
    for step in steps:
        if step.kind == "file":
            assert (shell.cwd / "hippodrome.toml").is_file(), f"{shell.cwd}: not the stack"
            (shell.cwd / step.name).write_text(step.text)
            continue
        if step.kind == "setup":
            continue
        for line in lines(step):
            run.results[line] = result = shell.run(line)
            if result.returncode != 0:
                run.error = (f"`{line}` exited {result.returncode}\nstdout:\n{result.stdout}\n"
                             f"stderr:\n{result.stderr}")
                return run
            check_after(line, shell, run)
    return run


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("walkthrough")
    home = root / "home"
    home.mkdir()
    try:
        yield play(home, root / "scratch")
    finally:  # whatever happened, nothing of the walkthrough's stack outlives it
        for folder in (home, *home.iterdir()):
            if (folder / ".hippodrome" / "registry.json").is_file():
                force_down(Registry(folder))


def test_the_walkthrough_is_marked_in_the_readme() -> None:
    steps = walkthrough((REPO / "README.md").read_text())
    assert [s.kind for s in steps][0] == "setup"
    assert [ln for s in steps if s.kind == "run" for ln in lines(s)] == COMMANDS
    assert {s.name for s in steps if s.kind == "file"} == {"hippodrome.toml", "db.py", "app.py"}
    readme = (REPO / "README.md").read_text()
    assert readme.index("## Your own stack in five minutes") < readme.index("## Commands")


def test_every_command_exits_0(played: Run) -> None:
    assert not played.error, played.error
    assert list(played.results) == COMMANDS
    assert all(r.returncode == 0 for r in played.results.values())


def test_hd_init_writes_a_stack_that_loads(played: Run) -> None:
    assert played.init_services == ("page", "web")  # its own (defaults = false)


def test_up_runs_db_then_the_job_then_the_app(played: Run) -> None:
    assert not played.error, played.error
    up = played.status["hd up --detach"]
    assert up["db"]["state"] == "running" and up["app"]["state"] == "running"
    assert up["schema"]["state"] == "stopped" and up["schema"]["exit_code"] == 0
    assert played.schema_runs["hd up --detach"] == 1
    assert played.visits[:2] == ["visit number 1", "visit number 2"]
    assert "db" in played.results["hd status"].stdout
    assert "schema" in played.results["hd status"].stdout


def test_cascade_restarts_the_db_and_the_app(played: Run) -> None:
    assert not played.error, played.error
    up, after = (played.status[k] for k in ("hd up --detach", "hd restart --service db --cascade"))
    assert after["db"]["pid"] != up["db"]["pid"]
    assert after["app"]["pid"] != up["app"]["pid"]
    assert after["app"]["state"] == "running"
    assert played.visits[2] == "visit number 3"  # the db kept its rows; the app found it
    said = played.results["hd restart --service db --cascade"].stdout.splitlines()
    assert [ln.split(":")[0] for ln in said][0] == "db" and said[-1].startswith("app:")


def test_cascade_runs_the_job_again(played: Run) -> None:
    assert not played.error, played.error
    assert played.schema_runs["hd restart --service db --cascade"] == 2


def test_down_leaves_nothing(played: Run) -> None:
    assert not played.error, played.error
    assert played.token and played.left == [], played.left
    assert not alive(played.daemon_pid)
    assert played.folder is not None
    data = json.loads((played.folder / ".hippodrome" / "registry.json").read_text())
    assert not data.get("daemon") and not data.get("services"), data
