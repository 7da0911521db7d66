"""Ctrl+C of the stack's own commands (`hd seed`, `hd probes`) while their programs are
still loading: a real SIGINT, sent by the process to itself the moment the first of the
bundled services' modules is looked up (a `sitecustomize` on PYTHONPATH hooks the import
system, so the moment is exact, not a race with the machine's load). It printed the
import's KeyboardInterrupt traceback and died of the signal (adv29 n/6); it is exit 130
with the same sentence as a Ctrl+C later in the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from data_stack import REPO

HOOK = '''
import os, signal, sys

class CtrlC:
    """Ctrl+C the moment TARGET is first imported, then let the import go on."""
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["INTERRUPT_AT_IMPORT"]:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC())
'''


@pytest.mark.parametrize(("module", "prog", "words"), [
    ("hippo_platform.seed", "seed", "seed: interrupted (Ctrl+C): `hd seed` again finishes it"),
    ("hippo_platform.seed.probes", "probes", "probes: interrupted (Ctrl+C)"),
])
def test_ctrl_c_while_the_program_loads_is_exit_130_and_a_sentence(
        tmp_path: Path, module: str, prog: str, words: str) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)]),
           "INTERRUPT_AT_IMPORT": "hippo_platform.services",
           "HIPPODROME_DASHBOARD_URL": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", module, "--project-root", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert done.stderr.strip() == words
    assert done.stdout == ""


@pytest.mark.parametrize("command", [["seed"], ["doctor"], ["status"]])
def test_ctrl_c_while_hd_itself_loads_is_exit_130_and_a_sentence(
        tmp_path: Path, command: list[str]) -> None:
    """Before `hd seed` runs its program, hd loads invoke and the tasks (0.1-0.2 s): a
    Ctrl+C there was a KeyboardInterrupt traceback, or exit 1 with no word on the fast
    path (adv31 r/3). The moment is hd's first look-up of a module of its own tasks."""
    from stackutil import HD_CLI

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)]),
           "INTERRUPT_AT_IMPORT": "hippo_tasks.tasks.actions" if command == ["status"]
           else "invoke"}
    done = subprocess.run([*HD_CLI, *command, "--project-root", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    assert (done.returncode, done.stderr.strip()) == (130, "hippodrome: interrupted (Ctrl+C)")


@pytest.mark.parametrize("at", ["hippo_tasks.tasks", "hippo_tasks.errors", "json"])
def test_ctrl_c_while_the_console_script_imports_hd_is_exit_130(tmp_path: Path,
                                                                 at: str) -> None:
    """The `hd` console script imports hd's program before calling it (20-40 ms): a
    Ctrl+C then was a KeyboardInterrupt traceback through the import and death by
    SIGINT, where the README promises exit 130 and the sentence (adv32 u/5)."""
    script = Path(sys.executable).parent / "hd"
    assert script.is_file(), "the tests run with hippodrome installed (nox -s tests)"
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)]),
           "INTERRUPT_AT_IMPORT": at}
    done = subprocess.run([str(script), "status", "--project-root", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    assert (done.returncode, done.stderr.strip()) == (130, "hippodrome: interrupted (Ctrl+C)")


@pytest.mark.parametrize("at", ["hippo_tasks.tasks.actions", "hippo_tasks.tasks.lifecycle"])
def test_ctrl_c_while_stock_invoke_loads_the_tasks_is_exit_130(tmp_path: Path, at: str) -> None:
    """`invoke status` in a folder with `hd init --tasks`'s tasks.py: a Ctrl+C while
    invoke loads it (the task modules' import) was exit 1 with no word at all, invoke
    ending every KeyboardInterrupt so (adv54 F4). Said as `hd` says it, exit 130."""
    from hippo_tasks.tasks.starter import TASKS_PY

    (tmp_path / "tasks.py").write_text(TASKS_PY)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)]),
           "INTERRUPT_AT_IMPORT": at}
    done = subprocess.run([sys.executable, "-m", "invoke", "status"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    assert (done.returncode, done.stderr.strip()) == (130, "hippodrome: interrupted (Ctrl+C)")
