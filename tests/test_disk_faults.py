"""Read-only and full disks, on real tmpfs mounts (the suite runs as root in CI).

A read-only `.hippodrome` or `.logs` is one sentence and exit 10, never a traceback; a
disk that fills up while the stack runs does not stop supervision, is shown in status
and the API, is noted in each affected log once space returns, and the registry
catches up.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from stackutil import (
    HD_CLI,
    alive,
    free_ports,
    hd,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting tmpfs needs root")


@contextlib.contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def cleaned_up(root: Path) -> Iterator[None]:
    """The fixture's own sweep runs after the mount is gone: clean up while it is here."""
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            (root / "filler").unlink()
        force_down(Registry(root))


def status(root: Path) -> dict[str, Any]:
    proc = hd(root, "status", "--json", check=True)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_read_only_hippodrome_is_one_sentence_and_exit_10(project: Path) -> None:
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    with tmpfs(project / ".hippodrome", "1m", readonly=True):
        up = hd(project, "up", "--detach")
        assert up.returncode == 10, up.stdout + up.stderr
        assert "cannot write" in up.stderr and ".hippodrome" in up.stderr
        assert "Traceback" not in up.stdout + up.stderr
        st = hd(project, "status")
        assert st.returncode == 5 and "Traceback" not in st.stderr, st.stderr
        down = hd(project, "down")
        assert down.returncode == 0 and "Traceback" not in down.stderr, down.stderr


