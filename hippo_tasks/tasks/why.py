"""`hd why NAME`: what a service waits on, down the dependency chain (daemon/why.py)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from hippo_tasks.daemon.client import DaemonClient
from hippo_tasks.tasks.context import resolve_root
from hippo_tasks.tasks.declare import task
from hippo_tasks.tasks.output import handles_errors

if TYPE_CHECKING:
    from invoke.context import Context


WHY_HELP = {"service": "the service to explain", "json": "print the answer as JSON "
            "(as GET /api/services/NAME/why)",
            "project-root": "project folder (default: nearest parent with hippodrome.toml "
                            "or tasks.py)"}


@task(help=WHY_HELP)
@handles_errors
def why(c: Context, service: str, json_: bool = False, project_root: str | None = None) -> None:
    """Why a service is not ready: its state, or what it waits on, down the chain."""
    from hippo_tasks.daemon.why import render

    if service in ("-h", "--help"):  # invoke hands a flag to a missing positional as its value
        # `invoke why --help` asked the daemon about a service named '--help'
        print("Usage: invoke why [--json] [--project-root DIR] SERVICE\n\n"
              f"{why.__doc__}\n\n" + "\n".join(
                  f"  {('--' + k) if k != 'service' else 'SERVICE':<24}{v}"
                  for k, v in WHY_HELP.items()))
        return

    answer = DaemonClient.for_project(resolve_root(project_root)).why(service)
    if json_:
        print(json.dumps(answer, indent=2))
        return
    from hippo_tasks.terminal_text import for_output  # it quotes services' lines

    print(for_output(render(answer), 1))
