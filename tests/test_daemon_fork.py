"""The detached daemon forked from `hd up` (daemon/forked.py): it must be the daemon a
fresh interpreter was. A session of its own, /dev/null for input, its log for output,
no descriptor of the CLI's (the lifecycle lock once it serves, the pre-flight's probe
sockets), no OpenSSL, and an exit status the CLI reads. A daemon that fails in the
fork says why in daemon.log, and `up` reports it. HIPPODROME_DAEMON_EXEC=1 and
`invoke up` still start `python -m hippo_tasks.daemon`.

The guard of either (supervision/orphans.py) is sh waiting to exec a bare interpreter,
in a session of its own holding nothing of the daemon's but its pipe, gone after a
clean `down`, and still ending every service after `kill -9` of the daemon. (A guard
forked from the daemon was tried and measured: its pages stopped being shared as soon
as the daemon's refcounts wrote to them; daemon + guard PSS went from 21.7 to 24.6 MB
with 40 services.)"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from stackutil import (
    HD_CLI,
    PY,
    REPO,
    alive,
    free_ports,
    open_files,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

HD = HD_CLI
INVOKE = [PY, "-m", "invoke", "-r", str(REPO)]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    dash, a, b = free_ports(3)
    write_stack(tmp_path, stack_header(dash)
                + toy_service("web", a, "--child", readiness={"http": "/healthz"})
                + toy_service("api", b, readiness={"http": "/healthz"}, depends_on=["web"]))
    try:
        yield tmp_path
    finally:
        force_down(Registry(tmp_path))


def up(root: Path, *argv: str, env: dict[str, str] | None = None,
       via: list[str] = HD) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*via, *argv, "--project-root", str(root)], cwd=root,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})


def test_the_forked_daemon_is_a_clean_session_leader(project: Path) -> None:
    done = up(project, "up", "--detach")
    assert done.returncode == 0, done.stdout + done.stderr
    daemon = registry(project)["daemon"]["pid"]
    stat = Path(f"/proc/{daemon}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat[3]) == daemon, "not its own session (sid)"  # field 6: session
    cmdline = Path(f"/proc/{daemon}/cmdline").read_bytes().split(b"\0")
    assert b"-m" not in cmdline, "started by exec, not forked"
    open_fds = open_files(daemon)
    assert open_fds[0] == "/dev/null"
    log = str(project / ".hippodrome" / "daemon.log")
    assert open_fds[1] == log and open_fds[2] == log
    assert not [t for t in open_fds.values() if t.endswith("lifecycle.lock")], open_fds
    dash = registry(project)["daemon"]["port"]

    def sockets() -> list[tuple[int, str]]:
        # The API's own end of up's last call (critical path) may still be closing.
        return [(c.laddr.port, c.status) for c in
                psutil.Process(daemon).net_connections(kind="inet")
                if not (c.laddr.port == dash and c.raddr)]

    assert sockets() == [(dash, "LISTEN")], \
        f"the API listener only, none of the pre-flight's port checks: {sockets()}"
    maps = Path(f"/proc/{daemon}/maps").read_text()
    assert "libssl" not in maps and "libcrypto" not in maps, \
        "OpenSSL loaded in a daemon without --tls"
    status = subprocess.run([*HD, "status", "--json"], cwd=project, capture_output=True,
                            text=True, timeout=30)
    assert {s["name"]: s["state"] for s in json.loads(status.stdout)["services"]} == \
        {"web": "running", "api": "running"}
    assert up(project, "down").returncode == 0
    wait_for(lambda: not alive(daemon), 10)


@pytest.mark.parametrize("how", ["exec setting", "invoke"])
def test_the_interpreter_start_remains(project: Path, how: str) -> None:
    if how == "invoke":
        done = up(project, "up", "--detach", via=INVOKE)
    else:
        done = up(project, "up", "--detach", env={"HIPPODROME_DAEMON_EXEC": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    daemon = registry(project)["daemon"]["pid"]
    cmdline = Path(f"/proc/{daemon}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1:3] == [b"-m", b"hippo_tasks.daemon"], cmdline
    maps = Path(f"/proc/{daemon}/maps").read_text()
    assert "libssl" not in maps and "libcrypto" not in maps
    assert up(project, "down").returncode == 0


def test_a_forked_daemon_whose_stack_fails_is_reported(tmp_path: Path) -> None:
    dash, a = free_ports(2)
    write_stack(tmp_path, stack_header(dash)
                + toy_service("web", a, "--exit", "3", readiness={"http": "/healthz"},
                              auto_restart=False))
    try:
        done = up(tmp_path, "up", "--detach")
        assert done.returncode != 0
        assert "web" in done.stdout + done.stderr
        assert "exited with code 3" in done.stdout + done.stderr, done.stdout + done.stderr
    finally:
        force_down(Registry(tmp_path))


CRASH = """
import sys
from pathlib import Path
from hippo_tasks.daemon.forked import fork_daemon
child = fork_daemon(sys.argv[2:], Path.cwd(), {"PATH": "/usr/bin:/bin"}, Path(sys.argv[1]),
                    None, False, None)
