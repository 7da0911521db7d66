"""A registry that is not this folder's own run controls nothing.

A project folder copied while its stack runs (`cp -a`, a backup restored, a worktree
seeded with untracked files) carries `.hippodrome/registry.json` naming the original's
daemon and services, with their true pids and start times. A file forged or left with
a live stranger's pid and start time as the "daemon" is the same case without a copy.
Commands run in the copy must neither show nor stop the original's stack, and no
stranger may be signalled because the file names it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import (
    REPO,
    alive,
    free_ports,
    hd,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)

from hippo_tasks.registry.store import identity


def record_as_daemon(project: Path, pid: int, born: float | None, port: int,
                     root: Path | None = None) -> None:
    """A registry in `project` naming `pid` (started at `born`) as the daemon of the
    stack in `root` (`project` unless given), listening on `port`."""
    reg = project / ".hippodrome" / "registry.json"
    reg.parent.mkdir(parents=True, exist_ok=True)
    reg.write_text(json.dumps({
        "version": 1, "project_root": str(root or project), "failure": None,
        "resources": [], "services": {},
        "daemon": {"pid": pid, "create_time": born, "guard_pid": pid,
                   "url": f"http://127.0.0.1:{port}", "port": port,
                   "token": "0123456789abcdef", "mode": "process-group"}}))


@pytest.fixture
def copy(tmp_path: Path) -> Iterator[Path]:
    """Where the copy goes; whatever a command there started is ended by `down`."""
    where = tmp_path / "copy"
    yield where
    if where.exists():
        hd(where, "down", "--force", timeout=60)


def test_a_copied_folder_neither_shows_nor_stops_the_original_stack(
        project: Path, copy: Path) -> None:
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port, readiness={"http": "/"}))
    hd(project, "up", "--detach", check=True)
    original = registry(project)
    web = original["services"]["web"]["pid"]
    shutil.copytree(project, copy, symlinks=True)
    assert registry(copy)["daemon"]["pid"] == original["daemon"]["pid"]

    status = hd(copy, "status")
    assert status.returncode == 5, status.stdout + status.stderr
    said = status.stdout + status.stderr
    assert f"written for the stack in {project}" in said and "Traceback" not in said
    assert list((copy / ".hippodrome").glob("registry.json.foreign-*")), "kept for a look"
    for args in (("down",), ("down", "--force")):
        # The moved-aside file is put back each round: every command must refuse it.
        shutil.copy(project / ".hippodrome" / "registry.json",
                    copy / ".hippodrome" / "registry.json")
        down = hd(copy, *args, timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        assert alive(original["daemon"]["pid"]) and alive(web), f"`{' '.join(args)}` " \
            "in the copy stopped the original stack"
    assert hd(project, "status").returncode == 0
    assert registry(project)["daemon"]["pid"] == original["daemon"]["pid"]
    hd(project, "down", check=True)
    assert not alive(web)


def test_a_copy_whose_original_was_renamed_neither_shows_nor_stops_it(
        tmp_path: Path, copy: Path) -> None:
    """A registry naming a folder that is gone was taken for a moved project's own, so
    a copy made while the stack ran, its original then renamed, showed and stopped the
    original's stack. The daemon's daemon.log says where it really is."""
    first, renamed = tmp_path / "first", tmp_path / "renamed"
    daemon, web = web_stack_up(first)
    try:
        shutil.copytree(first, copy, symlinks=True)
        first.rename(renamed)
        status = hd(copy, "status")
        said = status.stdout + status.stderr
        # Named where it is now, from the daemon (the file still says `first`).
        assert status.returncode == 5 and f"written for the stack in {renamed}" in said, said
        shutil.copy(renamed / ".hippodrome" / "registry.json",
                    copy / ".hippodrome" / "registry.json")
        down = hd(copy, "down", timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        assert alive(daemon) and alive(web), "`down` in the copy stopped the original"
        assert hd(renamed, "status").returncode == 0
        hd(renamed, "down", check=True)
        assert not alive(web)
    finally:
        stop_by_pid(daemon)


@pytest.mark.parametrize("stranger_cmd", [["sleep", "300"], "listener"])
@pytest.mark.parametrize("force", [False, True])
def test_a_live_stranger_recorded_as_the_daemon_is_never_signalled(
        project: Path, force: bool, stranger_cmd: list[str] | str) -> None:
    """Its pid and start time are true (the only thing checked before): it does not
    listen on the daemon's port, so it is not the daemon, answering or hung. One that
    does listen on the port the (forged) registry names was killed by `down --force`:
    it does not write this project's daemon.log either."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    argv = (stranger_cmd if isinstance(stranger_cmd, list) else
            [sys.executable, "-c", "import socket, time; s = socket.create_server(("
             f"'127.0.0.1', {dash})); print('up', flush=True); time.sleep(300)"])
    stranger = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.PIPE)
    if stranger_cmd == "listener":
        assert stranger.stdout is not None and stranger.stdout.readline() == b"up\n"
    try:
        born = identity(stranger.pid)
        assert born is not None
        record_as_daemon(project, stranger.pid, born, dash)
        down = hd(project, "down", *(["--force"] if force else []), timeout=60)
        said = down.stdout + down.stderr
        assert down.returncode == 0 and "Traceback" not in said, said
        assert stranger.poll() is None, "a process the registry merely named was killed"
        # down --force names it as it leaves it alone; a plain down's look for the
        # daemon already finds it is not this project's (stranger_daemon)
        assert (f"pid {stranger.pid}, recorded as the daemon" if force else
                f"pid {stranger.pid} (recorded as the daemon) runs, but is not this "
                "project's daemon") in said, said
        assert registry(project)["daemon"] is None, "the false entry is forgotten"
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait(10)


def registry_naming(project: Path, pid: int, token: str | None) -> None:
    """A registry of a dead daemon naming `pid`, with its true start time, as service
    `web`; with this folder's ownership `token`, or none."""
    reg = project / ".hippodrome" / "registry.json"
    reg.parent.mkdir(parents=True)
    daemon = {"pid": 999999, "create_time": 1.0, "url": "http://127.0.0.1:1", "port": 1}
    reg.write_text(json.dumps({
        "version": 1, "project_root": str(project), "failure": None, "resources": [],
        "daemon": daemon if token is None else {**daemon, "token": token},
        "services": {"web": {"pid": pid, "create_time": identity(pid), "pgid": pid,
                             "state": "running"}}}))