def test_init_in_a_read_only_folder_is_one_sentence_and_exit_10(tmp_path: Path) -> None:
    """The temporary file could not be made, and removing it then raised EROFS itself:
    a traceback and exit 1 instead of the documented sentence."""
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as ro:
        res = subprocess.run([*HD_CLI, "init"], cwd=ro, capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 10, res.stdout + res.stderr
        assert f"cannot write {ro}/hippodrome.toml" in res.stderr, res.stderr
        assert "Traceback" not in res.stdout + res.stderr
        assert os.listdir(ro) == []


def test_read_only_logs_is_one_sentence_and_exit_10(project: Path) -> None:
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    with tmpfs(project / ".logs", "1m", readonly=True):
        for args in (("up", "--detach"), ("up",)):
            up = hd(project, *args, timeout=60)
            assert up.returncode == 10, (args, up.stdout + up.stderr)
            assert "cannot write" in up.stderr and "Traceback" not in up.stdout + up.stderr
    assert not (project / ".hippodrome" / "registry.json").exists() or \
        json.loads((project / ".hippodrome" / "registry.json").read_text())["daemon"] is None


@pytest.mark.parametrize("spoil", ["directory", "immutable", "fifo"])
def test_a_daemon_log_that_cannot_be_opened_is_exit_10(project: Path, spoil: str) -> None:
    """`.hippodrome/daemon.log` a directory, or a file `chattr +i` made immutable: the
    detached daemon has nowhere to write, which is said before anything starts."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    log = project / ".hippodrome" / "daemon.log"
    log.parent.mkdir()
    if spoil == "directory":
        log.mkdir()
    elif spoil == "fifo":  # with no reader, opening it to write waited for ever
        os.mkfifo(log)
    else:
        log.touch()
        if subprocess.run(["chattr", "+i", str(log)]).returncode != 0:
            pytest.fail("chattr +i failed: this file system cannot make a file immutable")
    try:
        up = hd(project, "up", "--detach", timeout=60)
    finally:
        if spoil == "immutable":
            subprocess.run(["chattr", "-i", str(log)], check=True)
    assert up.returncode == 10, up.stdout + up.stderr
    assert f"cannot write {log}" in up.stderr and "Traceback" not in up.stdout + up.stderr
    if spoil == "fifo":  # it said "Make the folder writable (or free disk space)" (R/7)
        assert "a named pipe, not a file; move it away" in up.stderr, up.stderr
    assert json.loads((project / ".hippodrome" / "registry.json").read_text())["daemon"] \
        is None, "something started"


def test_down_force_by_another_path_of_a_bind_mount_ends_the_daemon(
        project: Path, tmp_path: Path) -> None:
    """The project bind-mounted at a second path (a dev container's /workspace), the
    stack started through it: `hd down --force` by the first path said the recorded
    daemon "does not listen ... with this project's daemon.log as its output: it was
    not signalled", ended the services and left the daemon, which then failed them
    with "internal error: FileNotFoundError" (adv45 R/13). The same file is the same
    file by any name."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    mounted = tmp_path / "workspace"
    mounted.mkdir()
    subprocess.run(["mount", "--bind", str(project), str(mounted)], check=True)
    daemon = 0
    try:
        hd(mounted, "up", "--detach", check=True, timeout=60)
        daemon = registry(project)["daemon"]["pid"]
        down = hd(project, "down", "--force", timeout=60)
        said = down.stdout + down.stderr
        assert down.returncode == 0 and "was not signalled" not in said, said
        wait_for(lambda: not alive(daemon), 10, what="the daemon ended")
    finally:
        force_down(Registry(mounted))
        if daemon and alive(daemon):  # the very bug: ours, by the pid it was started as
            os.kill(daemon, signal.SIGKILL)
        subprocess.run(["umount", "-l", str(mounted)], check=False)


def test_logs_with_no_room_for_the_latest_link_names_its_folder(project: Path) -> None:
    """`.logs` with room for the run's folder and not for the `latest` link: "cannot
    write 20261206-195955: No space left on device", a name found nowhere, and the
    registry kept the daemon that had ended, so the next command named a stale entry
    after an `up` that said nothing was started (adv45 R/5)."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    with tmpfs(project / ".logs", "1m,nr_inodes=2") as logs, cleaned_up(project):
        up = hd(project, "up", "--detach", timeout=60)
        said = up.stdout + up.stderr
        assert up.returncode == 10 and f"cannot write {logs}/" in up.stderr, said
        assert "No space left on device" in said and "Traceback" not in said, said
        assert registry(project)["daemon"] is None, registry(project)
        status = hd(project, "status")
        assert status.returncode == 5 and "stale" not in status.stdout + status.stderr, \
            status.stdout + status.stderr


@pytest.mark.parametrize(("limit", "said"), [
    (1024, "File too large: the shell's file-size limit (ulimit -f: 1024 bytes) is too small"),
    # too small for daemon.log's first line too: said from the daemon's exit code
    (300, "or the shell's file-size limit (ulimit -f: 300 bytes) too small?"),
])
def test_a_tiny_file_size_limit_is_named_not_blamed_on_the_folder(
        project: Path, limit: int, said: str) -> None:
    """`ulimit -f 1`: "cannot write .../registry.json: File too large. Make the folder
    writable (or free disk space)", where the folder was fine (adv45 R/9)."""
    import resource

    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port))
    up = subprocess.run([*HD_CLI, "up", "--detach"], cwd=project, capture_output=True,
                        text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
                        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                              (limit, limit)))
    out = up.stdout + up.stderr
    assert up.returncode == 10 and said in up.stderr and "Traceback" not in out, out
    assert registry(project)["daemon"] is None, registry(project)