print(child.wait(30))
"""


@pytest.mark.parametrize("argv, code, says", [
    (["--options", "{not json"], 70, "Traceback"),
    (["--bogus"], 2, "unexpected argument '--bogus'"),
    (["--options", '{"profile": "core"}'], 70, "KeyError: 'project_root'"),
], ids=["bad json", "bad flag", "no project root"])
def test_a_fork_that_cannot_become_the_daemon_says_why(tmp_path: Path, argv: list[str],
                                                       code: int, says: str) -> None:
    """Run from a one-thread script, as `hd` forks: the child's failure reaches the
    log and the exit status, and never runs the parent's code after the fork."""
    log = tmp_path / "daemon.log"
    out = subprocess.run([PY, "-c", CRASH, str(log), *argv], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [str(code)], out.stdout
    assert says in log.read_text()


def started(root: Path, via: list[str]) -> dict[str, int]:
    done = up(root, "up", "--detach", via=via)
    assert done.returncode == 0, done.stdout + done.stderr
    daemon = registry(root)["daemon"]
    return {"daemon": daemon["pid"], "guard": daemon["guard_pid"]}


def everything(root: Path) -> set[int]:
    from hippo_tasks.supervision.scope import marked_pids

    return set(marked_pids(registry(root)["daemon"]["token"]))


@pytest.mark.parametrize("via", [HD, INVOKE], ids=["forked daemon", "exec daemon"])
def test_the_guard_holds_only_its_pipe_and_its_program(project: Path, via: list[str]) -> None:
    guard = started(project, via)["guard"]
    argv = Path(f"/proc/{guard}/cmdline").read_bytes().split(b"\0")
    assert argv[:2] == [b"/bin/sh", b"-c"] and argv[5:7] == [b"-I", b"-S"] and \
        argv[7].startswith(b"/proc/self/fd/"), "not sh waiting to exec the bare interpreter"
    stat = Path(f"/proc/{guard}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat[3]) == guard, "not a session of its own"
    held = open_files(guard)
    assert held[0].startswith("pipe:") and held[1] == held[2] == "/dev/null"
    program = int(argv[7].rsplit(b"/", 1)[1])  # its program, a memfd, and nothing more
    assert held[program].startswith("/memfd:hippodrome-guard") and len(held) == 4, held
    done = subprocess.run([*HD, "down", "--project-root", str(project)], cwd=project,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not alive(guard), 10)


@pytest.mark.parametrize("via", [HD, INVOKE], ids=["forked daemon", "exec daemon"])
def test_kill_9_of_the_daemon_still_ends_everything(project: Path, via: list[str]) -> None:
    pids = started(project, via)
    services = everything(project)
    assert len(services) >= 3, services  # web, its grandchild, api
    os.kill(pids["daemon"], signal.SIGKILL)
    wait_for(lambda: not any(alive(p) for p in services | {pids["guard"]}), 15)


@pytest.mark.parametrize("closed", ["<&-", ">&- 2>&-", "<&- >&- 2>&-"])
def test_up_with_stdio_closed(project: Path, closed: str) -> None:
    """`hd up --detach <&-`: the log or the lock may get a stdio number, which the
    daemon's own stdio then takes over; the daemon must still log to its file and let
    go of the lock once serving (a later `down` does not wait on it)."""
    line = shlex.join([*HD, "up", "--detach", "--project-root", str(project)])
    # fd 3 is bash's stdout kept aside, so `exit=` is read whatever the command closed.
    done = subprocess.run(["bash", "-c", f"exec 3>&1; {line} {closed}; echo exit=$? >&3"],
                          cwd=project, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})
    assert "exit=0" in done.stdout, done.stdout + done.stderr
    rows = registry(project)["services"]
    assert {n: r["state"] for n, r in rows.items()} == {"web": "running", "api": "running"}
    log = (project / ".hippodrome" / "daemon.log").read_text()
    assert "services ready" in log, log
    down = up(project, "down")
    assert down.returncode == 0 and "waiting for" not in down.stdout, down.stdout



SAVED_BETWEEN = """
import sys
from pathlib import Path
import hippo_tasks.daemon.launch as launch
real = launch.spawn_daemon
def spawn(plan, *args, **kwargs):
    # an editor saves the stack file after `up` read and checked it
    Path("hippodrome.toml").write_text("[services.web\\nbroken = ")
    return real(plan, *args, **kwargs)
launch.spawn_daemon = spawn
from hippo_tasks.entry import cli
sys.argv = ["hd", "up", "--detach"]
sys.exit(cli())
"""


@pytest.mark.parametrize("how", ["fork", "exec"])
def test_the_daemon_runs_the_stack_up_read(project: Path, how: str) -> None:
    """`up` read the stack file, then the daemon read it again: a file saved in between
    ran a stack `up` had not checked nor announced, or, broken, failed in the daemon,
    where `up` said its TOML error with exit 2, not 3 (adv36 f/1). Both ways the
    daemon is started run the stack `up` read."""
    env = {**os.environ, "HIPPODROME_DAEMON_EXEC": "1" if how == "exec" else "0"}
    done = subprocess.run([PY, "-c", SAVED_BETWEEN], cwd=project, env=env, text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" in (project / "hippodrome.toml").read_text()
    services = registry(project)["services"]
    assert sorted(services) == ["api", "web"], services
    assert all(alive(s["pid"]) for s in services.values()), services
