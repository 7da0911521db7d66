"""The shared reading of /proc (supervision/scope.py): marks read once per program.

Reading a process's environment waits on its memory map, 10-45 ms for one still
starting up on a busy machine, and every stop read all of them at least twice. A mark
is now read once per process and program: these tests hold the reading to that, and to
seeing a mark that an exec gave a process read before without one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import wait_for

from hippo_tasks.supervision import scope

MARK = f"test{os.getpid()}/svc"


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def marks_of(pid: int) -> str | None:
    table = scope.process_table(max_age=0.0)
    return table[pid][1] if pid in table else "absent"


def test_an_environment_is_read_once_per_process(
        started: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, scope.RUN_ENV: MARK}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    started.append(proc)
    wait_for(lambda: marks_of(proc.pid) == MARK, 10, what="the child's mark read")
    read: list[int] = []
    real = scope.run_mark

    def counted(pid: int) -> str | None:
        read.append(pid)
        return real(pid)

    monkeypatch.setattr(scope, "run_mark", counted)
    assert marks_of(proc.pid) == MARK
    assert marks_of(proc.pid) == MARK
    assert proc.pid not in read, "the environment of a process read before was read again"
    assert scope.marked_pids(MARK) == [proc.pid]


def test_a_mark_an_exec_gave_is_seen(started: list[subprocess.Popen[bytes]],
                                     tmp_path: Path) -> None:
    """Same pid, same start, same command name (python3 exec'ing python3): only the
    program's new stack tells the exec apart, and the mark it brought is read."""
    go = tmp_path / "go"
    code = ("import os, sys, time\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
            f"env = dict(os.environ, {scope.RUN_ENV}={MARK!r})\n"
            "os.execve(sys.executable, [sys.executable, '-c', "
            "'import time; time.sleep(60)'], env)\n")
    env = {k: v for k, v in os.environ.items() if k != scope.RUN_ENV}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    started.append(proc)
    wait_for(lambda: marks_of(proc.pid) is None, 10, what="the child read, unmarked")
    go.touch()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and scope.run_mark(proc.pid) != MARK:
        time.sleep(0.01)
    assert scope.run_mark(proc.pid) == MARK, "the child never exec'd"
    assert marks_of(proc.pid) == MARK
    assert proc.pid in scope.marked_pids(MARK)


TOGGLE = """
import os, sys, time
if "HIPPODROME_PAD" in os.environ:
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.01)
    env = dict(os.environ)
    env["HIPPODROME_RUN"] = env.pop("HIPPODROME_PAD")
    os.execve(sys.executable, [sys.executable, "-c", sys.argv[2], sys.argv[1], sys.argv[2]], env)
time.sleep(60)
"""


@pytest.mark.skipif(shutil.which("setarch") is None, reason="setarch (util-linux) is missing")
def test_a_child_that_takes_its_mark_by_an_exec_that_changes_no_address_is_seen(
        started: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """Address-space randomisation off (`setarch -R`, a debugger) and an environment of
    the same size: an exec changes nothing /proc/PID/stat shows. A service's orphan,
    adopted by the daemon, exec'd itself with its mark back and outlived `hd stop -s`
    (adv48 A/6). A child of the reader with no mark is read afresh each time."""
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if k != scope.RUN_ENV}
    env["HIPPODROME_PAD"] = MARK  # the mark's own length, under another name
    proc = subprocess.Popen(["setarch", "-R", sys.executable, "-c", TOGGLE, str(go), TOGGLE],
                            env=env)
    started.append(proc)

    def python_unmarked() -> str | None:
        read = scope.stat_and_image(proc.pid)
        return read[0] if read and "python" in read[0] and marks_of(proc.pid) is None \
            else None

    before = wait_for(python_unmarked, 10, what="the child running python, unmarked")
    go.touch()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and scope.run_mark(proc.pid) != MARK:
        time.sleep(0.01)
    assert scope.run_mark(proc.pid) == MARK, "the child never exec'd"
    read = scope.stat_and_image(proc.pid)
    if read is None or read[0] != before:
        pytest.skip("the exec moved an address here: randomisation could not be turned off")
    assert marks_of(proc.pid) == MARK


@pytest.mark.skipif(shutil.which("setarch") is None, reason="setarch (util-linux) is missing")
def test_a_shutdowns_fresh_reading_sees_such_a_mark_on_a_process_born_since(
        tmp_path: Path) -> None:
    """The same exec by an orphan, not the reader's child: only a reading afresh sees it
    (the daemon's last sweep at `hd down`), and it reads again only processes born since
    the tick it is given, so a stop reads no environment twice (adv49 B/4)."""
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if k != scope.RUN_ENV}
    env["HIPPODROME_PAD"] = MARK
    wrapper = subprocess.run(
        ["sh", "-c", 'setarch -R "$0" -c "$1" "$2" "$1" >/dev/null 2>&1 & echo $!',
         sys.executable, TOGGLE, str(go)],
        env=env, capture_output=True, text=True, timeout=10, check=True)
    pid = int(wrapper.stdout.split()[-1])
    try:
        before = wait_for(lambda: (scope.stat_and_image(pid) or ("",))[0]
                          if marks_of(pid) is None and "python" in
                          (scope.stat_and_image(pid) or ("",))[0] else None,
                          10, what="the orphan running python, unmarked")
        # Read once more: the reading above may have found it still `setarch` (its stat
        # looked at just after), and a stop's cache must hold the python it execs from.
        assert marks_of(pid) is None
        before = (scope.stat_and_image(pid) or ("",))[0]
        if int(scope.stat_fields(pid)[1]) == os.getpid():  # type: ignore[index]
            pytest.skip("this process is a subreaper: the orphan is its child")
        go.touch()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and scope.run_mark(pid) != MARK:
            time.sleep(0.01)
        assert scope.run_mark(pid) == MARK, "the orphan never exec'd"
        read = scope.stat_and_image(pid)
        if read is None or read[0] != before:
            pytest.skip("the exec moved an address here: randomisation could not be turned off")
        assert marks_of(pid) is None  # from the cache: what a stop sees
        born = scope.start_ticks(pid)
        assert born is not None
        try:
            scope.read_marks_afresh(born + 1)
            assert marks_of(pid) is None  # older than the run: not read again
            scope.read_marks_afresh(born)
            assert marks_of(pid) == MARK
        finally:
            scope.read_marks_afresh(None)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