def test_a_foreground_up_on_a_full_disk_starts_nothing(project: Path) -> None:
    """`up --detach` said exit 10, but a foreground `up` started every service with no
    registry ("retrying every second"): `hd status` said no daemon ran, `hd down` that
    there was nothing to stop, and the services ran on. The refused starts leave the
    logs as they were: each pointed `latest` at an empty run and pruned a real one, until
    the logs of the runs to diagnose were gone (q/1)."""
    dash, port = free_ports(2)
    marker = f"sleep {port}.5"  # a command line no other test runs
    with tmpfs(project / "disk", "1m") as root, cleaned_up(root):
        write_stack(root, stack_header(dash, log_runs_kept=2)
                    + toy_service("web", port) + f'[services.bg]\nshell = "exec {marker}"\n')
        for _ in range(2):
            hd(root, "up", "--detach", check=True, timeout=60)
            hd(root, "down", check=True, timeout=60)
        runs = sorted(p.name for p in (root / ".logs").glob("2*"))
        latest = os.readlink(root / ".logs" / "latest")
        assert len(runs) == 2 and latest == runs[-1], (runs, latest)
        with open(root / "filler", "wb") as fh, contextlib.suppress(OSError):
            fh.write(b"\0" * (2 * 1024 * 1024))
        for _ in range(2):
            up = hd(root, "up", timeout=60)
            assert up.returncode == 10, up.stdout + up.stderr
            assert f"cannot write {root}/.hippodrome/registry.json: No space left on " \
                "device" in up.stderr, up.stderr
            assert "Traceback" not in up.stdout + up.stderr
        assert not [p for p in psutil.process_iter(["cmdline"])
                    if " ".join(p.info["cmdline"] or []) == marker], "a service started"
        assert sorted(p.name for p in (root / ".logs").glob("2*")) == runs
        assert os.readlink(root / ".logs" / "latest") == latest
        assert all((root / ".logs" / run / "web.log").is_file() for run in runs)


def test_up_detach_returns_when_the_disk_fills_after_the_first_write(project: Path) -> None:
    """The registry's first write succeeded, then the disk filled: `up --detach` waited
    for a registry the daemon could no longer write, for ever, while `hd status` (which
    asks the daemon) showed every service running."""
    dash, port = free_ports(2)
    with tmpfs(project / "disk", "2m") as root, cleaned_up(root):
        write_stack(root, stack_header(dash)
                    + '[services.filler]\nshell = "head -c 4000000 /dev/zero > filler; '
                      'exec sleep 1000"\n'
                    + toy_service("web", port, "--delay", "1", depends_on=["filler"]))
        up = hd(root, "up", "--detach", timeout=60)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "stack ready in" in up.stdout
        assert "warning: cannot write" in up.stdout and "No space left on device" in up.stdout
        (root / "filler").unlink()
        assert hd(root, "down", timeout=60).returncode == 0


def test_a_full_disk_is_shown_noted_and_caught_up(project: Path) -> None:
    dash, port = free_ports(2)
    with tmpfs(project, "2m"), cleaned_up(project):
        write_stack(project, stack_header(dash, liveness_interval=60.0)
                    + toy_service("web", port, readiness={"http": "/healthz"}))
        hd(project, "up", "--detach", check=True)
        before = status(project)
        pid = next(r for r in before["services"] if r["name"] == "web")["pid"]
        assert before["problems"] == {}
        filler = project / "filler"
        with open(filler, "wb") as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"x" * 65536)
                fh.flush()

        def hit(n: int) -> None:
            for _ in range(n):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()

        hit(400)  # a log line per request (the toy logs each): more than the last page holds
        full = wait_for(lambda: (s := status(project))["problems"].get("logs") and s, 10,
                        what="the log trouble in status")
        assert full["problems"]["logs"]["lines_dropped"] > 0
        assert "No space left" in full["problems"]["logs"]["error"]
        assert alive(pid)
        # A restart while the disk is full: the API is right, the registry lags ...
        hd(project, "restart", "--service", "web", check=True)
        api_pid = next(r for r in status(project)["services"] if r["name"] == "web")["pid"]
        assert api_pid != pid and alive(api_pid)
        assert "registry" in status(project)["problems"]
        text = hd(project, "status").stdout
        assert "WARNING: cannot write" in text
        # ... and everything catches up once space returns.
        filler.unlink()
        registry = project / ".hippodrome" / "registry.json"
        wait_for(lambda: json.loads(registry.read_text())["services"]["web"]["pid"] == api_pid,
                 10, what="the registry to catch up")
        hit(3)
        wait_for(lambda: status(project)["problems"] == {}, 10, what="the trouble to clear")
        log = (project / ".logs" / "latest" / "web.log").read_text("utf-8", "replace")
        assert "lines were not written here (No space left on device" in log
        note_at = log.index("lines were not written here")
        assert log[log.rindex("\n", 0, note_at) + 1:].startswith("--- hippodrome: ")
        hd(project, "down", check=True)


