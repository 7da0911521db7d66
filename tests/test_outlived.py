"""The list of processes that outlived their stop (registry/outlived.py), which the
daemon writes as it exits and each `hd down` reads: what it names must still be that
process (pid and start time), and a file damaged, of the wrong shape, or not a file
at all names nothing and breaks nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hippo_tasks.registry import outlived
from hippo_tasks.supervision.scope import start_ticks


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_what_is_written_is_named_while_it_lives_and_the_file_goes_after(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    ticks = start_ticks(sleeper.pid)
    assert ticks is not None
    outlived.write(tmp_path, {sleeper.pid: (ticks, "web"), 999999999: (1, "gone")})
    assert outlived.still_alive(tmp_path) == {"web": [sleeper.pid]}
    assert outlived.still_alive(tmp_path) == {"web": [sleeper.pid]}, "named each time"
    sleeper.kill()
    sleeper.wait()
    assert outlived.still_alive(tmp_path) == {}
    assert not (tmp_path / outlived.FILE).exists()


def test_a_pid_with_another_start_time_is_not_named(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """The pid reused by another process (or written by hand) is not the one that
    outlived its stop."""
    ticks = start_ticks(sleeper.pid)
    assert ticks is not None
    (tmp_path / outlived.FILE).write_text(json.dumps(
        [{"pid": sleeper.pid, "ticks": ticks - 1, "service": "web"}]))
    assert outlived.still_alive(tmp_path) == {}


def test_a_later_run_adds_to_what_still_lives_of_an_earlier_one(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    ticks = start_ticks(sleeper.pid)
    assert ticks is not None
    outlived.write(tmp_path, {sleeper.pid: (ticks, "web")})
    me = start_ticks(os.getpid())
    assert me is not None
    outlived.write(tmp_path, {os.getpid(): (me, "api")})
    assert outlived.still_alive(tmp_path) == {"web": [sleeper.pid], "api": [os.getpid()]}


@pytest.mark.parametrize("content", [
    "not json", "{}", "[1, 2]", '[{"pid": "1", "ticks": 1, "service": "x"}]',
    '[{"pid": true, "ticks": 1, "service": "x"}]', '[{"pid": 1, "ticks": 1.5}]',
    '[{"pid": -1, "ticks": 1, "service": "x"}]', "\udcff", None])
def test_a_damaged_or_foreign_file_names_nothing(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / outlived.FILE
    if content is None:
        path.mkdir()  # a folder where the file belongs
    else:
        path.write_bytes(content.encode("utf-8", "surrogateescape"))
    assert outlived.still_alive(tmp_path) == {}


def test_nothing_alive_writes_no_file(tmp_path: Path) -> None:
    outlived.write(tmp_path, {999999999: (1, "gone")})
    assert not (tmp_path / outlived.FILE).exists()
    outlived.write(tmp_path / "missing", {os.getpid(): (start_ticks(os.getpid()) or 0, "x")})


def test_a_link_in_the_files_place_names_nothing(tmp_path: Path) -> None:
    """A link could put any file there, naming any live process (this one here)."""
    real = tmp_path / "elsewhere.json"
    real.write_text(json.dumps([{"pid": os.getpid(), "ticks": start_ticks(os.getpid()),
                                 "service": "x"}]))
    (tmp_path / outlived.FILE).symlink_to(real)
    assert outlived.still_alive(tmp_path) == {}


def test_what_a_down_found_is_remembered_for_the_next(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    outlived.remember(tmp_path, {"web": [sleeper.pid, 999999999]})
    assert outlived.still_alive(tmp_path) == {"web": [sleeper.pid]}
