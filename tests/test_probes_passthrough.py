"""`hd probes` hands its flags (and words after `--`) to the stack's [commands.probes]
as they are: a stack of one's own whose probes program prints its argv shows exactly
what reached it, quoting intact; the program, not the task, judges the values."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from data_stack import run_task
from stackutil import free_offset, hd

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry
from hippo_tasks.tasks.data import probes_args

STACK = """
[stack]
defaults = false

[services.web]
command = ["${python}", "-m", "http.server", "${port}", "--bind", "127.0.0.1"]
port = 9001

[commands.probes]
command = ["${python}", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", "own"]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("probes-pass") / "proj"
    root.mkdir()
    (root / "hippodrome.toml").write_text(STACK)
    try:
        up = hd(root, "up", "--detach", "--port-offset", str(free_offset()))
        assert up.returncode == 0, up.stdout + up.stderr
        yield root
    finally:
        hd(root, "down", timeout=60)
        force_down(Registry(root))


def argv_seen(done: subprocess.CompletedProcess[str]) -> list[str]:
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_no_flags_add_nothing(stack: Path) -> None:
    done = run_task(stack, "probes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert argv_seen(done) == ["own"]


def test_every_flag_and_the_words_after_the_dashes_reach_the_command(stack: Path) -> None:
    done = run_task(stack, "probes", "--full", "--fuzz", "--examples", "3", "--steps", "4",
                    "--deadline-s", "9.5", "--seed", "12", "--breaker", "2", "--json", "r.json",
                    "--", "--extra", "two words")
    assert done.returncode == 0, done.stdout + done.stderr
    assert argv_seen(done) == ["own", "--full", "--fuzz", "--examples", "3", "--steps", "4",
                               "--deadline-s", "9.5", "--seed", "12", "--breaker", "2",
                               "--json", "r.json", "--extra", "two words"]


def test_values_are_not_judged_by_the_task() -> None:
    """`--examples lots` is the program's to refuse (the bundled one exits 2, naming it)."""
    assert probes_args(full=False, fuzz=True, examples="lots", deadline_s=None) == [
        "--fuzz", "--examples", "lots"]