def test_a_daemon_that_could_write_nothing_is_said_from_its_exit_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With daemon.log and the registry on a full disk, the daemon's own sentence could
    go nowhere; printing it failed, it ended as an internal error (70), and `up
    --detach` said only "the daemon exited with code 70". It now exits 10."""
    from hippo_tasks.daemon.main import _fail
    from hippo_tasks.errors.state_dir import StateDirError
    from hippo_tasks.tasks.detached import _report_failure

    with tmpfs(tmp_path / "ro", "1m", readonly=True) as ro, \
            io.TextIOWrapper(open("/dev/full", "wb", buffering=0), write_through=True) as full:
        monkeypatch.setattr("sys.stderr", full)  # its stderr, daemon.log, on the full disk
        code = _fail(ro, StateDirError(str(ro / ".hippodrome"), "No space left on device"))
    assert code == 10
    with pytest.raises(StateDirError, match="could not write its files there"):
        _report_failure(None, code, tmp_path / "daemon.log", 0)


def test_down_on_a_full_disk_says_what_it_did(project: Path) -> None:
    """Everything stopped, but `down` said "the daemon ended before it finished stopping
    the stack" and "nothing was started or stopped", then "stack stopped"."""
    dash, a, b = free_ports(3)
    with tmpfs(project / "disk", "2m") as root, cleaned_up(root):
        write_stack(root, stack_header(dash) + toy_service("a", a) + toy_service("b", b))
        up = hd(root, "up", "--detach", timeout=60)
        assert up.returncode == 0, up.stdout + up.stderr
        pids = [s["pid"] for s in json.loads(
            (root / ".hippodrome" / "registry.json").read_text())["services"].values()]
        with open(root / "filler", "wb") as fh, contextlib.suppress(OSError):
            fh.write(b"\0" * (4 * 1024 * 1024))
        down = hd(root, "down", timeout=60)
        said = down.stdout + down.stderr
        assert down.returncode == 0, said
        assert not any(alive(p) for p in pids), said
        assert "ended before it finished" not in said and "nothing was started" not in said
        assert "stopped the stack but could not clear its registry entry" in said, said
        assert "could not clear the registry" in said and "harmless" in said, said
        assert "stack stopped, daemon exited" in said, said


def test_a_tiny_open_files_limit_is_named_not_blamed_on_the_folder(project: Path) -> None:
    """`ulimit -n 10`: "Make the folder writable" or "Run this as the user who started
    the stack", for a writable folder and the right user."""
    import resource

    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.a]\ncommand = ["sleep", "60"]\n')
    for limit in (5, 8, 10):
        up = subprocess.run(
            [*HD_CLI, "up", "--detach"], cwd=project, capture_output=True, text=True,
            timeout=60, preexec_fn=lambda n=limit: resource.setrlimit(  # type: ignore[misc]
                resource.RLIMIT_NOFILE, (n, n)))
        said = up.stdout + up.stderr
        if up.returncode == 0:  # enough to start after all: nothing to name
            hd(project, "down", timeout=60)
            continue
        assert f"Too many open files (the open-files limit, ulimit -n: {limit})" in said, said
        assert "writable" not in said and "the user who started" not in said, said


def _fill(folder: Path) -> Path:
    """A file taking every free byte of the disk under `folder`."""
    filler = folder / "filler"
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as fh:
        while True:
            fh.write(b"\0" * 4096)
    return filler