def test_doctor_and_down_force_agree_on_recorded_pids_not_provably_the_stacks(
        project: Path) -> None:
    """With this folder's token, a live process named by its real pid and start time
    that carries none of the run's marks: doctor called it a leftover `hd down --force`
    cleans, and `down --force` then said no recorded process ran (adv58 F4). Both now
    say it is left alone; nothing signals it."""
    from hippo_tasks.supervision.ownership import new_token

    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.web]\nshell = "exec sleep 600"\n')
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        registry_naming(project, stranger.pid, token=new_token(str(project)))
        doctor = hd(project, "doctor")
        out = " ".join(doctor.stdout.split())
        assert "stale registry from a dead daemon (leftovers: none still running)" in out, out
        assert "the recorded pids of web run but carry none of this stack's marks" in out, out
        down = hd(project, "down", "--force")
        assert down.returncode == 0, down.stdout + down.stderr
        assert "no recorded process is running" in down.stdout, down.stdout
        assert stranger.poll() is None, "a pid the file merely named was signalled"
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait(10)


def test_a_registry_without_a_token_names_its_live_pids_and_signals_none(
        project: Path) -> None:
    """No ownership token (a registry from before marks existed, or written by hand):
    its service pids, with their true start times, were taken as proof, and a read-only
    `hd status` SIGTERMed and SIGKILLed the stranger they named."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        registry_naming(project, stranger.pid, token=None)
        status = hd(project, "status")
        said = status.stdout + status.stderr
        assert status.returncode == 5 and "Traceback" not in said, said
        assert f"names pid {stranger.pid} as service 'web' but carries no ownership token" \
            in said
        down = hd(project, "down", "--force")
        assert down.returncode == 0, down.stdout + down.stderr
        assert stranger.poll() is None, "a pid the file merely named was signalled"
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait(10)


def test_a_registry_deleted_while_the_stack_runs_is_written_again(project: Path) -> None:
    """`rm -rf .hippodrome` (or `git clean -xdf`) while the stack runs: every command said
    no daemon was running (down: nothing to stop) until the next state change."""
    daemon, web = web_stack_up(project)
    try:
        shutil.rmtree(project / ".hippodrome")
        wait_for(lambda: (project / ".hippodrome" / "registry.json").exists(), 10,
                 what="the daemon writing its registry again")
        assert hd(project, "status").returncode == 0
        hd(project, "down", check=True)
        assert not alive(web)
    finally:
        stop_by_pid(daemon)  # the fixture's sweep needs the registry this test deletes


@pytest.mark.parametrize("command", ["status", "down", "down --force", "up"])
def test_a_command_right_after_git_clean_finds_the_running_stack(
        project: Path, command: str) -> None:
    """`git clean -xdf && hd down`: with `.hippodrome` gone (its daemon.log too, still
    written by the daemon), `down` said "nothing to stop", exit 0, before the daemon
    wrote its registry again, and the whole stack kept running; `up` called its own
    daemon another process on the dashboard's port, to stop or move away from."""
    daemon, web = web_stack_up(project)
    try:
        shutil.rmtree(project / ".hippodrome")
        shutil.rmtree(project / ".logs")
        said = hd(project, *command.split(), *(["--detach"] if command == "up" else []),
                  timeout=60)
        out = said.stdout + said.stderr
        assert said.returncode == (7 if command == "up" else 0), out
        assert "nothing to stop" not in out, out
        if command == "up":  # its own daemon, not "another process" to stop
            assert f"(pid {daemon}) is already running" in out, out
            return
        if command == "status":
            assert "web" in said.stdout and "running" in said.stdout, out
        else:  # the daemon may have written its registry again meanwhile (2 s): then
            # `--force` ends it from there, and says so in its own words
            assert ("stack stopped" in said.stdout or f"killed daemon pid {daemon}"
                    in said.stdout) and not alive(web), out
    finally:
        stop_by_pid(daemon)


@pytest.mark.parametrize("gone", ["rm", "mv"])
@pytest.mark.parametrize("force", [False, True], ids=["down", "down-force"])
def test_down_stops_the_stack_when_a_file_stands_where_its_state_was(
        project: Path, force: bool, gone: str) -> None:
    """`.hippodrome` replaced by a file under a running stack (a script writing to the
    wrong name): `down` and `down --force` said "cannot write .hippodrome: a file
    stands ... Nothing was started or stopped", exit 10, and the stack ran on (q/5);
    the same after `mv .hippodrome ../backup`, its daemon.log not deleted but moved (r/2)."""
    daemon, web = web_stack_up(project)
    try:
        if gone == "rm":
            shutil.rmtree(project / ".hippodrome")
        else:
            (project / ".hippodrome").rename(project.parent / "state-backup")
        (project / ".hippodrome").write_text("oops\n")
        down = hd(project, "down", *(["--force"] if force else []), timeout=60)
        said = down.stdout + down.stderr
        assert down.returncode == 0 and "stack stopped" in down.stdout, said
        assert "a file stands where" in said and "move it away" in said, said
        assert not alive(daemon) and not alive(web)
        assert (project / ".hippodrome").read_text() == "oops\n"
    finally:
        stop_by_pid(daemon)


@pytest.mark.parametrize("damage", [b"", b"{not json", b"[]",
                                    b'{"version": 1, "services": {}, "daemon": null}'])
def test_a_registry_damaged_while_the_stack_runs_still_finds_its_stack(
        project: Path, damage: bytes) -> None:
    """Truncated by a bad copy or an editor: `status` said no daemon ran and `down` said
    "nothing to stop", exit 0, leaving the daemon and every service running."""
    daemon, web = web_stack_up(project)
    try:
        (project / ".hippodrome" / "registry.json").write_bytes(damage)
        status = hd(project, "status")
        assert status.returncode == 0 and "web" in status.stdout, status.stdout + status.stderr
        (project / ".hippodrome" / "registry.json").write_bytes(damage)
        down = hd(project, "down", timeout=60)
        assert down.returncode == 0 and "stack stopped" in down.stdout, \
            down.stdout + down.stderr
        assert not alive(daemon) and not alive(web)
    finally:
        stop_by_pid(daemon)


