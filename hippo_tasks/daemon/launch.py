"""Before the daemon exists: pre-flight checks, and starting the detached daemon.

Kept free of asyncio, the HTTP server and the engine, so `hd up --detach` and the
other tasks start fast. The detached daemon is a fork of `hd up` (daemon/forked.py),
or a fresh interpreter where a fork would carry invoke: every megabyte of the daemon's
resident memory is there for as long as the stack runs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hippo_tasks.daemon.forked import ForkedDaemon, fork_daemon, fork_wanted
from hippo_tasks.daemon.seed import hand_over
from hippo_tasks.errors import HippoError, ProcessLimitError, UsageError
from hippo_tasks.errors.daemon import DaemonAlreadyRunningError
from hippo_tasks.errors.ports import PortsBusyError
from hippo_tasks.errors.state_dir import StateDirError
from hippo_tasks.model.plan import Options, StackPlan, build_plan
from hippo_tasks.model.project import changed_since
from hippo_tasks.model.textfile import open_regular_for_append
from hippo_tasks.registry.cleanup import clean_stale
from hippo_tasks.registry.store import (
    Registry,
    daemon_alive,
    stranded_daemons,
    stranger_daemon,
    writes_daemon_log,
)
from hippo_tasks.supervision.child_env import child_env, for_program
from hippo_tasks.supervision.ownership import RUN_TOKEN_ENV
from hippo_tasks.supervision.ports import check_ports


def _refuse_if_running(opts: Options, registry: Registry, data: dict[str, Any],
                       scan: bool = True) -> None:
    """`scan=False`: the daemon's own pre-flight, under the lock of the `up` that has
    just scanned /proc for a stranded stack: not again on the way to the first spawn."""
    if daemon_alive(data) and not stranger_daemon(data, registry.root):
        d = data["daemon"]
        running = DaemonAlreadyRunningError(str(opts.project_root), d.get("url", "?"),
                                            d["pid"], changed_since(opts.project_root,
                                                                    d.get("stack_file")))
        if isinstance(d.get("shutting_down"), str):
            running.shutting_down = d["shutting_down"]
        raise running
    # One started here before the folder was deleted and made again: found by the
    # dashboard port alone, so `up --port-offset` started a second stack beside it, and
    # `hd down` then stopped only that one (adv32 u/1). About 1 ms: one scan of /proc.
    stranded = stranded_daemons(registry.root) if scan else []
    if stranded:
        running = DaemonAlreadyRunningError(str(opts.project_root), "", stranded[0])
        running.stranded = True
        raise running


def prepare(opts: Options, say: Callable[[str], None] = print,
            registry: Registry | None = None, again: bool = False,
            plan: StackPlan | None = None,
            check: Callable[[StackPlan], object] | None = None) -> tuple[StackPlan, Registry]:
    """Load, plan and pre-flight; raises a HippoError before anything has started.

    Pass the Registry the caller already read, so warnings it collected (a corrupt file
    moved aside) are said here, once. `again`: the detached daemon's, after `up`'s,
    with the `plan` `up` made: read again, a stack file an editor saved in between ran
    a stack `up` had not checked or announced, or failed in the daemon, where `up` said
    its TOML error with exit 2, not 3 (adv36 f/1). `check`: the caller's own checks of
    its arguments against the plan (`--show`), made before the running daemon is looked
    for: a bad argument is exit 2 whether or not a stack runs (adv36 c/4)."""
    registry = registry or Registry(opts.project_root)
    try:
        if plan is None:  # the daemon is handed `up`'s: it never loads the parser
            from hippo_tasks.model.loader import load_stack

            spec = load_stack(opts.project_root)
            plan = build_plan(spec, opts)  # env_files and ${...}: load errors too (d/5)
        if check is not None:
            check(plan)
    except UsageError:  # the command's arguments (--only, --profile, --cell, --show)
        raise
    except HippoError as refused:
        # A file edited into one `up` refuses, under a running stack: "already running",
        # exit 7, with the load error in its note; the load error alone (exit 3) did not
        # say the stack still ran (adv24 a/2).
        try:
            data = registry.read()
        except HippoError:
            raise refused from None
        _refuse_if_running(opts, registry, data)
        raise
    data = registry.read()
    for warning in registry.warnings:
        say(warning)
    _refuse_if_running(opts, registry, data, scan=not again)
    _check_latest(opts.project_root)
    for line in clean_stale(registry, data):
        say(line)
    data = registry.read()
    groups = {int(e["pgid"]) for e in data.get("services", {}).values() if e.get("pgid")}
    wanted = [("dashboard", plan.dashboard_port)] + [
        (s.name, s.port) for s in plan.services if s.port is not None and not s.spec.external
    ]
    try:
        check_ports(wanted, groups)
    except PortsBusyError as exc:
        # Its own daemon, running with its registry gone (`git clean -xdf` a moment
        # ago): it was "another process" to stop, or to move away from.
        for busy in exc.busy:
            pid = busy.holder_pid
            if busy.service == "dashboard" and pid is not None and \
                    writes_daemon_log(pid, opts.project_root):
                running = DaemonAlreadyRunningError(str(opts.project_root),
                                                    plan.dashboard_url, pid, "")
                running.stranded = not _runs_in(pid, opts.project_root)
                raise running from None
        raise
    return plan, registry


def _check_latest(root: Path) -> None:
    """A folder at `.logs/latest`, where the daemon puts its link to the run's logs,
    was met only by the daemon, once it had been forked and registered: `up` said
    "Nothing was started or stopped", and the next command named a stale daemon the
    user had never seen (adv36 f/5). A file there is replaced by the link."""
    latest = root / ".logs" / "latest"
    try:
        folder = stat.S_ISDIR(latest.lstat().st_mode)
    except OSError:  # none there (or .logs unreadable: the daemon's own error says so)
        return
    if folder:
        raise StateDirError(str(latest), os.strerror(errno.EISDIR))


def options_to_json(opts: Options) -> str:
    data: dict[str, Any] = opts._asdict()
    data["project_root"] = str(opts.project_root)
    data["env"] = {}
    return json.dumps(data)


def options_from_json(text: str) -> Options:
    data = json.loads(text)
    data["project_root"] = Path(data["project_root"])
    data["only"] = tuple(data.get("only") or ())
    data["skip"] = tuple(data.get("skip") or ())
    data["env"] = dict(os.environ)
    return Options(**data)


def _check_log(log: Path) -> None:
    """A log that cannot be written is said before anything starts, on both paths:
    opened without blocking (a named pipe with no reader would hold `up` for ever) and
    only a regular file will do."""
    try:
        os.close(open_regular_for_append(log, "not a regular file (a pipe or a device)"))
    except OSError as exc:
        why = "a named pipe, not a file" if exc.errno == errno.ENXIO else \
            exc.strerror or str(exc)
        raise StateDirError(str(log), why) from None


def spawn_daemon(plan: StackPlan, log: Path, tls: bool = False,
                 lock_fd: int | None = None) -> subprocess.Popen[bytes] | ForkedDaemon:
    """The detached daemon, in a session of its own, so Ctrl+C in the shell that ran
    `up --detach` never reaches it: a fork of this process where that is safe
    (daemon/forked.py says when and why), else `python -m hippo_tasks.daemon`. It
    inherits the project's lifecycle lock and lets go of it once it serves, and runs
    `plan`, the stack as `up` read it (in memory, or through a pipe)."""
    opts = plan.options
    _check_log(log)
    argv = ["--options", options_to_json(opts)]
    if tls:
        argv.append("--tls")
    if lock_fd is not None:
        argv += ["--lock-fd", str(lock_fd)]
    env = child_env()  # which leaves out the run token: the daemon alone takes it
    if RUN_TOKEN_ENV in os.environ:
        env[RUN_TOKEN_ENV] = os.environ[RUN_TOKEN_ENV]
    handed = hand_over(argv, opts.project_root, env, log, lock_fd, tls, plan)
    if handed is not None:
        return handed
    if fork_wanted():
        try:
            return fork_daemon(argv, opts.project_root, env, log, lock_fd, tls, plan)
        except BlockingIOError:  # EAGAIN: the process limit; Popen below would meet it too
            raise ProcessLimitError("the daemon") from None
    import pickle  # only here: imported before the fork, the daemon kept it for its life

    read_end, write_end = os.pipe()
    passed = (read_end,) if lock_fd is None else (lock_fd, read_end)
    try:
        with os.fdopen(open_regular_for_append(log, "not a regular file"), "ab") as out:
            command = [sys.executable, "-m", "hippo_tasks.daemon", *argv,
                       "--plan-fd", str(read_end)]
            proc = subprocess.Popen(command, cwd=opts.project_root,
                                    env=for_program(env, command),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, close_fds=True, pass_fds=passed)
    except BlockingIOError:
        os.close(write_end)
        raise ProcessLimitError("the daemon") from None
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    with contextlib.suppress(BrokenPipeError), os.fdopen(write_end, "wb") as pipe:
        # (gone before it read it: its exit and its reason are what `up` reports)
        pickle.dump(plan, pipe, protocol=pickle.HIGHEST_PROTOCOL)
    return proc


def receive_plan(fd: int) -> StackPlan:
    """The plan `spawn_daemon` wrote into the pipe this daemon inherited: from our own
    parent, through a pipe nothing else holds, so unpickling it trusts no one new."""
    import pickle

    with os.fdopen(fd, "rb") as pipe:
        plan = pickle.load(pipe)
    if not isinstance(plan, StackPlan):
        raise SystemExit(f"hippo_tasks.daemon: --plan-fd carried {type(plan).__name__}, "
                         "not a stack plan (hd up starts the daemon; run that instead)")
    return plan


def _runs_in(pid: int, root: Path) -> bool:
    """The process's working folder is `root` itself, not a folder deleted or replaced
    at its path (a stranded daemon's, q/5): unknown (no /proc) counts as in."""
    try:
        return os.path.samefile(f"/proc/{pid}/cwd", root)
    except FileNotFoundError:  # its folder deleted: "/path (deleted)" leads nowhere
        return not os.path.exists(f"/proc/{pid}")
    except OSError:
        return True
