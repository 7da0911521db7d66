"""The registry file: atomic under concurrent writers; identity by pid and start time."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from stackutil import wait_for

from hippo_tasks.registry.store import Registry, identity, is_same_process


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from pathlib import Path\n"
        "from hippo_tasks.registry.store import Registry\n"
        "reg = Registry(Path(sys.argv[1]))\n"
        "for i in range(50):\n"
        "    reg.update(lambda d: d.setdefault('resources', []).append({'w': sys.argv[2]}))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), f"w{i}"])
             for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: Registry(tmp_path).read(), range(200)))
    for p in procs:
        assert p.wait(60) == 0
    data = Registry(tmp_path).read()
    assert len(data["resources"]) == 200
    assert not list((tmp_path / ".hippodrome").glob(".registry-*"))


def test_threads_of_one_process_share_its_temporary_name_safely(tmp_path: Path) -> None:
    """The temporary file is named by pid: threads of one process (the daemon's HTTP
    threads and its loop) rely on the registry's lock to take turns with it."""
    reg = Registry(tmp_path)

    def add(i: int) -> None:
        for j in range(25):
            reg.update(lambda d, w=f"{i}.{j}": d.setdefault("resources", []).append({"w": w}))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add, range(8)))
    assert len(reg.read()["resources"]) == 200
    assert not list((tmp_path / ".hippodrome").glob(".registry-*"))


def test_a_stale_temporary_file_or_a_planted_symlink_is_removed_not_written_through(
        tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.write({**reg.read(), "resources": [{"w": "first"}]})
    tmp = tmp_path / ".hippodrome" / f".registry-{os.getpid()}.tmp"
    tmp.write_text("left by a writer that crashed before its rename")
    reg.update(lambda d: d["resources"].append({"w": "second"}))
    assert [r["w"] for r in reg.read()["resources"]] == ["first", "second"]
    assert not tmp.exists()
    victim = tmp_path / "victim.txt"
    victim.write_text("not the registry's to write")
    tmp.symlink_to(victim)
    reg.update(lambda d: d["resources"].append({"w": "third"}))
    assert victim.read_text() == "not the registry's to write"
    assert [r["w"] for r in reg.read()["resources"]] == ["first", "second", "third"]
    assert not tmp.is_symlink() and not tmp.exists()


def test_a_writer_killed_between_its_temporary_file_and_the_rename_leaves_nothing(
        tmp_path: Path) -> None:
    """kill -9 of a writer between its temporary file and the rename (adv50 F/5): the
    next process to write removes what it left, and the registry holds every write."""
    reg = Registry(tmp_path)
    reg.write({**reg.read(), "resources": [{"w": "before"}]})
    script = (
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from pathlib import Path\n"
        "from hippo_tasks.registry.store import Registry\n"
        "os.replace = lambda *a: time.sleep(60)  # killed before its rename\n"
        "Registry(Path(sys.argv[1])).update(lambda d: d['resources'].append({'w': 'x'}))\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    left = tmp_path / ".hippodrome" / f".registry-{writer.pid}.tmp"
    try:
        wait_for(lambda: left.exists() and left.stat().st_size > 0, 20, what="its temporary file")
    finally:
        writer.kill()
        writer.wait(10)
    assert left.exists()
    Registry(tmp_path).update(lambda d: d["resources"].append({"w": "after"}))
    assert [r["w"] for r in reg.read()["resources"]] == ["before", "after"]
    assert not list((tmp_path / ".hippodrome").glob(".registry-*")), \
        list((tmp_path / ".hippodrome").iterdir())


def test_identity_distinguishes_reused_pids() -> None:
    me = identity(os.getpid())
    assert me is not None
    assert is_same_process(os.getpid(), me)
    assert not is_same_process(os.getpid(), me - 100)
    assert not is_same_process(None, me)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert identity(proc.pid) is None


@pytest.mark.skipif(sys.platform != "linux", reason="the /proc reader is Linux's")
def test_proc_identity_is_psutils_start_time_counted_from_boot() -> None:
    """The same instant psutil reads, less the boot time it adds (see the next test)."""
    btime = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                 if line.startswith("btime"))
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        for pid in (os.getpid(), os.getppid(), 1, child.pid):
            since_boot = identity(pid)
            assert since_boot is not None
            assert abs(since_boot + btime - psutil.Process(pid).create_time()) < 0.01
    finally:
        child.communicate(b"")
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE, 30,
             what="the child to exit (a zombie until reaped)")
    assert identity(zombie.pid) is None
    zombie.wait()
    assert identity(0) is None and identity(-1) is None


def test_corrupt_shapes_are_moved_aside(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.dir.mkdir()
    for bad in ("[1, 2]", "not json", '{"services": []}', "\xff"):
        reg.path.write_text(bad, encoding="latin-1")
        assert reg.read()["services"] == {}
    assert len(reg.warnings) == 4
    assert not reg.path.exists()


@pytest.mark.skipif(sys.platform != "linux", reason="the /proc reading is Linux's")
def test_start_times_count_from_boot_so_a_stepped_clock_moves_nothing() -> None:
    """psutil's create_time() adds /proc/stat's btime, the wall clock minus the time
    since boot, which moves whenever the clock is stepped (NTP after a resume, a VM
    restored from a snapshot): after one, no recorded process matched, and `hd status`
    took a running daemon for dead and ended its services. The start time recorded now
    is counted from boot; one an older registry recorded as epoch time still matches."""
    me = os.getpid()
    started = identity(me)
    assert started is not None
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert 0 < started <= uptime, started
    assert is_same_process(me, started)
    btime = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                 if line.startswith("btime"))
    assert is_same_process(me, started + btime)  # an older registry's epoch time
    assert not is_same_process(me, started + 1.0)