def test_analytics_on_a_full_disk_keep_no_partial_line(tmp_path: Path) -> None:
    """A search whose line the disk cut short left a partial line; the next search,
    answered once space was back, was glued onto it, and both were dropped at the next
    start (q/2). The failed line is cut off again, and nothing acknowledged is lost."""
    from hippo_platform.services.search_proxy.analytics import Analytics

    with tmpfs(tmp_path / "disk", "256k") as disk:
        path = disk / "search_proxy" / "analytics.jsonl"
        kept = Analytics(path)
        answered = [kept.record_search("key", "shop", "a" * 400, 1)]
        filler = _fill(disk)
        with pytest.raises(OSError) as full:  # the rest of the file's page, then full
            for _ in range(20):
                answered.append(kept.record_search("key", "shop", "b" * 400, 1))
        assert full.value.filename == str(path), full.value
        assert path.read_bytes().endswith(b"\n")
        filler.unlink()
        answered.append(kept.record_search("key", "shop", "after", 1))
        again = Analytics(path)
        assert again.skipped == 0 and set(again.queries) == set(answered)


def test_a_full_disk_is_named_by_the_bundled_services(tmp_path: Path) -> None:
    """fake_cell answered `500 internal error (OSError)` on a full disk, and the reason
    was only in a traceback in a log the full disk kept from being written (q/3)."""
    import requests
    from service_process import ServiceStarter

    with tmpfs(tmp_path / "disk", "256k") as disk, ServiceStarter(tmp_path) as start:
        cell = start.start("fake_cell", args=["--state-dir", str(disk / "cell")])
        made = requests.post(f"{cell.base_url}/accounts", json={"name": "a"}, timeout=10)
        key = {"x-api-key": made.json()["apiKey"]}
        assert requests.post(f"{cell.base_url}/indexes/shop", headers=key, json={},
                             timeout=10).status_code < 300
        filler = _fill(disk)
        doc = {"documents": [{"_id": "d1", "title": "x" * 20000}]}
        full = requests.post(f"{cell.base_url}/indexes/shop/documents", headers=key,
                             json=doc, timeout=10)
        assert full.status_code == 507, full.text
        said = full.json()["error"]
        assert said.startswith(f"cannot write {disk}/cell/") and "journal" in said, said
        assert "No space left on device: free space on that disk" in said, said
        filler.unlink()
        again = requests.post(f"{cell.base_url}/indexes/shop/documents", headers=key,
                              json=doc, timeout=10)
        assert again.status_code < 300, again.text


def test_a_change_journaled_on_a_full_disk_is_answered_as_done(tmp_path: Path) -> None:
    """The journal line fitted, the change was applied, then the compaction's snapshot
    did not fit: the OSError became the answer, a 500 for a change that happened, and
    every later write did the same (q/9). The compaction waits for the next change."""
    from hippo_platform.services.fake_cell.journal import Journal
    from hippo_platform.services.fake_cell.store import Cell

    with tmpfs(tmp_path / "disk", "512k") as disk:
        folder = disk / "cell"
        folder.mkdir()
        journal = Journal(folder, fsync=False, compact_at=1 << 30)
        journal.load()
        cell = Cell(journal)
        key = cell.create_account("a").api_key
        cell.create_index(key, "ix", {})
        cell.put_documents(key, "ix", [{"_id": f"d{n}", "text": "x" * 2000} for n in range(40)])
        filler = _fill(disk)
        os.truncate(filler, os.path.getsize(filler) - 16384)  # room for a line, not a snapshot
        journal.compact_at = 1
        cell.put_documents(key, "ix", [{"_id": "late", "text": "y"}])  # raised OSError
        filler.unlink()
        cell.put_documents(key, "ix", [{"_id": "later", "text": "z"}])
        journal.close()
        again = Journal(folder, fsync=False)
        snapshot, ops = again.load()
        restored = Cell(again)
        restored.restore(snapshot, ops)
        docs = restored.indexes[(next(iter(restored.accounts)), "ix")].docs
        assert {"late", "later", "d0"} <= set(docs)


