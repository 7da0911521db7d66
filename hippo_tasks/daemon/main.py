"""Running the daemon: in the foreground (inside `invoke up`) or detached.

`prepare` does every check that can fail before anything starts (stack file, a daemon
already running, ports), so a bad `up` starts nothing. The detached daemon is this
module run as `python -m hippo_tasks.daemon --options JSON`, in a session of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hippo_tasks.daemon.commands import StackCommands
from hippo_tasks.daemon.engine import Engine
from hippo_tasks.daemon.http import serve
from hippo_tasks.errors import DaemonAlreadyRunningError
from hippo_tasks.model.loader import load_stack
from hippo_tasks.model.plan import Options, StackPlan, build_plan
from hippo_tasks.registry.cleanup import clean_stale
from hippo_tasks.registry.store import Registry, daemon_alive
from hippo_tasks.supervision.ports import check_ports
from hippo_tasks.supervision.printer import TerminalPrinter


def dashboard_host() -> str:
    if os.environ.get("HIPPODROME_DASHBOARD_HOST"):
        return os.environ["HIPPODROME_DASHBOARD_HOST"]
    return "0.0.0.0" if os.environ.get("HIPPODROME_PEX_DIR") else "127.0.0.1"


def prepare(opts: Options, say: Callable[[str], None] = print) -> tuple[StackPlan, Registry]:
    """Load, plan and pre-flight; raises a HippoError before anything has started."""
    spec = load_stack(opts.project_root)
    plan = build_plan(spec, opts)
    registry = Registry(opts.project_root)
    data = registry.read()
    for warning in registry.warnings:
        say(warning)
    if daemon_alive(data):
        d = data["daemon"]
        raise DaemonAlreadyRunningError(str(opts.project_root), d.get("url", "?"), d["pid"])
    for line in clean_stale(registry, data):
        say(line)
    data = registry.read()
    groups = {int(e["pgid"]) for e in data.get("services", {}).values() if e.get("pgid")}
    wanted = [("dashboard", plan.dashboard_port)] + [
        (s.name, s.port) for s in plan.services if s.port is not None and not s.spec.external
    ]
    check_ports(wanted, groups)
    return plan, registry


def run_engine(plan: StackPlan, registry: Registry, printer: TerminalPrinter | None) -> int:
    engine = Engine(plan, registry, printer, dashboard_host=dashboard_host())

    def start_http(eng: Engine) -> Callable[[], None]:
        _, stop = serve(dashboard_host(), plan.dashboard_port, StackCommands(eng))
        return stop

    try:
        return asyncio.run(engine.run(start_http))
    finally:
        if printer is not None:
            printer.close()


def fork_daemon(plan: StackPlan, registry: Registry, log: Path) -> int:
    """Become the daemon in a forked child: no second interpreter start, no re-import.

    Safe because no thread has been started yet in this process. The child leaves the
    terminal's session, so Ctrl+C in the shell that ran `up --detach` does not reach it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setsid()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = run_engine(plan, registry, None)
    except BaseException:  # noqa: BLE001 - the child must never return into invoke
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def options_to_json(opts: Options) -> str:
    data: dict[str, Any] = asdict(opts)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hippo_tasks.daemon")
    parser.add_argument("--options", required=True, help="the plan options as JSON")
    args = parser.parse_args(argv)
    opts = options_from_json(args.options)
    from hippo_tasks.errors import HippoError

    try:
        plan, registry = prepare(opts, lambda s: print(s, flush=True))
    except HippoError as exc:
        text = exc.message()
        print(f"hippodrome: {text}", file=sys.stderr, flush=True)
        failure: dict[str, Any] = {"service": None, "reason": text, "last_lines": [], "final": True}
        Registry(opts.project_root).update(lambda d: d.__setitem__("failure", failure))
        return 2
    # Detached: service output goes to the log files only; notes go to daemon.log.
    return run_engine(plan, registry, None)
