"""Running the engine: in the foreground (inside `hd up`) or as the detached daemon
(forked from `hd up`, or `python -m hippo_tasks.daemon --options JSON`: both started by
`launch.spawn_daemon`, both run `main`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hippo_tasks.daemon import listener
from hippo_tasks.daemon.engine import Engine
from hippo_tasks.daemon.launch import options_from_json, prepare, receive_plan
from hippo_tasks.daemon.shutdown_signals import signals_listed_once
from hippo_tasks.errors import HippoError, ProcessLimitError, UsageError
from hippo_tasks.errors.state_dir import EXIT_STATE_DIR, StateDirError
from hippo_tasks.model.plan import StackPlan
from hippo_tasks.model.plan import dashboard_host as plan_dashboard_host
from hippo_tasks.model.textfile import open_regular_for_append
from hippo_tasks.registry.lifecycle_lock import release_inherited
from hippo_tasks.registry.store import Registry
from hippo_tasks.supervision.ownership import Ownership, OwnershipSoon
from hippo_tasks.supervision.ports import check_ports

if TYPE_CHECKING:  # the foreground's; the detached daemon never loads it
    from hippo_tasks.supervision.printer import TerminalPrinter


def dashboard_host() -> str:
    return plan_dashboard_host(os.environ)


FD_SOFT_LIMIT = 65536


def raise_fd_limit() -> None:
    """The engine holds ~3 descriptors per service (its pipe, pidfd, log file) plus the
    API's connections: under the common soft limit of 1024, a 400-service stack left no
    descriptor for the API (`up --detach` waited for ever, `hd status` timed out). The
    soft limit goes up to the hard one (at most 65536, as a container runtime gives),
    which any process may do; the services inherit it."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = FD_SOFT_LIMIT if hard == resource.RLIM_INFINITY else min(hard, FD_SOFT_LIMIT)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def run_engine(plan: StackPlan, registry: Registry, printer: TerminalPrinter | None,
               on_serving: Callable[[], None] = lambda: None,
               ownership: Ownership | None = None) -> int:
    raise_fd_limit()
    try:
        engine = Engine(plan, registry, printer, dashboard_host=dashboard_host(),
                        ownership=ownership)
    except BaseException as exc:
        if ownership is not None:  # made for this engine: its cgroup goes with it
            ownership.close()
        # EAGAIN from the orphan guard's fork (BlockingIOError, an OSError) was said as
        # "cannot write <project>: Resource temporarily unavailable. Make the folder
        # writable", exit 10 (adv45 R/3): the process limit, as everywhere else.
        limit = ProcessLimitError.of(exc, "the daemon's orphan guard or threads")
        if limit is not None:
            raise limit from None
        if isinstance(exc, OSError):  # .logs or .hippodrome read-only, disk full
            raise StateDirError.from_os(exc, exc.filename or plan.options.project_root) \
                from None
        raise

    def start_http(eng: Engine) -> Callable[[], None]:
        try:
            sock = listener.bind(dashboard_host(), plan.dashboard_port)
        except (OSError, ValueError, TypeError) as exc:
            # Taken between the pre-flight check and now: name the holder, as pre-flight
            # does. ValueError, TypeError: a host text no socket takes (a byte that is not
            # UTF-8: "encoding of hostname failed", a traceback; adv30 q/1).
            if isinstance(exc, OSError):
                check_ports([("dashboard", plan.dashboard_port)])
            host = os.environ.get("HIPPODROME_DASHBOARD_HOST")
            from hippo_tasks.terminal_text import as_typed

            why = exc.strerror if isinstance(exc, OSError) else None
            raise UsageError(f"cannot serve the dashboard on port {plan.dashboard_port}: "
                             f"{why or exc}" + (
                                 f" (HIPPODROME_DASHBOARD_HOST='{as_typed(host)}': unset it, or "
                                 "give an address of this machine)" if host else "")) from None

        def start(bound: socket.socket) -> Callable[[], None]:
            from hippo_tasks.daemon.commands import StackCommands
            from hippo_tasks.daemon.http import serve

            return serve(bound, StackCommands(eng))[1]

        def failed(why: str) -> None:  # from the starting thread: the loop ends the stack
            assert eng.loop is not None
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile: so did it
                eng.loop.call_soon_threadsafe(eng.fail_serving, why)

        return listener.serve_soon(sock, start, after=eng.start_over, failed=failed)

    proof = _hold_daemon_log(plan.options.project_root) if printer is not None else None
    try:
        with signals_listed_once():
            return asyncio.run(engine.run(start_http, on_serving))
    finally:
        if printer is not None:
            printer.close()
        if proof is not None:
            os.close(proof)