def test_a_seed_lock_that_cannot_be_written_is_a_sentence(tmp_path: Path) -> None:
    """`hd seed` in a read-only project (or with an immutable seed.lock): a traceback
    from opening the lock, exit 1, before the seed could say which file it cannot
    write (q/7). An existing lock is taken read-only; one that cannot be made is the
    seed's exit 10 sentence."""
    from hippo_contract.e2e_env import SeedLockError, seeding
    from hippo_platform.seed.endpoints import StackView
    from hippo_platform.seed.run import SeedError, seed_stack

    with tmpfs(tmp_path / "ro", "1m") as root:
        (root / ".hippodrome").mkdir()
        (root / ".hippodrome" / "seed.lock").touch()
        subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        with seeding(root):  # an existing lock, read-only: taken
            pass
    with tmpfs(tmp_path / "ro2", "1m", readonly=True) as root:
        with pytest.raises(SeedLockError) as no_lock, seeding(root):
            pass
        assert no_lock.value.filename == str(root / ".hippodrome"), no_lock.value
        with pytest.raises(SeedError) as said:
            seed_stack(root, 42, StackView(env={}))
        assert said.value.code == 10 and "Read-only file system" in str(said.value), said.value
        assert str(said.value).startswith(f"cannot write {root}/.hippodrome"), said.value


def test_a_foreground_ups_output_file_that_fills_is_said_on_stderr(project: Path) -> None:
    """`hd up > out.log` on a disk that filled during the run: the output stopped
    mid-line and nothing was said, while the stack ran on unseen (q/12). It is said on
    stderr once, and the stack goes on (its lines are in the log files)."""
    (dash,) = free_ports(1)
    chatty = Path(__file__).parent / "toys" / "chatty.py"
    write_stack(project, stack_header(dash) + '[services.talk]\ncommand = '
                + json.dumps([sys.executable, str(chatty), "--rate", "2000"]) + "\n")
    said = project.parent / "err.txt"
    with tmpfs(project.parent / "out", "64k") as out_dir:
        with open(out_dir / "out.log", "wb") as out, open(said, "wb") as err_file:
            up = subprocess.Popen([*HD_CLI, "up"], cwd=project, stdout=out,
                                  stderr=err_file, start_new_session=True)
        try:
            wait_for(lambda: b"could not be written" in said.read_bytes(), 30,
                     what="the sentence on stderr")
            time.sleep(1.0)
            assert up.poll() is None, "the stack went on"
            assert hd(project, "status").returncode == 0
            up.send_signal(signal.SIGTERM)
            up.wait(60)
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
    err = said.read_text()
    assert err.count("the output could not be written (No space left on device): the "
                     "stack goes on") == 1, err


