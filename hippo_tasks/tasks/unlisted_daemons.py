"""Daemons of this project that the registry does not name, found by what they write
and where they run: after `git clean -xdf`, a registry damaged or replaced by a file, a
`.hippodrome` renamed or moved away, a project folder deleted, a `down` killed while
its daemon finished the shutdown. `hd down` stops them (tasks/lifecycle.py); nothing
is signalled that is not proven this project's daemon."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from hippo_tasks.errors.daemon import UnlistedDaemonError
from hippo_tasks.registry.store import Registry, daemon_alive


def say(line: str) -> None:
    print(f"hippodrome | {line}", flush=True)


def renamed_state_writer(root: Path) -> tuple[int, str] | None:
    """(pid, path) of the daemon of a `.hippodrome` renamed or moved away (`mv
    .hippodrome x`, `mv .hippodrome ../backup`): it runs in this folder, writes a
    `daemon.log` wherever that went, and writes this folder's `.logs/` (its run's log
    files). All three, so no other program is ever taken for it."""
    from hippo_tasks.supervision.scope import all_pids, opened_to_write

    here, logs = str(root), str(root / ".logs") + "/"
    for pid in all_pids():
        with contextlib.suppress(OSError, ValueError, StopIteration):
            if pid == os.getpid() or os.readlink(f"/proc/{pid}/cwd") != here:
                continue
            log, runs = None, False
            for fd in os.listdir(f"/proc/{pid}/fd"):
                path = os.readlink(f"/proc/{pid}/fd/{fd}").removesuffix(" (deleted)")
                if path.endswith("/daemon.log") and opened_to_write(pid, fd):
                    log = path
                elif path.startswith(logs) and opened_to_write(pid, fd):
                    runs = True
            if log is not None and runs:
                return pid, log
    return None


def state_moved_back(root: Path, within: float = 3.0) -> bool:
    """`.hippodrome` renamed under the running stack (`mv .hippodrome x`): its daemon,
    which runs in this folder and writes `x/daemon.log`, makes `.hippodrome` again at
    its next look (2 s). `down` said "nothing to stop" in between, and the stack ran
    on (q/14). Whether one was found, and its state is back."""
    writer = renamed_state_writer(root)
    if writer is None:
        return False
    say(f"pid {writer[0]} runs here and writes {writer[1]}: the stack's state folder was "
         "moved or renamed; waiting for its daemon to write .hippodrome again")
    registry = Registry(root)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if registry.state_dir_exists() and daemon_alive(registry.read()):
            return True
        time.sleep(0.1)
    return registry.state_dir_exists()


def finishing_a_shutdown(registry: Registry, pid: int) -> bool:
    """The recorded daemon still writes this folder's daemon.log but has closed its
    port: only a daemon past its shutdown's last answer does that (it deletes its
    `--enable-events` resources, ends its tunnel, then exits). After a killed `hd down`,
    the next one told the user to kill it and ran a forced clean-up beside its own (x/9)."""
    from hippo_tasks.registry.cleanup import holds_daemon_port
    from hippo_tasks.registry.store import writes_daemon_log

    daemon = registry.read().get("daemon") or {}
    return daemon.get("pid") == pid and writes_daemon_log(pid, registry.root, writing=True) \
        and not holds_daemon_port(pid, daemon)


def kill_unlisted(root: Path, grace: float = 5.0, also: list[int] | None = None) -> bool:
    """`down --force`'s end for daemons the registry does not name: asked to stop (they
    end their services), killed after `grace` (their guard then ends the services).
    Whether there was one."""
    try:
        return stop_unlisted(root, timeout=grace, also=also)
    except UnlistedDaemonError as exc:
        for pid in exc.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        say(f"pid {', '.join(map(str, exc.pids))} did not stop within {grace:g}s of "
             "SIGTERM: killed (its guard ends the services)")
        return True


def stop_unlisted(root: Path, timeout: float = 120.0, also: list[int] | None = None,
                  why: str = "the registry names no daemon, but") -> bool:
    """Daemons of this project the registry does not name (it was damaged, and their
    daemon could not write it again: a read-only `.hippodrome`, a stopped daemon):
    proven ours by the daemon.log they write, asked to stop as `hd up`'s Ctrl+C does
    (SIGTERM: the daemon ends its services), and waited for. A registry truncated under
    a running stack made `down` say "nothing to stop" and leave everything running."""
    from hippo_tasks.registry.store import daemon_log_writers, writes_daemon_log
    from hippo_tasks.supervision.scope import start_ticks

    asked = {}
    for pid in [*daemon_log_writers(root), *(also or ())]:
        born = start_ticks(pid)
        if born is None or pid in asked or (
                pid not in (also or ()) and not writes_daemon_log(pid, root, writing=True)):
            continue
        say(f"{why} pid {pid} writes this project's .hippodrome/daemon.log: stopping it "
            "and its services (SIGTERM)")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)  # a stopped one hears it too
        asked[pid] = born
    deadline = time.monotonic() + timeout
    while any(start_ticks(p) == born for p, born in asked.items()):
        if time.monotonic() >= deadline:
            raise UnlistedDaemonError([p for p, born in asked.items()
                                       if start_ticks(p) == born], timeout)
        time.sleep(0.05)
    return bool(asked)