CHAIN = """
import os, sys, time
end, stop, every = float(sys.argv[1]), sys.argv[2], float(sys.argv[3])
while time.time() < end and not os.path.exists(stop):
    time.sleep(every)
    if os.fork():
        os._exit(0)
os._exit(0)
"""


@pytest.mark.parametrize(("every", "looks"), [("0.001", 150), ("0", 20)])
@pytest.mark.parametrize("mode", ["cgroup", "process group"])
def test_a_chain_that_outlives_each_reading_is_never_called_gone(
        tmp_path: Path, every: str, looks: int, mode: str) -> None:
    """A marked process that forks a successor and exits, every few ms or at once, out
    of its cgroup or group: a stop's "empty?" found the link of a reading ended by the
    time it checked, took a second reading, found that one's link ended too, and said
    "empty": `hd down` then left the chain running (1 run in 35 of CI's rehearsal, a
    5 ms chain on a busy machine). With no pause, each reading stopped short of the
    newest link (RELISTS) and found none. Asked while the chain lives, it never says
    "empty"; the chain ends by itself."""
    stop = tmp_path / "stop"
    env = {**os.environ, scope.RUN_ENV: MARK}
    subprocess.run([sys.executable, "-c", CHAIN, str(time.time() + 30), str(stop), every],
                   env=env, timeout=10, check=True)  # the first link forks and exits
    try:
        wait_for(lambda: scope.marked_pids(MARK), 10, what="the chain running")
        gone = (scope.Scope(MARK, cgroup=tmp_path / "no-cgroup") if mode == "cgroup"
                else scope.Scope(MARK, pgid=None))  # a cgroup or group left empty
        said = []
        for _ in range(looks):
            said.append(gone.empty())
            time.sleep(0.025)  # past TABLE_TTL: each look takes a reading of its own
        wait_for(lambda: scope.marked_pids(MARK), 5, what="the chain still running")
        assert not any(said), f"said empty {said.count(True)} times in {len(said)}"
    finally:
        stop.touch()
        wait_for(lambda: not scope.marked_pids(MARK) and scope.reading_complete(), 10,
                 what="the chain ending")
