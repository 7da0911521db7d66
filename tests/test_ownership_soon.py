"""The daemon's cgroup made in a thread while it imports (ownership.OwnershipSoon): the
engine gets the same Ownership it would have made itself, and a daemon that ends
before its engine (a busy port, a bad option) leaves no cgroup behind."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

import pytest
from stackutil import PY, free_ports, stack_header, toy_service, write_stack

from hippo_tasks.daemon.main import main
from hippo_tasks.supervision.ownership import OwnershipSoon, project_tag


def test_the_engine_gets_a_working_ownership_and_discard_removes_it() -> None:
    soon = OwnershipSoon()
    own = soon.take()
    assert own.token == soon.token and len(own.token) == 24
    assert own.token[:8] == project_tag(os.getcwd())  # the daemon runs in its project
    if own.base is None:  # no cgroup here: the fallback, said with its reason
        assert own.why_not
        return
    assert own.base.is_dir() and f"hippodrome-{own.token}" == own.base.name
    assert not (own.base / "probe").exists(), "the placement probe was left behind"
    soon.discard()
    assert not own.base.exists()


def test_the_daemons_descriptor_sweep_waits_for_a_cgroup_being_made() -> None:
    """A seed becomes the daemon by closing every descriptor it was not handed, while
    the cgroup it was primed for may still be being made in its thread: the probe's
    spawn lost its descriptors (EBADF) and the run fell back to process-group mode
    without a word (adv52 J/6). The sweep right after the prime, in a process of its
    own, as the seed does it: the run still gets its cgroup, and leaves none behind."""
    import subprocess
    import sys

    from hippo_tasks.supervision.ownership import cgroups_here

    if cgroups_here() is None:
        pytest.skip("no cgroup v2 hierarchy here")
    script = (
        "import json, os, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from hippo_tasks.daemon.forked import keep_only\n"
        "from hippo_tasks.supervision.ownership import OwnershipSoon\n"
        "out = os.dup(1)\n"
        "rows = []\n"
        "for _ in range(10):\n"
        "    soon = OwnershipSoon()\n"
        "    keep_only({out}, soon)  # at once, as a seed handed over right away\n"
        "    own = soon.take()\n"
        "    rows.append([own.mode, own.why_not, own.base is not None and own.base.is_dir()])\n"
        "    soon.discard()\n"
        "    rows[-1].append(own.base is not None and own.base.exists())\n"
        "os.write(out, json.dumps(rows).encode())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert all(row == ["cgroup", "", True, False] for row in rows), rows


@pytest.mark.parametrize("why", ["busy port", "bad option"])
def test_a_daemon_that_fails_before_its_engine_leaves_no_cgroup(tmp_path: Path,
                                                                why: str) -> None:
    dash, port = free_ports(2)
    write_stack(tmp_path, stack_header(dash) + toy_service("web", port))
    options = json.dumps({"project_root": str(tmp_path), "python": PY})
    thief = socket.create_server(("127.0.0.1", port))
    soon = OwnershipSoon()
    try:
        if why == "busy port":
            assert main(["--options", options], soon) == 2
        else:
            with pytest.raises(SystemExit):
                main(["--options", options, "--lock-fd", "x"], soon)
    finally:
        thief.close()
    own = soon.take()
    if own.base is not None:
        assert not own.base.exists(), f"{own.base} left behind after a {why}"
    if why == "busy port":
        failure = json.loads((tmp_path / ".hippodrome" / "registry.json").read_text())
        assert f"port {port}" in failure["failure"]["reason"]


def test_the_run_token_up_hands_over_is_taken_once_and_never_inherited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` makes the token before the daemon, so the events tunnel it starts carries the
    run's mark; the daemon takes it out of the environment, so no service shares it."""
    from hippo_tasks.supervision.child_env import child_env
    from hippo_tasks.supervision.ownership import (
        RUN_TOKEN_ENV,
        hand_run_token,
        new_token,
        take_run_token,
    )

    handed = hand_run_token(str(tmp_path))
    assert os.environ[RUN_TOKEN_ENV] == handed and RUN_TOKEN_ENV not in child_env()
    assert take_run_token(str(tmp_path)) == handed
    assert RUN_TOKEN_ENV not in os.environ
    assert take_run_token(str(tmp_path)) != handed  # taken once: the next run makes its own
    other = tmp_path / "other"
    other.mkdir()
    foreign = new_token(str(other))
    monkeypatch.setenv(RUN_TOKEN_ENV, foreign)  # another folder's: not taken
    assert take_run_token(str(tmp_path)) != foreign
    monkeypatch.setenv(RUN_TOKEN_ENV, "x" * 24)
    assert take_run_token(str(tmp_path)) != "x" * 24


def test_down_removes_the_empty_cgroup_a_killed_daemon_left(project: Path) -> None:
    """A daemon SIGKILLed between making its cgroup and starting its guard left
    `hippodrome-<token>/probe` that no later command removed (adv34 v/7). `hd down`
    removes this project's empty ones; a cgroup holding a process stays."""
    import subprocess

    from stackutil import hd

    from hippo_tasks.supervision.ownership import cgroup2_mount, new_token, own_cgroup

    mount, mine = cgroup2_mount(), own_cgroup()
    if mount is None or mine is None:
        pytest.fail("no cgroup v2 here: this machine cannot run the test it means to")
    parent = mount / mine.lstrip("/")
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    (project / ".hippodrome").mkdir()
    left = parent / f"hippodrome-{new_token(str(project))}"
    busy = parent / f"hippodrome-{new_token(str(project))}"
    try:
        (left / "probe").mkdir(parents=True)
        (busy / "probe").mkdir(parents=True)
        sleeper = subprocess.Popen(["sleep", "30"])
        (busy / "probe" / "cgroup.procs").write_text(str(sleeper.pid))
        hd(project, "down", check=True)
        assert not left.exists(), sorted(p.name for p in left.iterdir())
        assert (busy / "probe").is_dir()  # it holds a process: not ours to judge
    finally:
        from hippo_tasks.supervision.scope import remove_cgroup

        with contextlib.suppress(NameError):
            sleeper.kill()
            sleeper.wait()
        for base in (left, busy):
            remove_cgroup(base)
