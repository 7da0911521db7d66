"""`up --detach` after the spawn: wait for the stack's start to be over, say how it went.

The wait ends four ways: the daemon records that the start is over (every service
ready, failed without blocking, or stopped by a `hd stop` meanwhile); it records a
failure (a blocking service, a port, an unwritable folder); it exits first (`hd down`
from another terminal, a signal, a crash); or this command is interrupted. Ctrl+C,
SIGTERM and SIGHUP here mean "never mind": the stack this command was starting is shut
down before it exits 130 / 143 / 129, as the foreground `up` does. Otherwise Ctrl+C
would leave a half-started stack running behind a prompt that says it was interrupted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hippo_tasks.daemon.shutdown_signals import KEYBOARD, SHUTDOWN_SIGNALS, taken_by_up
from hippo_tasks.errors import (
    HippoError,
    ProcessLimitError,
    ServiceStartError,
    StartCutShortError,
    UsageError,
)
from hippo_tasks.errors.ports import PortsBusyAtStartError
from hippo_tasks.errors.state_dir import EXIT_STATE_DIR, RegistryLockedError, StateDirError
from hippo_tasks.model.textfile import open_regular, open_regular_for_reading
from hippo_tasks.registry.store import Registry
from hippo_tasks.tasks.output import TaskExit, table_state

if TYPE_CHECKING:
    from hippo_tasks.daemon.forked import ForkedDaemon
    from hippo_tasks.model.plan import StackPlan
    from hippo_tasks.registry.lifecycle_lock import LifecycleLock

    Daemon = ForkedDaemon | subprocess.Popen[bytes]

SHUTDOWN_WAIT_S = 120.0
"""How long an interrupted `up --detach` waits for the stack it started to stop."""


class Interrupted(Exception):
    """SIGTERM, SIGHUP (or another of SHUTDOWN_SIGNALS) while waiting (Ctrl+C is
    KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(_name(signum))
        self.signum = signum


def _name(signum: int) -> str:
    return next((name for name, number in SHUTDOWN_SIGNALS.items() if number == signum),
                f"signal {signum}")


def up_detached(plan: StackPlan, registry: Registry, lock: LifecycleLock,
                tls: bool = False) -> int:
    """Start the daemon and wait until the stack's start is over; the daemon's pid."""
    from hippo_tasks.daemon.launch import spawn_daemon

    log = plan.options.project_root / ".hippodrome" / "daemon.log"
    log.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    registry.update(lambda d: d.__setitem__("failure", None))
    log_from = _size(log)
    proc = spawn_daemon(plan, log, tls=tls, lock_fd=lock.fd)
    previous: dict[int, Any] = {}
    held: int | None = None
    try:  # from the spawn on: a Ctrl+C before the wait left the stack starting (adv58 F3)
        lock.release()  # the daemon holds its inherited copy until it serves

        # Every signal that shuts the daemon down does the same here: Ctrl+\ (SIGQUIT)
        # or a SIGUSR2 ended this wait by its default action, in silence, and the
        # stack went on starting (r/6).
        handled = taken_by_up()

        def interrupted(signum: int, _frame: object) -> None:
            # One SIGTERM/SIGHUP is the request; more of them are its echoes (`timeout`
            # signals the child, then its group), not a second Ctrl+C: ignored from
            # here. A terminal key (Ctrl+\) stays one: pressed again, it kills at once.
            for sig in handled:
                if _name(sig) not in KEYBOARD:
                    signal.signal(sig, signal.SIG_IGN)
            raise Interrupted(signum)

        for sig in handled:
            previous[sig] = signal.signal(sig, interrupted)
        # SIGUSR1 / Ctrl+T ask a foreground `up` for its dashboard line; here, still
        # waiting, there is none yet, and its default action ended the wait (exit 138)
        # mid-start.
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        # Read through a descriptor held from here on: the project renamed while it
        # starts (`mv proj proj2`), `up` named a daemon.log that no longer existed and
        # no reason (adv31 r/5); /proc/self/fd/N is the same file wherever it is now.
        with contextlib.suppress(OSError):  # unreadable: read by its name, as before
            held = open_regular(log, os.O_RDONLY, "not a regular file")
        follow = Path(f"/proc/self/fd/{held}") if held is not None and \
            os.path.exists(f"/proc/self/fd/{held}") else log
        return _wait(proc, registry, follow, log_from, plan.dashboard_url)
    except KeyboardInterrupt:
        _shut_down(proc, "Ctrl+C")
        raise TaskExit(130) from None
    except Interrupted as exc:
        _shut_down(proc, str(exc))
        raise TaskExit(128 + exc.signum) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held is not None:
            os.close(held)
        if proc.poll() is not None:  # ended before it served: its cgroup, if it left one
            _remove_run_cgroup()


def _remove_run_cgroup() -> None:
    """The daemon makes the run's cgroup first thing (a seed as soon as it is primed),
    and removes it as it exits, or its guard does after a crash: a daemon ended before
    its guard was started (Ctrl+C or SIGTERM to `up`, a kill of the daemon) left it,
    empty, until the next `hd down`. Only empty cgroups go (rmdir)."""
    from hippo_tasks.supervision.ownership import RUN_TOKEN_ENV, remove_base

    token = os.environ.get(RUN_TOKEN_ENV)
    if token:
        remove_base(token)


def _wait(proc: Daemon, registry: Registry, log: Path, log_from: int, url: str) -> int:
    pid = proc.pid
    began = time.monotonic()
    shown: dict[str, str] = {}
    seen: tuple[int, int, int] | None = None
    read_at = changed_at = asked_at = looked_at = time.monotonic()
    stopped_since: float | None = None
    while True:
        time.sleep(0.01)
        exited = proc.poll() is not None
        if not exited and time.monotonic() - looked_at >= STOPPED_EVERY_S:
            looked_at = time.monotonic()
            stopped_since = _still_stopped(pid, stopped_since, url)
        if not exited and time.monotonic() - max(changed_at, asked_at) > STALE_S:
            asked_at = time.monotonic()
            if _ready_by_api(url, pid, began):
                return pid
        # Read (decode, validate) only a registry the daemon has rewritten since: this
        # loop runs while the services start, on the same cores. Every 0.2 s anyway: a
        # rewrite can keep inode, size and (coarse) mtime.
        now = registry.file_key()
        if now == seen and not exited and time.monotonic() - read_at < 0.2:
            continue
        if now != seen:
            changed_at = time.monotonic()
        seen, read_at = now, time.monotonic()
        data = registry.read()
        failure = data.get("failure")
        if exited and not failure:  # it may have written its reason after our read
            failure = registry.read().get("failure")
        if exited or (failure and failure.get("final")):
            if not exited:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
            _report_failure(failure, proc.returncode, log, log_from)
        daemon = data.get("daemon") or {}
        if daemon.get("pid") != pid:
            continue
        services: dict[str, dict[str, Any]] = data.get("services", {})
        for name, entry in services.items():
            # A job run to exit 0 is `completed`, as `hd status` says: `schema: stopped`
            # read as a job stopped mid-run (adv57 F5).
            state = table_state(entry)
            if shown.get(name) != state and state != "pending":
                shown[name] = state
                print(f"hippodrome | {name}: {state}", flush=True)
        if failure:
            continue
        # `started` once the start is over; but a whole-stack restart from elsewhere
        # while this waited put services back into motion: ready only once they settle
        # (it said "stack ready" with 0/2 ready, and `up --detach && tests` ran on air).
        moving = any(e["state"] in MOVING for e in services.values())
        if (daemon.get("started") and not moving) or \
                (services and all(map(_settled_ok, services.values()))):
            elapsed = time.monotonic() - began
            status = _answers(daemon["url"], proc, registry, log, log_from)
            print(f"hippodrome | stack ready in {elapsed:.2f}s{_not_ready(services)}; "
                  f"daemon pid {pid}; dashboard {daemon['url']}; `hd status`, `hd down`",
                  flush=True)
            _print_critical_path(status)
            return pid


STOPPED_EVERY_S = 1.0
"""How often the wait looks whether the daemon is stopped (the first look a second in,
after most stacks are ready: nothing of it runs beside their start)."""
STOPPED_GIVE_UP_S = 10.0
"""How long the daemon may be stopped (SIGSTOP, a debugger) before `up` stops waiting
for it, as `down` and every other command do; it waited in silence for ever."""


def _still_stopped(pid: int, since: float | None, url: str) -> float | None:
    """When the daemon was first seen stopped (None while it runs); past
    STOPPED_GIVE_UP_S, DaemonUnreachableError (exit 6) saying what to do."""
    from hippo_tasks.errors.daemon import DaemonUnreachableError
    from hippo_tasks.supervision.scope import is_stopped

    if not is_stopped(pid):
        return None
    since = since or time.monotonic()
    if time.monotonic() - since >= STOPPED_GIVE_UP_S:
        raise DaemonUnreachableError(
            url, pid, f"stopped (SIGSTOP, Ctrl+Z or a debugger) for {STOPPED_GIVE_UP_S:g}s "
            f"while the stack started; `kill -CONT {pid}` lets it go on (then `hd status`), "
            "`hd down` ends it")
    return since


MOVING = ("pending", "starting", "stopping")
"""States on the way somewhere: the start is not over while a service is in one."""
STALE_S = 2.0
"""A registry unchanged this long while the stack starts: ask the daemon whether it
cannot write it."""


def _ready_by_api(url: str, pid: int, began: float) -> bool:
    """Whether the daemon says it cannot write the registry (a disk that filled up after
    its first write) and the start is over: `up --detach` waited for the registry for
    ever while `hd status` (which asks the daemon) showed every service running."""
    from hippo_tasks.daemon.client import DaemonClient
    try:
        status = DaemonClient(url, pid).status()
    except HippoError:
        return False
    trouble = (status.get("problems") or {}).get("registry")
    rows = {r["name"]: r for r in status.get("services") or []}
    if not trouble or not rows or not all(map(_settled_ok, rows.values())):
        return False
    print(f"hippodrome | stack ready in {time.monotonic() - began:.2f}s{_not_ready(rows)}; "
          f"daemon pid {pid}; dashboard {url}; `hd status`, `hd down`", flush=True)
    error = str(trouble.get("error"))
    # Out of descriptors is no full disk: "free space" sent one to a disk with room
    # for a limit it could not change (adv25 d/7).
    remedy = ("Raise the open-files limit (`ulimit -n 4096`), then `hd down` and `hd up`"
              if error in (os.strerror(errno.EMFILE), os.strerror(errno.ENFILE)) else
              "Free space so the registry catches up")
    print(f"hippodrome | warning: cannot write {trouble.get('path')} ({error}): the daemon "
          "retries every second; `hd status` and `hd down` ask the daemon meanwhile. "
          f"{remedy}", flush=True)
    return True


def _shut_down(proc: Daemon, why: str) -> None:
    """The daemon this command forked, asked to stop its stack (SIGTERM: it is ours,
    just spawned, and may not be serving yet); a second Ctrl+C kills it at once and
    leaves its services to its orphan guard."""
    try:  # a second Ctrl+C may land anywhere in here, the print included
        print(f"\nhippodrome | {why}: shutting down the stack this `up` was starting "
              "(Ctrl+C again to kill it at once)", flush=True)
        if proc.poll() is None:  # not reaped, so the pid is still our child's
            os.kill(proc.pid, signal.SIGTERM)
            # A daemon stopped (SIGSTOP) would never see it, and this waited the whole
            # SHUTDOWN_WAIT_S: the request to shut down is the request to go on.
            os.kill(proc.pid, signal.SIGCONT)
        proc.wait(SHUTDOWN_WAIT_S)
    except (KeyboardInterrupt, Interrupted):
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        print("hippodrome | killed the daemon; its guard ends the services", flush=True)
        return
    except subprocess.TimeoutExpired:
        print(f"hippodrome | the daemon (pid {proc.pid}) is still stopping after "
              f"{SHUTDOWN_WAIT_S:g}s; `hd down --force` ends it", flush=True)
        return
    print("hippodrome | the stack was shut down", flush=True)


def _answers(url: str, proc: Daemon, registry: Registry, log: Path,
             log_from: int) -> dict[str, Any] | None:
    """The daemon's status, asked before "stack ready" is said: a daemon whose API could
    not start (no thread to spare) ends its stack, and `up --detach` had already said
    ready with a dashboard URL that never answered. If it does not answer and ends, its
    reason is the failure; if it does not answer and runs on, None."""
    from hippo_tasks.daemon.client import DaemonClient  # urllib: not before the spawn
    try:
        return DaemonClient(url, proc.pid).status()
    except HippoError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is not None:
            _report_failure(registry.read().get("failure"), proc.returncode, log, log_from)
        return None


def _print_critical_path(status: dict[str, Any] | None) -> None:
    """Where the start-up time went; an answer the daemon could not give costs nothing."""
    from hippo_tasks.supervision.timeline import describe

    line = describe((status or {}).get("services") or [])
    if line:
        print(f"hippodrome | {line}", flush=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _settled_ok(entry: dict[str, Any]) -> bool:
    """Ready, or failed and not blocking: when every service is, the start is over
    without waiting for the daemon's `started` (written a loop turn later), which only
    a stack with no services or one stopped meanwhile needs."""
    return bool(entry.get("ready")) or (entry["state"] == "failed"
                                        and not entry.get("blocking", True))


def _not_ready(services: dict[str, dict[str, Any]]) -> str:
    """What the ready line must not hide: services the start ended without (stopped by
    `hd stop` meanwhile, or failed and not blocking), or that there were none."""
    if not services:
        return " (no services in this profile)"
    left = [f"{name} {entry['state']}" for name, entry in services.items()
            if not entry.get("ready")]
    if not left:
        return ""
    return f" ({len(services) - len(left)}/{len(services)} ready; not running: " \
        f"{', '.join(left)})"


def _where(log: Path) -> Path:
    """Where the daemon.log read through /proc/self/fd/N is now (its folder renamed)."""
    if str(log).startswith("/proc/self/fd/"):
        with contextlib.suppress(OSError):
            return Path(os.readlink(log))
    return log


def _report_failure(failure: dict[str, Any] | None, code: int | None, log: Path,
                    log_from: int) -> None:
    here = _where(log)
    if failure is None and here != log:  # the registry beside the log, wherever it is now
        with contextlib.suppress(HippoError, OSError):  # (its folder renamed meanwhile)
            failure = Registry(here.parent.parent).read().get("failure")
    log = here
    if failure and failure.get("kind") in ("StateDirError", "RegistryLockedError"):
        kind = RegistryLockedError if failure["kind"] == "RegistryLockedError" else StateDirError
        raise kind(str(failure.get("path")), str(failure.get("problem")))
    if failure and failure.get("service"):
        raise ServiceStartError(failure["service"], failure["reason"],
                                tuple(failure.get("last_lines") or ()), failure.get("log_path"),
                                failure.get("log_note"))
    if failure and failure.get("kind") == "StartCutShort":
        raise StartCutShortError(failure["reason"], (), str(log))
    if failure and failure.get("kind") == "Unreachable":  # its API could not start
        raise StartCutShortError(failure["reason"], _lines_since(log, log_from), str(log))
    if failure and failure.get("kind") in ("PortsBusyError", "PortBusyError"):
        raise PortsBusyAtStartError(str(failure["reason"]))
    if failure and failure.get("kind") == "ProcessLimitError":  # exit 1, not a usage error
        raise ProcessLimitError("the daemon", said=str(failure["reason"]))  # (adv45 R/2)
    if failure:
        raise UsageError(failure["reason"])
    if code == EXIT_STATE_DIR:  # it could write neither its reason nor the registry
        raise StateDirError(str(log.parent), "the daemon could not write its files there "
                            f"(is the disk full, or the folder read-only{_fsize_said()}?)")
    how = f"was killed by signal {-code}" if code is not None and code < 0 else \
        f"exited with code {code}"
    lines = _lines_since(log, log_from)
    # (ended before it had a word to say: the log's lines are an earlier run's; adv50 F/3)
    quiet = "" if lines else " (it wrote nothing to its log in this run)"
    raise StartCutShortError(f"the daemon {how} before the stack was ready{quiet}", lines,
                             str(log))


def _fsize_said() -> str:
    """`, or the shell's file-size limit (ulimit -f: N bytes) too small` where one is set
    (the daemon has the same): a folder that was fine was blamed (adv45 R/9)."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return "" if limit == resource.RLIM_INFINITY else \
        f", or the shell's file-size limit (ulimit -f: {limit} bytes) too small"


def _lines_since(log: Path, offset: int) -> tuple[str, ...]:
    """This run's last lines of daemon.log (which keeps every run's): earlier runs'
    lines would only mislead."""
    try:  # never blocking on a named pipe put there
        with open_regular_for_reading(log) as fh:
            fh.seek(offset)
            text = fh.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return ()
    return tuple(text.splitlines()[-20:])