def _hold_daemon_log(root: Path) -> int | None:
    """The foreground daemon keeps this project's daemon.log open, as a detached one has
    it for stderr: the proof (store.writes_daemon_log) that `hd down` may end it when it
    does not answer. A foreground `hd up` suspended with Ctrl+Z was left running, holding
    the dashboard port, and the next `up` failed. None where it cannot be opened."""
    try:
        return open_regular_for_append(root / ".hippodrome" / "daemon.log",
                                       "not a regular file")
    except OSError:
        return None


def _fail(opts_root: Any, exc: HippoError) -> int:
    """A detached daemon that cannot run: say why where `up --detach` reads it."""
    text = exc.message()
    with contextlib.suppress(OSError):  # daemon.log on a full disk: the exit code says it
        print(f"hippodrome: {text}", file=sys.stderr, flush=True)
    failure: dict[str, Any] = {"service": None, "reason": text, "last_lines": [], "final": True,
                               "kind": type(exc).__name__}
    if isinstance(exc, StateDirError):
        failure.update(path=exc.path, problem=exc.problem)
    with contextlib.suppress(OSError, StateDirError):
        Registry(opts_root).update(lambda d: d.__setitem__("failure", failure))
    # Where neither the registry nor daemon.log could carry the reason (a full disk: that
    # print failed and the daemon ended as an internal error, 70), `up --detach` says it
    # from this code alone.
    return EXIT_STATE_DIR if isinstance(exc, StateDirError) else \
        1 if isinstance(exc, ProcessLimitError) else 2


USAGE = ("python -m hippo_tasks.daemon --options JSON [--tls] [--lock-fd N] "
         "[--plan-fd N]")


def parse_args(argv: list[str]) -> tuple[str, int | None, int | None]:
    """(options JSON, inherited lock fd, inherited plan fd) from `--options JSON [--tls]
    [--lock-fd N] [--plan-fd N]`, as `launch.spawn_daemon` writes them. By hand:
    argparse is 10 ms of a start that every service waits for, and no person types
    this command line."""
    options, rest = None, list(argv)
    fds: dict[str, int] = {}
    while rest:
        flag = rest.pop(0)
        if flag == "--tls":  # a feature needs TLS (events); nothing to set here
            continue
        if flag in ("--options", "--lock-fd", "--plan-fd") and rest:
            value = rest.pop(0)
            if flag == "--options":
                options = value
            elif value.isdigit():
                fds[flag] = int(value)
            else:
                raise SystemExit(f"hippo_tasks.daemon: {flag} takes a number, not {value!r}")
            continue
        raise SystemExit(f"hippo_tasks.daemon: unexpected argument {flag!r}; usage: {USAGE}")
    if options is None:
        raise SystemExit("hippo_tasks.daemon: --options JSON is required (hd up starts the "
                         "daemon; run that instead)")
    return options, fds.get("--lock-fd"), fds.get("--plan-fd")


def main(argv: list[str] | None = None, soon: OwnershipSoon | None = None,
         plan: StackPlan | None = None) -> int:
    """`soon`: the cgroup being made while this module was imported (forked.py and
    __main__.py begin it first); removed again if the daemon ends before its engine.
    `plan`: the stack as `up` read and checked it, handed over in memory (forked) or
    through `--plan-fd` (a new interpreter); the stack file is not read again."""
    try:
        options, lock_fd, plan_fd = parse_args(sys.argv[1:] if argv is None else argv)
        opts = options_from_json(options)
        if plan is None and plan_fd is not None:
            plan = receive_plan(plan_fd)
        try:
            plan, registry = prepare(opts, lambda s: print(s, flush=True), again=True,
                                     plan=plan)
            own, soon = (soon.take() if soon is not None else None), None
            # Detached: service output goes to the log files only; notes go to daemon.log.
            return run_engine(plan, registry, None, release_inherited(lock_fd), own)
        except HippoError as exc:
            return _fail(opts.project_root, exc)
        except (RuntimeError, BlockingIOError) as exc:
            limit = ProcessLimitError.of(exc, "the daemon's threads")
            if limit is None:
                raise
            return _fail(opts.project_root, limit)
    finally:
        if soon is not None:
            soon.discard()