def test_down_stops_a_daemon_that_cannot_write_its_registry_again(project: Path) -> None:
    """The daemon is stopped (SIGSTOP), so it cannot heal the truncated registry: `down`
    finds it by the daemon.log it writes, and asks it to stop."""
    daemon, web = web_stack_up(project)
    try:
        os.kill(daemon, signal.SIGSTOP)
        (project / ".hippodrome" / "registry.json").write_bytes(b"")
        down = hd(project, "down", timeout=60)
        assert down.returncode == 0 and f"pid {daemon} writes this project's" in down.stdout, \
            down.stdout + down.stderr
        assert "stack stopped" in down.stdout
        assert not alive(daemon) and not alive(web)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGCONT)
        stop_by_pid(daemon)


def web_stack_up(root: Path) -> tuple[int, int]:
    """One toy service up, detached: (the daemon's pid, the service's)."""
    dash, port = free_ports(2)
    write_stack(root, stack_header(dash) + toy_service("web", port))
    hd(root, "up", "--detach", check=True)
    return registry(root)["daemon"]["pid"], registry(root)["services"]["web"]["pid"]


def stop_by_pid(daemon: int) -> None:
    """A daemon this test started, ended without its registry: SIGTERM is its own clean
    shutdown (services included)."""
    if alive(daemon):
        os.kill(daemon, signal.SIGTERM)
        wait_for(lambda: not alive(daemon), 30, what="the daemon's shutdown")


def test_a_project_moved_with_its_stack_running_is_still_managed_from_its_new_place(
        tmp_path: Path) -> None:
    """A move leaves no original behind: its registry is the only handle on the stack.
    It was taken for a copy (moved aside, `hd down` in a folder that no longer exists),
    and the daemon later re-created the old folder to write its registry."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    daemon, web = web_stack_up(first)
    try:
        first.rename(moved)
        status = hd(moved, "status")
        assert status.returncode == 0 and "written for the stack in" not in \
            status.stdout + status.stderr, status.stdout + status.stderr
        time.sleep(2.5)  # past the daemon's registry check
        down = hd(moved, "down", timeout=60)
        assert down.returncode == 0 and "stack stopped" in down.stdout, \
            down.stdout + down.stderr
        # not a full disk's sentence, which it said (adv30 q's notes)
        assert "could not clear its registry entry" not in down.stdout, down.stdout
        assert f"when the project was moved from {first}, is cleared here" in down.stdout, \
            down.stdout
        assert not alive(daemon) and not alive(web)
        assert not first.exists(), "the daemon re-created the folder the project left"
        assert "Traceback" not in (moved / ".hippodrome" / "daemon.log").read_text()
    finally:
        stop_by_pid(daemon)


def test_a_copied_registry_does_not_advise_ending_the_stack_it_was_copied_from(
        project: Path, project2: Path) -> None:
    """A running stack's registry copied into another folder, its daemon recorded dead
    (a backup restored): nothing was signalled, but each of the running stack's
    services was named with `end it yourself (kill PID)`, and the file said to carry no
    token while it carried the other stack's (adv41 L/2, 3/3)."""
    daemon, web = web_stack_up(project)
    try:
        copied = json.loads((project / ".hippodrome" / "registry.json").read_text())
        copied["project_root"] = str(project2)
        copied["daemon"]["pid"] = 999999
        write_stack(project2, (project / "hippodrome.toml").read_text())
        (project2 / ".hippodrome").mkdir()
        (project2 / ".hippodrome" / "registry.json").write_text(json.dumps(copied))
        down = hd(project2, "down", "--force", timeout=60)
        said = down.stdout + down.stderr
        assert down.returncode == 0 and "Traceback" not in said, said
        assert f"kill {web}" not in said, said
        assert (f"names pid {web} as service 'web', but it was written for another folder "
                f"(its ownership token is another project's") in said, said
        assert f"pid {web} is service 'web' of another Hippodrome run" in said, said
        assert alive(web) and alive(daemon), "the other folder's stack was signalled"
        assert hd(project, "status").returncode == 0
    finally:
        hd(project, "down", timeout=60)


def test_a_project_renamed_while_down_owns_its_next_stack(tmp_path: Path) -> None:
    """`hd down`, `mv old new`, `hd up`: the registry kept the old path as its project
    root for every later run, while the run's token was tagged with the new one. Cleanup
    took the token for another folder's: `hd doctor` failed on the stack's own ports, and
    with the daemon and its guard killed, `hd down --force` left every service running
    (adv30 q/2)."""
    old, new = tmp_path / "old", tmp_path / "new"
    web_stack_up(old)
    hd(old, "down", check=True, timeout=60)
    old.rename(new)
    old.mkdir()  # a fresh clone at the old path: the registry, naming nothing, was said
    status = hd(new, "status")  # "copied here with the project" (adv31 r/6)
    assert status.returncode == 5 and "copied here" not in status.stderr, status.stderr
    hd(new, "up", "--detach", check=True)
    daemon = registry(new)["daemon"]
    web = registry(new)["services"]["web"]["pid"]
    try:
        assert registry(new)["project_root"] == str(new)
        doctor = hd(new, "doctor")
        assert "[FAIL] port" not in doctor.stdout and "held by this stack" in doctor.stdout, \
            doctor.stdout
        os.kill(daemon["guard_pid"], signal.SIGKILL)  # both at once, as a crash of the
        os.kill(daemon["pid"], signal.SIGKILL)         # session that ran them
        wait_for(lambda: not alive(daemon["pid"]), 10, what="the daemon gone")
        down = hd(new, "down", "--force", timeout=60)
        assert down.returncode == 0 and "carries no ownership token" not in down.stdout, \
            down.stdout + down.stderr
        wait_for(lambda: not alive(web), 10, what="the service ended by down --force")
    finally:
        with contextlib.suppress(ProcessLookupError):
            if alive(web):
                os.kill(web, signal.SIGKILL)