def test_a_failure_names_the_lines_its_full_log_disk_did_not_take(project: Path) -> None:
    """`.logs` full, a blocking service failing: up named `(full log: PATH)`, an empty
    file, and nothing anywhere said why (adv26 g/6)."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.bad]\nshell = "echo config error: '
                                              'missing DB_URL; exit 3"\n')
    with tmpfs(project / ".logs", "16k") as logs, cleaned_up(project):
        _fill(logs)
        up = hd(project, "up", "--detach", timeout=60)
        said = up.stdout + up.stderr
        assert up.returncode == 1 and "config error: missing DB_URL" in said, said
        full = next(ln for ln in said.splitlines() if ln.startswith("(full log: "))
        assert re.search(r"bad\.log; \d+ lines? not written there: No space left on device, "
                         r"since \d\d:\d\d:\d\d\)$", full), said


def test_a_line_the_disk_cut_short_is_taken_out_again(project: Path) -> None:
    """The line being written when the disk filled stayed half there, read as a whole
    (wrong) line, and was not counted among those dropped (adv26 g/7)."""
    (dash,) = free_ports(1)
    loud = ("import time\ni = 0\nwhile True:\n"
            "    print('L%06d:' % i + 'x' * (97 + i % 50) + ':END', flush=True)\n"
            "    i += 1\n    time.sleep(0.0005)\n")
    with tmpfs(project, "1m"), cleaned_up(project):
        write_stack(project, stack_header(dash)
                    + f"[services.loud]\ncommand = [{sys.executable!r}, '-c', {loud!r}]\n")
        hd(project, "up", "--detach", check=True)
        wait_for(lambda: status(project)["problems"].get("logs"), 30, what="a full disk")
        time.sleep(1.0)  # more lines meet the full disk
        subprocess.run(["mount", "-o", "remount,size=3m", str(project)], check=True)
        wait_for(lambda: "lines were not written here" in (
            project / ".logs" / "latest" / "loud.log").read_text("utf-8", "replace"), 30,
            what="the recovery note")
        hd(project, "down", check=True)
        lines = (project / ".logs" / "latest" / "loud.log").read_bytes().split(b"\n")
    bad = [ln for ln in lines if ln and not ln.startswith(b"--- hippodrome: ")
           and not re.fullmatch(rb"L\d{6}:x+:END", ln)]
    assert bad == [], bad[:3]


def test_a_failure_counts_every_line_its_log_lost_a_note_between_them_or_not(
        tmp_path: Path) -> None:
    """On a nearly full disk a small recovery note got in between failing writes, the
    count started again, and a failing service's log was named with no word of the
    lines it lacked (adv27 i/4, i/9)."""
    from hippo_tasks.supervision.logs import LogChunk
    from hippo_tasks.supervision.run_files import RunFiles

    def chunk(text: bytes) -> tuple[bytes, LogChunk]:
        lines = [ln for ln in text.split(b"\n")[:-1]]
        return text, LogChunk("svc", 1, time.time(), lines)

    with tmpfs(tmp_path / "disk", "64k") as disk:
        runs = RunFiles(disk / ".logs", 5)
        try:
            runs.write_chunk(*chunk(b"first\n"))
            filler = _fill(disk)
            big = b"x" * 8000 + b"\n"
            for _ in range(3):
                runs.write_chunk(*chunk(big))
            with open(filler, "r+b") as fh:  # room for a note and a short line
                fh.truncate(max(0, filler.stat().st_size - 8192))
            runs.write_chunk(*chunk(b"short\n"))
            (disk / "more").mkdir()
            _fill(disk / "more")
            for _ in range(2):
                runs.write_chunk(*chunk(big))
            said = runs.unwritten("svc")
            assert said is not None and said.startswith("5 lines not written there: No "
                                                        "space left on device"), said
        finally:
            runs.close()


def test_a_line_cut_by_a_full_disk_leaves_no_empty_line(project: Path) -> None:
    """A 1 MiB line on a 1 MB `.logs`: its end dropped, the recovery note written as
    the next line came, and that line's first byte (the break ending the cut line,
    which the note had already ended) made an empty line after the note (adv53 F5)."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.big]\ncommand = ["' + sys.executable
                + '", "-c", "import os, time; os.write(1, b\'L\' * 1048576); time.sleep(0.3);'
                ' os.write(1, b\'\\\\nend\\\\n\'); time.sleep(600)"]\nreadiness = "none"\n')
    with tmpfs(project / ".logs", "1m"), cleaned_up(project):
        hd(project, "up", "--detach", check=True)
        log = project / ".logs" / "latest" / "big.log"
        wait_for(lambda: b"\nend\n" in log.read_bytes(), 15, what="the line after the cut")
        lines = log.read_bytes().split(b"\n")
        note = next(i for i, line in enumerate(lines) if b"were not written here" in line)
        assert lines[note + 1] == b"end", lines[note - 1:note + 3]
        assert lines[note - 1].startswith(b"LLLL")  # what fitted of the cut line
        hd(project, "down", check=True)


def test_export_on_a_full_disk_leaves_no_folder_it_made(tmp_path: Path) -> None:
    """`hd export k8s -o k8s` on a full disk said "nothing was written" and left an
    empty `k8s/` it had made (adv56 7): it takes away the folders it made."""
    with tmpfs(tmp_path / "disk", "64k") as disk:
        _fill(disk)
        out = hd(disk, "export", "k8s", "-o", "made/k8s")
        assert out.returncode == 2 and "nothing was written" in out.stderr, \
            out.stdout + out.stderr
        assert not (disk / "made").exists(), list(disk.iterdir())


