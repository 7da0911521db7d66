"""`hd status / start / stop / restart`: calls to a running daemon, nothing more.

Apart from `up` and `down` (tasks/lifecycle.py), which start and end a daemon: these
are the commands people repeat, so they load only the registry and the client
(tests/test_cli_imports.py holds them to it; benchmarks/bench_cli.py times them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hippo_tasks.errors import UnknownServiceError, UsageError
from hippo_tasks.model.project import changed_since
from hippo_tasks.tasks.context import resolve_root
from hippo_tasks.tasks.declare import task
from hippo_tasks.tasks.output import TaskExit, handles_errors, status_table, table_state

if TYPE_CHECKING:
    from invoke.context import Context


ROOT_HELP = {"project-root": "project folder (tasks/flags.py words it for every task)"}

@task(help={"json": "print the status as JSON (as GET /api/status)",
            **ROOT_HELP})
@handles_errors
def status(c: Context, json_: bool = False, project_root: str | None = None) -> None:
    """Table of services: state, health, pid, port, restarts, uptime, last exit code."""
    from hippo_tasks.daemon.client import DaemonClient

    root = resolve_root(project_root)
    client = DaemonClient.for_project(root)
    result = client.status()
    if json_:
        print(json.dumps(result, indent=2))
    else:
        from hippo_tasks.terminal_text import for_output  # reasons quote commands

        print(for_output(status_table(result), 1))
    if result.get("shutting_down"):  # on stderr: stdout stays what scripts read
        print(f"hippodrome: the stack is shutting down ({result['shutting_down']}): nothing "
              "starts again until `hd up` once it has stopped", file=sys.stderr)
    _say_if_changed(root, client.stack_file)


def _say_if_changed(root: Path, stamp: str | None) -> None:
    """On stderr: the table (or JSON) on stdout stays what scripts read."""
    note = changed_since(root, stamp)
    if note:
        print(f"hippodrome: note: {note}", file=sys.stderr)


def _act(verb: str, service: str | None, root_flag: str | None,
         cascade: bool = False) -> None:
    """`service` None: the whole stack. Given but empty (`-s "$SVC"` with SVC unset) is
    refused: it meant the whole stack, and `hd stop` took every service down."""
    if service is not None and not service.strip():
        raise UsageError(f"--service needs a service's name, got {service!r}; leave the flag "
                         "out to act on the whole stack")
    if cascade and not service:
        raise UsageError("--cascade needs --service NAME (the stack as a whole has no order "
                         "to cascade in)")
    from hippo_tasks.daemon.client import DaemonClient
    from hippo_tasks.tasks.wait_notice import WaitNotice

    root = resolve_root(root_flag)
    client = DaemonClient.for_project(root)
    try:
        notice = WaitNotice(client, service) if service and verb != "stop" else None
        result = client.action(verb, service or None, cascade, each_second=notice)
    except UnknownServiceError:
        _say_if_changed(root, client.stack_file)  # a name the edited file has, say
        raise
    except KeyboardInterrupt:
        # Ctrl+C ends the wait, not the action: exit 130 with no word, and the daemon
        # carried it out anyway (adv26 f's notes).
        print(f"hippodrome | stopped waiting; the {verb} goes on in the daemon (`hd status` "
              "shows where it is)", file=sys.stderr, flush=True)
        raise
    if verb != "stop":
        _say_if_changed(root, client.stack_file)
    from hippo_tasks.terminal_text import for_output  # a reason may quote a command

    rows = result["services"]
    for row in rows:
        line = f"{row['name']}: {table_state(row)}"  # `completed`, as the table says
        if row.get("pid") and row["state"] == "running":
            line += f" (pid {row['pid']})"
        stopped = verb != "stop" and row["state"] == "stopped" and not row.get("ready")
        if row.get("not_restarted"):  # before a stale reason: "stopped — stop requested"
            line += f" — {row['not_restarted']}"  # said a restart refused (adv25 d/1)
        elif (row["state"] in ("failed", "backoff") or stopped) and row.get("reason"):
            line += f" — {row['reason']}"
        print(for_output(line, 1))
    from hippo_tasks.action_outcome import problems

    found = problems(verb, service or None, cascade, rows)
    for problem in found:
        if not problem.in_row:
            print(f"hippodrome: {problem.text}", file=sys.stderr)
    if found:
        raise TaskExit(1)


SERVICE_HELP = {"service": "one service (default: the whole stack; the daemon stays up)",
                **ROOT_HELP}


@task(help=SERVICE_HELP)
@handles_errors
def start(c: Context, service: str | None = None, project_root: str | None = None) -> None:
    """Start a service (and what it depends on), or the whole stack."""
    _act("start", service, project_root)


@task(help=SERVICE_HELP)
@handles_errors
def stop(c: Context, service: str | None = None, project_root: str | None = None) -> None:
    """Stop a service, or every service (the daemon keeps running)."""
    _act("stop", service, project_root)


@task(help={**SERVICE_HELP, "cascade": "then restart what depends on it, in dependency "
                                         "order, each once the one before is ready"})
@handles_errors
def restart(c: Context, service: str | None = None, project_root: str | None = None,
            cascade: bool = False) -> None:
    """Restart one service while the rest keep running, or the whole stack."""
    _act("restart", service, project_root, cascade)