def test_up_detached_says_why_when_the_project_is_renamed_while_it_starts(
        tmp_path: Path) -> None:
    """`mv proj proj2` while `up --detach` waits for a slow first service: it said the
    daemon exited, `full output: proj/.hippodrome/daemon.log`, a file that no longer
    existed, and no reason (adv31 r/5). It reads the log it began with, where it is now."""
    from stackutil import HD_CLI

    first, moved = tmp_path / "proj", tmp_path / "proj2"
    dash, db, app = free_ports(3)
    write_stack(first, stack_header(dash) + toy_service("db", db, "--delay", "4",
                                                         readiness={"http": "/healthz"})
                + toy_service("app", app, depends_on=["db"]))
    up = subprocess.Popen([*HD_CLI, "up", "--detach", "--project-root", str(first)],
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    try:
        wait_for(lambda: (first / ".hippodrome" / "registry.json").exists() and
                 registry(first)["services"].get("db", {}).get("state") == "starting", 20,
                 what="db starting")
        first.rename(moved)
        out, _ = up.communicate(timeout=60)
        assert up.returncode == 1, out
        assert f"cwd '{first}' does not exist" in out, out
        assert f"(full output: {moved}/.hippodrome/daemon.log)" in out, out
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        hd(moved if moved.exists() else first, "down", "--force", timeout=60)


def test_a_folder_made_where_a_moved_project_was_gets_nothing_of_its_stack(
        tmp_path: Path) -> None:
    """`mv first moved`, then `mkdir first` (a fresh clone at the old path): the daemon
    took the new folder for its own with a deleted registry, wrote it there with a new
    run's log folder, and every later line of its services went there (q/4)."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    daemon, web = web_stack_up(first)
    try:
        first.rename(moved)
        first.mkdir()
        time.sleep(2.5)  # past the daemon's registry check
        url = registry(moved)["daemon"]["url"]  # transitions: each writes the registry
        request = urllib.request.Request(f"{url}/api/services/web/restart", data=b"{}",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        assert list(first.iterdir()) == [], list(first.rglob("*"))
        said = (moved / ".hippodrome" / "daemon.log").read_text()
        assert f"{first} is another folder now (the project was moved)" in said, said
        down = hd(moved, "down", timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not alive(daemon) and not alive(web)
        assert list(first.iterdir()) == [], list(first.rglob("*"))
    finally:
        stop_by_pid(daemon)


def test_a_dead_run_renamed_away_from_a_fresh_clone_is_still_cleaned_up(
        tmp_path: Path) -> None:
    """The daemon and its guard killed together, leaving a service; then `mv w w.old`
    and a fresh clone at `w`. In w.old the registry was set aside as a copy's ("to stop
    that stack, run hd down in w"), and in w nothing was known: the service ran on for
    good (adv31 r/7). The run is dead and the folder at its old path does not name it,
    so w.old's registry is this folder's, and `hd down --force` there ends it."""
    first, old = tmp_path / "w", tmp_path / "w.old"
    daemon, web = web_stack_up(first)
    guard = registry(first)["daemon"]["guard_pid"]
    try:
        os.kill(guard, signal.SIGSTOP)  # neither may see the other die first
        os.kill(daemon, signal.SIGSTOP)
        os.kill(guard, signal.SIGKILL)
        os.kill(daemon, signal.SIGKILL)
        wait_for(lambda: not alive(daemon) and not alive(guard), 10, what="both gone")
        assert alive(web)
        first.rename(old)
        first.mkdir()
        shutil.copy(old / "hippodrome.toml", first / "hippodrome.toml")
        down = hd(old, "down", "--force", timeout=60)
        said = down.stdout + down.stderr
        assert down.returncode == 0 and "written for the stack in" not in said, said
        assert "stopped leftover 'web'" in said, said
        wait_for(lambda: not alive(web), 10, what="the dead run's service ended")
    finally:
        if alive(web):
            os.kill(web, signal.SIGKILL)


def test_nothing_of_a_moved_stack_starts_in_the_folder_at_its_old_path(
        tmp_path: Path) -> None:
    """The same move and fresh folder, then `hd restart -s w` where the project is now:
    the restarted service ran with the new folder as its cwd, appending to that other
    project's data.txt, and the restart said `w: running`, exit 0 (adv30 q/4). Nothing
    starts there: the service fails with a sentence that says what to do."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    (dash,) = free_ports(1)
    write_stack(first, stack_header(dash) + """
[services.w]
shell = "echo \\"from the stack in $(pwd)\\" >> data.txt; exec sleep 600"
readiness = "none"
""")
    hd(first, "up", "--detach", check=True)
    daemon = registry(first)["daemon"]["pid"]
    try:
        first.rename(moved)
        first.mkdir()
        (first / "data.txt").write_text("the other project's own data\n")
        restart = hd(moved, "restart", "--service", "w", timeout=60)
        assert restart.returncode == 1, restart.stdout + restart.stderr
        assert f"w: failed — service w: the project folder {first} is another folder now" \
            in restart.stdout and "`hd down`, then `hd up` where the project is now" in \
            restart.stdout, restart.stdout
        assert (first / "data.txt").read_text() == "the other project's own data\n"
        assert sorted(p.name for p in first.iterdir()) == ["data.txt"]
        assert hd(moved, "down", timeout=60).returncode == 0
    finally:
        stop_by_pid(daemon)


@pytest.mark.parametrize("force", [False, True], ids=["down", "down-force"])
def test_down_of_a_folder_deleted_under_its_stack_stops_it(tmp_path: Path,
                                                           force: bool) -> None:
    """`rm -rf proj` with its stack running, then `hd down -p proj`: "no such folder",
    exit 2, and the stack ran on with its ports held, nothing saying how to stop it
    (q/8). Its daemon still writes the deleted daemon.log: that is how it is found."""
    from stackutil import HD_CLI

    project = tmp_path / "proj"
    daemon, web = web_stack_up(project)
    try:
        shutil.rmtree(project)
        down = subprocess.run([*HD_CLI, "down", *(["--force"] if force else []),
                               "--project-root", str(project)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        said = down.stdout + down.stderr
        assert down.returncode == 0 and "stack stopped" in said, said
        assert f"its folder {project} is gone" in said, said
        wait_for(lambda: not alive(daemon) and not alive(web), 10, what="the stack ended")
    finally:
        stop_by_pid(daemon)


@pytest.mark.parametrize("restored", [False, True], ids=["fresh-clone", "restored-copy"])
def test_a_folder_deleted_and_made_again_under_its_stack_says_what_runs(
        tmp_path: Path, restored: bool) -> None:
    """`rm -rf proj` with its stack running, then a fresh clone at the same path: `hd
    status` and `hd restart` said no daemon runs (`Start the stack with hd up`), and `hd
    up` that one already runs (`Use hd status, hd restart ...`), round and round; only
    `hd down` found it (adv30 q/5). Each says what runs and that `hd down` stops it.
    Restored from a copy made while it ran (its registry and daemon.log with it), the
    stack was shown running here while every restart failed (adv31 r/1)."""
    project = tmp_path / "proj"
    daemon, web = web_stack_up(project)
    stack_file = (project / "hippodrome.toml").read_text()
    try:
        if restored:
            shutil.copytree(project, tmp_path / "backup", symlinks=True)
        shutil.rmtree(project)
        if restored:
            (tmp_path / "backup").rename(project)
        else:
            project.mkdir()
            (project / "hippodrome.toml").write_text(stack_file)
        words = (f"A stack started in {project} before this folder was deleted or replaced "
                 f"still runs (daemon pid {daemon}")
        for args, code in ((("status",), 5), (("restart", "-s", "web"), 5),
                           (("up", "--detach"), 7)):
            said = hd(project, *args, timeout=60)
            assert said.returncode == code and words in said.stderr, (args, said.stderr)
            assert "`hd down` stops it; then `hd up` starts this folder's stack" in \
                said.stderr, said.stderr
        # It said only that the stack's ports were busy (adv31 q's notes).
        doctor = hd(project, "doctor", timeout=60)
        assert doctor.returncode == 1 and words in doctor.stdout, doctor.stdout
        # On other ports, found by the dashboard's alone, a second stack started beside
        # it, and `hd down` stopped only that one (adv32 u/1).
        beside = hd(project, "up", "--detach", "--port-offset", "7", timeout=60)
        assert beside.returncode == 7 and words in beside.stderr, beside.stderr
        assert alive(daemon) and alive(web)
        down = hd(project, "down", timeout=60)
        assert down.returncode == 0 and "stack stopped" in down.stdout, down.stdout
        wait_for(lambda: not alive(daemon) and not alive(web), 10, what="the stack ended")
    finally:
        stop_by_pid(daemon)


def test_a_stack_whose_folder_was_replaced_by_a_moved_one_is_stopped_by_its_down(
        tmp_path: Path) -> None:
    """`rm -rf proj` under its running stack, then another project folder, running its
    own stack, moved to that path: `hd down` there said "stack stopped" and left the
    first stack running, and `hd doctor` passed (adv32 u/1)."""
    project, other = tmp_path / "proj", tmp_path / "other"
    first, first_web = web_stack_up(project)
    second, second_web = web_stack_up(other)
    try:
        shutil.rmtree(project)
        other.rename(project)
        words = (f"A stack started in {project} before this folder was deleted or replaced "
                 f"still runs (daemon pid {first}")
        doctor = hd(project, "doctor", timeout=60)
        assert doctor.returncode == 1 and words in doctor.stdout, doctor.stdout
        down = hd(project, "down", timeout=60)
        assert down.returncode == 0 and "stack stopped" in down.stdout, down.stdout
        assert f"still runs: pid {first} writes" in down.stdout, down.stdout
        wait_for(lambda: not any(alive(p) for p in (first, first_web, second, second_web)),
                 15, what="both stacks ended")
    finally:
        stop_by_pid(first)
        stop_by_pid(second)


def test_down_right_after_the_state_folder_is_renamed_stops_the_stack(
        project: Path) -> None:
    """`mv .hippodrome x`, then `hd down` within the daemon's 2 s: "nothing to stop",
    exit 0, and the stack ran on (q/14). Its daemon runs here and writes x/daemon.log:
    `down` waits for it to write .hippodrome again, then stops it."""
    daemon, web = web_stack_up(project)
    try:
        (project / ".hippodrome").rename(project / "moved-state")
        down = hd(project, "down", timeout=60)
        said = down.stdout + down.stderr
        assert down.returncode == 0 and "stack stopped" in said, said
        assert "nothing to stop" not in said and "moved or renamed" in said, said
        wait_for(lambda: not alive(daemon) and not alive(web), 10, what="the stack ended")
    finally:
        stop_by_pid(daemon)


def test_a_foreground_stack_without_events_ends_without_an_events_line(
        project: Path) -> None:
    """A foreground `up` (no --enable-events) stopped by `hd down` after a file took the
    place of `.hippodrome`: it ended on "events cleanup failed (cannot write ...
    Nothing was started or stopped.); `hd down` retries it", for events it never had
    (r/7)."""
    from stackutil import HD_CLI

    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    up = subprocess.Popen([*HD_CLI, "up"], cwd=project, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True,
                          env={**os.environ, "NO_COLOR": "1"})
    try:
        wait_for(lambda: (project / ".hippodrome" / "registry.json").exists()
                 and registry(project)["services"].get("web", {}).get("ready"), 30,
                 what="the stack ready")
        # moved away in one step: a removal raced the daemon writing into the folder;
        # again if the daemon made the folder anew in between (a registry write, once in
        # a CI rehearsal)
        for attempt in range(20):
            with contextlib.suppress(FileNotFoundError):
                (project / ".hippodrome").rename(project.parent / f"old-state-{attempt}")
            try:
                (project / ".hippodrome").write_text("oops\n")
                break
            except IsADirectoryError:
                continue
        assert (project / ".hippodrome").is_file(), "the daemon kept making the folder"
        down = hd(project, "down", timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        out, _ = up.communicate(timeout=60)
        assert "events cleanup" not in out and "Nothing was started or stopped" not in out, out
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()


def test_another_folders_registry_with_a_live_stacks_token_ends_nothing(
        tmp_path: Path) -> None:
    """The token is as public as a pid (/proc/PID/cgroup, the guard's command line):
    copied into another folder's registry beside a dead daemon, a mere `hd status`
    there ended the live stack's services and removed its cgroup."""
    first, other = tmp_path / "first", tmp_path / "other"
    daemon, web = web_stack_up(first)
    try:
        live = registry(first)["daemon"]
        other.mkdir()
        write_stack(other, stack_header(free_ports(1)[0]))
        gone = subprocess.Popen(["true"])
        gone.wait()
        (other / ".hippodrome").mkdir()
        (other / ".hippodrome" / "registry.json").write_text(json.dumps({
            "version": 1, "project_root": str(other), "failure": None, "resources": [],
            "services": {"web": {"pid": web, "state": "running"}},
            "daemon": {**live, "pid": gone.pid, "create_time": 1.0, "guard_pid": None}}))
        for args in (("status",), ("down",), ("down", "--force")):
            res = hd(other, *args, timeout=60)
            assert "Traceback" not in res.stdout + res.stderr
            assert alive(web), f"`hd {' '.join(args)}` in another folder ended web"
        if live.get("cgroup"):
            assert Path(live["cgroup"]).is_dir(), "another folder removed the stack's cgroup"
        assert hd(first, "restart", "--service", "web").returncode == 0
    finally:
        stop_by_pid(daemon)


def test_a_registry_copied_with_this_folder_as_its_root_stops_nothing(tmp_path: Path) -> None:
    """project_root edited to name the copy's own folder: the registry then passed for
    this folder's, and `hd down` there shut the other stack down. Whose daemon it is
    is read from the daemon (the daemon.log it writes, its folder), not the file."""
    first, other = tmp_path / "first", tmp_path / "other"
    daemon, web = web_stack_up(first)
    try:
        other.mkdir()
        write_stack(other, stack_header(free_ports(1)[0]))
        (other / ".hippodrome").mkdir()
        forged = {**registry(first), "project_root": str(other)}
        for args in (("status",), ("down",), ("down", "--force")):
            (other / ".hippodrome" / "registry.json").write_text(json.dumps(forged))
            res = hd(other, *args, timeout=60)
            said = res.stdout + res.stderr
            assert f"written for the stack in {first}" in said and "Traceback" not in said, said
            assert alive(daemon) and alive(web), f"`hd {' '.join(args)}` in {other} stopped it"
        assert hd(first, "status").returncode == 0
    finally:
        stop_by_pid(daemon)


def test_a_copy_put_back_where_a_moved_project_was_stops_nothing(tmp_path: Path) -> None:
    """mv first moved, then cp -a moved first: the copy's registry names first, where it
    now is, and it stopped the moved stack; the moved folder's own registry (naming
    first, which exists again) was set aside as foreign, and its stack was lost."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    daemon, web = web_stack_up(first)
    try:
        first.rename(moved)
        shutil.copytree(moved, first, symlinks=True)
        down = hd(first, "down", timeout=60)
        said = down.stdout + down.stderr
        assert f"written for the stack in {moved}" in said, said
        assert alive(daemon) and alive(web), "`hd down` in the copy stopped the moved stack"
        status = hd(moved, "status")
        assert status.returncode == 0 and "written for the stack in" not in \
            status.stdout + status.stderr, status.stdout + status.stderr
    finally:
        stop_by_pid(daemon)


@pytest.mark.parametrize("daemon_alive", [True, False])
def test_a_non_ascii_folder_read_under_another_locale_is_still_this_folder(
        tmp_path: Path, daemon_alive: bool) -> None:
    """Started under UTF-8 in `app-日本`, then `hd status` under the C locale (no UTF-8
    mode): the path read back as other characters, and the folder's own registry was
    set aside as a copy's, while its stack ran on unseen."""
    root = tmp_path / "app-日本"
    daemon, web = web_stack_up(root)
    try:
        if not daemon_alive:
            os.kill(daemon, signal.SIGKILL)
            wait_for(lambda: not alive(web), 10, what="the guard ending web")
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
               "PYTHONCOERCECLOCALE": "0", "NO_COLOR": "1"}
        res = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "status"],
                             cwd=root, capture_output=True, text=True, env=env, timeout=60)
        said = res.stdout + res.stderr
        assert "written for the stack in" not in said, said
        assert not list((root / ".hippodrome").glob("registry.json.foreign-*")), said
        assert res.returncode == (0 if daemon_alive else 5), said
    finally:
        stop_by_pid(daemon)


def test_a_registry_naming_a_strangers_live_pid_does_not_block_up(project: Path) -> None:
    """After a reboot the registry's pids belong to other programs, and a start time
    copied from /proc matched too: `up` said a daemon was already running (exit 7),
    `doctor` said "[OK] daemon running", and only `down` looked further."""
    web_stack_up(project)
    saved = json.loads((project / ".hippodrome" / "registry.json").read_text())
    hd(project, "down", check=True)
    other = project.parent / "other"
    other_daemon, other_web = web_stack_up(other)  # where the stale URL now leads
    stranger = subprocess.Popen(["sleep", "300"], cwd="/")
    try:
        url = registry(other)["daemon"]["url"]
        saved["daemon"].update(pid=stranger.pid, create_time=identity(stranger.pid),
                               url=url, port=int(url.rsplit(":", 1)[1]))
        (project / ".hippodrome" / "registry.json").write_text(json.dumps(saved))
        status = hd(project, "status")  # it showed the other stack's table as its own
        assert status.returncode == 5, status.stdout + status.stderr
        (project / ".hippodrome" / "registry.json").write_text(json.dumps(saved))
        down = hd(project, "down", timeout=60)  # it shut the other stack down
        assert down.returncode == 0 and alive(other_daemon) and alive(other_web), \
            down.stdout + down.stderr
        (project / ".hippodrome" / "registry.json").write_text(json.dumps(saved))
        doctor = hd(project, "doctor")
        assert "daemon running" not in doctor.stdout, doctor.stdout
        up = hd(project, "up", "--detach")
        said = up.stdout + up.stderr
        assert up.returncode == 0, said
        assert f"pid {stranger.pid} (recorded as the daemon) runs, but is not this " \
               "project's daemon" in said, said
        assert stranger.poll() is None, "a pid the file merely named was signalled"
        hd(project, "down", check=True)
    finally:
        stranger.kill()
        stranger.wait(10)
        hd(other, "down", timeout=60)


def test_a_state_folder_linked_to_another_projects_is_refused_and_that_stack_untouched(
        project: Path, copy: Path) -> None:
    """`.hippodrome` made a link to another project's `.hippodrome` (a dotfiles habit, a
    shared cache): the commands here read that stack's registry as a copied one, set it
    aside as foreign under its running daemon, and `up` wrote its own stack into it. Every
    command refuses, names the link and the project it leads to, and touches nothing."""
    dash, port, dash2, port2 = free_ports(4)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    hd(project, "up", "--detach", check=True)
    try:
        before = (project / ".hippodrome" / "registry.json").read_bytes()
        copy.mkdir()
        write_stack(copy, stack_header(dash2) + toy_service("api", port2))
        (copy / ".hippodrome").symlink_to(project / ".hippodrome")
        for argv in (("up", "--detach"), ("status",), ("down",)):
            run = hd(copy, *argv, timeout=60)
            assert run.returncode == 10, (argv, run.stdout + run.stderr)
            assert (f"{copy / '.hippodrome'} is a link to {project / '.hippodrome'}, the "
                    f"state folder of the project in {project}") in run.stderr, run.stderr
            assert (project / ".hippodrome" / "registry.json").read_bytes() == before
            assert not list((project / ".hippodrome").glob("registry.json.*")), argv
        status = hd(project, "status", check=True)
        assert "web" in status.stdout and "api" not in status.stdout, status.stdout
    finally:
        if (copy / ".hippodrome").is_symlink():
            (copy / ".hippodrome").unlink()
        hd(project, "down", timeout=60)


def test_down_stops_a_stack_whose_state_folder_was_swapped_for_anothers_link(
        project: Path, copy: Path) -> None:
    """`.hippodrome` moved away under a running stack and a link to another project's put
    in its place: `down` stops this stack (its daemon writes the moved daemon.log), says
    what stands there, and the other stack runs on."""
    dash, port, dash2, port2 = free_ports(4)
    copy.mkdir()
    write_stack(project, stack_header(dash) + toy_service("web", port))
    write_stack(copy, stack_header(dash2) + toy_service("api", port2))
    hd(project, "up", "--detach", check=True)
    hd(copy, "up", "--detach", check=True)
    mine = registry(copy)["daemon"]["pid"]
    theirs = registry(project)["daemon"]["pid"]
    try:
        (copy / ".hippodrome").rename(copy / "old-state")
        (copy / ".hippodrome").symlink_to(project / ".hippodrome")
        down = hd(copy, "down", timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        assert (f"{copy / '.hippodrome'} is a symbolic link (to {project / '.hippodrome'})"
                ": remove the link") in down.stdout, down.stdout
        assert wait_for(lambda: not alive(mine), timeout=10), mine
        assert alive(theirs)
        assert "web" in hd(project, "status", check=True).stdout
    finally:
        (copy / ".hippodrome").unlink(missing_ok=True)
        hd(project, "down", timeout=60)


@pytest.mark.parametrize("name", ["lifecycle.lock", "registry.lock", "daemon.log"])
def test_a_link_inside_the_state_folder_is_never_written_through(
        project: Path, tmp_path: Path, name: str) -> None:
    """`.hippodrome/lifecycle.lock -> ../../authorized_keys`, committed to a cloned repo
    or planted: `hd up` truncated the file it led to, and daemon.log appended to its
    target (adv24 c/12). Refused, exit 10, naming the link; the target is untouched."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA... mine\n")
    (project / ".hippodrome").mkdir()
    (project / ".hippodrome" / name).symlink_to(victim)
    try:
        up = hd(project, "up", "--detach", timeout=60)
        assert up.returncode == 10, up.stdout + up.stderr
        assert f"cannot write {project / '.hippodrome' / name}: it is a symbolic link" in \
            up.stderr, up.stderr
        assert victim.read_text() == "ssh-ed25519 AAAA... mine\n"
    finally:
        hd(project, "down", "--force", timeout=60)
    assert victim.read_text() == "ssh-ed25519 AAAA... mine\n"


@pytest.mark.parametrize("made_before", [False, True], ids=["made-here", "made-0777-before"])
def test_the_state_folders_are_not_left_writable_by_everyone(project: Path,
                                                             made_before: bool) -> None:
    """Under `umask 000`, `.hippodrome` and `.logs/<run>` were made 0777, so any local
    user could plant a link for the owner's next command (adv24 c/12). Folders made
    beforehand with `mkdir -m 777` (or a tmpfs mounted there) were used as they were
    (adv30 p's notes): made private too, as they are ours."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    shared = project.parent / "shared"  # a folder others write to, on purpose
    shared.mkdir()
    os.chmod(shared, 0o1777)
    if made_before:
        for name in (".hippodrome", ".logs"):
            (project / name).mkdir()
            os.chmod(project / name, 0o1777)
    else:  # `.logs` a link to it: never chmod through a link (adv31 r/2)
        (project / ".logs").symlink_to(shared)
    old = os.umask(0)
    try:
        hd(project, "up", "--detach", check=True, timeout=60)
    finally:
        os.umask(old)
    try:
        for folder in (project / ".hippodrome", project / ".logs",
                       (project / ".logs" / "latest").resolve()):
            if not folder.is_symlink():
                assert folder.stat().st_mode & 0o022 == 0, (folder, oct(folder.stat().st_mode))
        assert shared.stat().st_mode & 0o7777 == 0o1777, oct(shared.stat().st_mode)
    finally:
        hd(project, "down", timeout=60)


def test_a_state_folder_linked_elsewhere_is_refused(project: Path, tmp_path: Path) -> None:
    """`.hippodrome` linked to a folder of its own (state on another disk): up, status
    and down worked, but the daemon's output was the link's target, and `down --force`
    did not know it as this project's daemon: left running, exit 0 (adv25 d/3)."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    elsewhere = tmp_path / "fast-disk" / "state"
    elsewhere.mkdir(parents=True)
    (project / ".hippodrome").symlink_to(elsewhere)
    for argv in (("up", "--detach"), ("status",), ("down", "--force")):
        run = hd(project, *argv, timeout=60)
        assert run.returncode == 10, (argv, run.stdout + run.stderr)
        assert f"{project / '.hippodrome'} is a symbolic link (to {elsewhere})" in \
            run.stderr, run.stderr
    assert list(elsewhere.iterdir()) == []


FOREIGN_SERVER = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = open(sys.argv[2], "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_POST = do_GET
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
ROW = {"name": "web", "state": "running", "healthy": True, "pid": 1, "port": 1,
       "restarts": 0, "uptime_s": 1.0, "exit_code": None, "reason": ""}
HEAD = {"profile": "core", "cell": "local", "table_prefix": "x"}
ODD_ANSWERS = {
    "no profile": ('{"services": []}', "no 'profile'"),
    "no healthy": (json.dumps({**HEAD, "services": [{k: v for k, v in ROW.items()
                                                      if k != "healthy"}]}),
                   "a service row's 'healthy' missing or of another type"),
    "state null": (json.dumps({**HEAD, "services": [{**ROW, "state": None}]}),
                   "a service row's 'state' missing"),
    "deep": ("[" * 100_000 + "]" * 100_000, "a body that is not JSON"),
    "nan": (json.dumps({**HEAD, "services": [{**ROW, "uptime_s": float("nan")}]}),
            "a body that is not JSON"),
}


@pytest.mark.parametrize("odd", list(ODD_ANSWERS))
def test_a_program_in_the_folder_answering_on_the_daemons_port_is_a_sentence(
        project: Path, odd: str) -> None:
    """A process running in the project folder on the registry's port, recorded as the
    daemon (a daemon of another version, a dev server), answering `/api/status` with
    another document: `hd status` was a KeyError, TypeError or RecursionError traceback,
    and `hd restart` printed `web: running (pid 1)` for a restart nothing did (adv26
    f/1, adv27 j/3)."""
    answer, words = ODD_ANSWERS[odd]
    web_stack_up(project)
    saved = json.loads((project / ".hippodrome" / "registry.json").read_text())
    hd(project, "down", check=True)
    port = int(saved["daemon"]["url"].rsplit(":", 1)[1])
    (project / "answer.json").write_text(answer)
    foreign = subprocess.Popen([sys.executable, "-c", FOREIGN_SERVER, str(port),
                                str(project / "answer.json")], cwd=project)
    try:
        def answers() -> bool:
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return True
            return False

        wait_for(answers, what="the foreign server")
        saved["daemon"].update(pid=foreign.pid, create_time=identity(foreign.pid))
        (project / ".hippodrome" / "registry.json").write_text(json.dumps(saved))
        for command in (["status"], ["why", "web"], ["restart", "-s", "web"], ["start"]):
            done = hd(project, *command)
            said = done.stdout + done.stderr
            assert "Traceback" not in said and done.returncode == 6, (command, said)
            assert f"(pid {foreign.pid}) does not answer" in said, said
            if command == ["status"]:
                assert words in said, said
        assert foreign.poll() is None
    finally:
        foreign.kill()
        foreign.wait(10)


TRICKLING_SERVER = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def answer(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(400):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(0.5)
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_a_daemon_trickling_its_answer_is_given_up_on(project: Path) -> None:
    """A process on the registry's port answering a byte every 0.5 s: `hd status` and
    `hd down` waited for ever, as the timeout bounded each read alone (adv27 j/4)."""
    web_stack_up(project)
    saved = json.loads((project / ".hippodrome" / "registry.json").read_text())
    hd(project, "down", check=True)
    port = int(saved["daemon"]["url"].rsplit(":", 1)[1])
    foreign = subprocess.Popen([sys.executable, "-c", TRICKLING_SERVER, str(port)],
                               cwd=project)
    try:
        wait_for(lambda: subprocess.run(["ss", "-ltn", f"sport = :{port}"], text=True,
                                        capture_output=True).stdout.count("LISTEN") > 0,
                 what="the trickling server")
        saved["daemon"].update(pid=foreign.pid, create_time=identity(foreign.pid))
        (project / ".hippodrome" / "registry.json").write_text(json.dumps(saved))
        status = hd(project, "status", timeout=60)
        said = status.stdout + status.stderr
        assert status.returncode == 6 and "does not answer" in said, said
        down = hd(project, "down", timeout=90)
        assert "Traceback" not in down.stdout + down.stderr, down.stdout + down.stderr
    finally:
        foreign.kill()
        foreign.wait(10)


@pytest.mark.parametrize("where", ["project", "elsewhere"])
def test_doctor_calls_a_recorded_stranger_neither_running_nor_dead(project: Path,
                                                                   where: str) -> None:
    """`hd doctor` said `[OK] daemon running` for a recorded `sleep` started in the
    project folder, and `stale registry from a dead daemon` for one running elsewhere
    (adv53 F4): the first does not answer at the recorded URL, the second is provably
    not this project's daemon. Neither is signalled."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + toy_service("web", free_ports(1)[0]))
    stranger = subprocess.Popen(["sleep", "300"], cwd=project if where == "project" else "/")
    try:
        born = identity(stranger.pid)
        record_as_daemon(project, stranger.pid, born, dash)
        doctor = hd(project, "doctor", timeout=60)
        said = doctor.stdout + doctor.stderr
        assert "daemon running" not in said and "dead daemon" not in said, said
        if where == "project":
            assert doctor.returncode == 1, said
            assert f"[FAIL] daemon pid {stranger.pid} runs but does not answer" in said, said
        else:
            assert f"pid {stranger.pid}, recorded as the daemon, runs but is not this " \
                   "project's daemon" in said, said
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait(10)


def test_a_named_pipe_in_the_folder_a_registry_names_hangs_nothing(tmp_path: Path) -> None:
    """A registry naming another folder whose own registry.json is a named pipe: the
    look at that folder's run (is it the one this file names?) read the pipe, and every
    command here waited for ever (found looking for more of adv53 F7's kind)."""
    here, there = tmp_path / "here", tmp_path / "there"
    for folder in (here, there):
        (folder / ".hippodrome").mkdir(parents=True)
        write_stack(folder, stack_header(free_ports(1)[0]) + toy_service("web", None))
    os.mkfifo(there / ".hippodrome" / "registry.json")
    gone = subprocess.Popen(["true"])
    gone.wait()
    record_as_daemon(here, gone.pid, 1.0, 9, root=there)
    for args in (("status",), ("down",)):
        done = hd(here, *args, timeout=30)  # TimeoutExpired: hung on the pipe
        said = done.stdout + done.stderr
        assert "Traceback" not in said, said