def test_pruning_never_enters_another_file_system_nor_recurses(project: Path) -> None:
    """A mount left in an old run (a service's tmpfs under `${logs_dir}`, a bind mount):
    pruning emptied the file system mounted there, without a word (adv58 F2), and then
    a bind mount of a folder on the same disk, whose device number is the run's (adv60
    1). A run whose folders nest 1,200 deep stopped 3.11's recursive os.walk. One that
    cannot be removed (immutable) was left in silence (adv60 2). The mounted and the
    immutable runs are left and named; the deep one goes; a link's target stays."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash, log_runs_kept=1) + toy_service("web", port))
    logs = project / ".logs"
    mounted_run, bound_run, deep_run, fixed_run = (
        logs / f"20000101-00000{n}" for n in range(4))
    outside = project / "outside.txt"
    outside.write_text("kept")
    precious = project / "precious"
    precious.mkdir()
    (precious / "precious.txt").write_text("same disk")
    (bound_run / "bind").mkdir(parents=True)
    deep_run.mkdir(parents=True)
    fd = os.open(deep_run, os.O_RDONLY)
    for _ in range(1200):  # (pathlib's mkdir(parents=True) recurses too)
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(os.open("trace.log", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    (deep_run / "link").symlink_to(outside)
    (fixed_run / "kept").mkdir(parents=True)
    immutable = subprocess.run(["chattr", "+i", str(fixed_run / "kept")],
                               check=False).returncode == 0
    subprocess.run(["mount", "--bind", str(precious), str(bound_run / "bind")], check=True)
    try:
        with tmpfs(mounted_run / "traces" / "mnt", "1m") as mnt:
            (mnt / "keep.bin").write_text("on another file system")
            try:
                hd(project, "up", "--detach", check=True, timeout=60)
                assert (mnt / "keep.bin").read_text() == "on another file system"
                assert (precious / "precious.txt").read_text() == "same disk"
                assert not deep_run.exists() and outside.read_text() == "kept"
                said = (project / ".hippodrome" / "daemon.log").read_text()
                for run, at in ((mounted_run, mnt), (bound_run, bound_run / "bind")):
                    assert f"left {run} as it is, not pruned: a file system is mounted " \
                        f"at {at} (unmount it, then remove the folder)" in said, said
                if immutable:
                    assert f"left {fixed_run}, not pruned: cannot remove " in said, said
            finally:
                hd(project, "down", timeout=60)
    finally:
        subprocess.run(["umount", str(bound_run / "bind")], check=False)
        subprocess.run(["chattr", "-i", str(fixed_run / "kept")], check=False)
        # (pytest's own clean-up of old temporary folders recurses: never left deep)
        subprocess.run(["rm", "-rf", str(deep_run)], check=False)


@pytest.mark.parametrize("case", ["logs read-only", "state full"])
def test_doctor_fails_where_up_cannot_write(project: Path, case: str) -> None:
    """`.logs` on a read-only mount, or `.hippodrome` on a full disk: `hd up` exits 10,
    and doctor said every check `[OK]`, exit 0 (adv58 F4)."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.api]\ncommand = ["sleep", "60"]\n')
    folder = project / (".logs" if case == "logs read-only" else ".hippodrome")
    with tmpfs(folder, "64k", readonly=case == "logs read-only"):
        if case == "state full":
            with open(folder / "filler", "wb") as fh, contextlib.suppress(OSError):
                fh.write(b"\0" * (128 * 1024))
        try:
            doctor = hd(project, "doctor", timeout=120)
        finally:
            with contextlib.suppress(OSError):
                (folder / "filler").unlink()
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    said = " ".join(doctor.stdout.split())
    if case == "logs read-only":
        assert f"[FAIL] {folder} cannot be written by this user: `hd up` keeps its log " \
            f"files in {folder}" in said, said
    else:
        assert f"[FAIL] {folder} is on a disk with 0 KiB free: `hd up` keeps the stack's " \
            "state in" in said and "cannot start there; free space" in said, said
