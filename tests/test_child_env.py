"""What a service's environment holds of Hippodrome's own: PYTHONPATH only for a
program run by Hippodrome's interpreter (`${python}`), never for a service's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness import Harness, run
from stackutil import PY, free_ports, hd, stack_header, wait_for, write_stack

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
