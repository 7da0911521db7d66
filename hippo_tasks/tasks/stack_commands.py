"""Running a stack's `[commands.NAME]` against the stack that is up.

`hd seed` and `hd probes` are the platform's programs, not the orchestrator's:
the stack file names them, and this module runs them the way the daemon runs a job,
with the stack's env contract rendered for the running stack (its profile, cell and
table prefix from `/api/status`, its port offset read off the dashboard URL), so they
reach exactly the URLs the services were given. The program's output goes straight to
the terminal, and its exit code becomes the task's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hippo_tasks.daemon.client import DaemonClient
from hippo_tasks.errors import StackFileError, UsageError
from hippo_tasks.model.commands import PlannedCommand, plan_command
from hippo_tasks.model.loader import load_stack
from hippo_tasks.model.plan import Options, cell_url_variable
from hippo_tasks.model.project import ROOT_MARKERS, changed_since, removed_since
from hippo_tasks.model.spec import StackSpec
from hippo_tasks.supervision.child_env import child_env, for_program
from hippo_tasks.tasks.context import daemon_offset, python_for_services, random_seed


def running_options(root: Path, status: Mapping[str, Any], seed: int | None,
                    env: Mapping[str, str]) -> tuple[StackSpec, Options]:
    """The stack spec and the Options the running daemon was started with."""
    spec = load_stack(root)
    dashboard_port = urlsplit(str(status.get("dashboard_url") or "")).port
    offset = int(daemon_offset({"port_offset": status.get("port_offset"),
                                "port": dashboard_port}, spec.settings.dashboard_port) or 0)
    env = dict(env)
    cell_url = status.get("cell_url")
    if isinstance(cell_url, str) and cell_url:  # this shell may not have it; the daemon did
        env.setdefault(cell_url_variable(str(status.get("cell"))), cell_url)
    try:
        opts = Options(project_root=root, profile=str(status["profile"]),
                       cell=str(status["cell"]), table_prefix=str(status["table_prefix"]),
                       port_offset=offset,
                       random_seed=random_seed() if seed is None else seed,
                       python=python_for_services(), env=env)
    except KeyError as exc:
        raise UsageError(f"the daemon's /api/status has no {exc}: is it an older Hippodrome? "
                         "restart the stack (`hd down`, then `hd up`)") from None
    return spec, opts


def prepare(root: Path, name: str, task: str, seed: int | None = None) -> PlannedCommand:
    client = DaemonClient.for_project(root)
    if removed_since(root, client.stack_file):
        # The command is read from the file; the daemon keeps its services, not this
        # table. Loaded without the file, the stack was the bundled one, and its seed
        # ran against the running stack's offset: another stack's program.
        link = os.path.islink(root / ROOT_MARKERS[0])
        raise StackFileError(
            str(root / ROOT_MARKERS[0]),
            ("is now a symbolic link that leads nowhere" if link else "was removed")
            + f" after this stack started; `hd {task}` runs the stack's "
            f"[commands.{name}], read from that file: put it back, then run `hd {task}` "
            "again (nothing was run: without the file only the bundled stack's command is "
            "known, and that is not the stack running here)")
    status = client.status()
    note = changed_since(root, client.stack_file)
    if note:  # its variables come from the file as it is now, the stack from then
        print(f"hippodrome: note: {note}", file=sys.stderr)
    environ = child_env()
    spec, opts = running_options(root, status, seed, environ)
    planned = plan_command(spec, opts, name, task)
    dashboard = status.get("dashboard_url")
    env = dict(planned.env)
    if dashboard:  # where the program reaches the daemon, whatever the stack file says
        env.setdefault("HIPPODROME_DASHBOARD_URL", str(dashboard))
    return PlannedCommand(planned.name, planned.argv, planned.cwd,
                          for_program({**environ, **env}, planned.argv))


def run(root: Path, name: str, task: str, seed: int | None = None,
        extra: Sequence[str] = ()) -> int:
    """Run the command to completion in the foreground; its exit code. `extra` words are
    appended to the command's argv as they are (a task's flags, e.g. `probes --full`)."""
    cmd = prepare(root, name, task, seed)
    if not Path(cmd.cwd).is_dir():  # else the program was said not to exist
        raise UsageError(f"{task}: the stack's [commands.{name}] runs in {cmd.cwd}, which "
                         "is not a folder: fix its `cwd` (relative to the project root)")
    from hippo_tasks.supervision.ownership import ending_with_this_process

    try:
        return subprocess.call([*cmd.argv, *extra], cwd=cmd.cwd, env=dict(cmd.env),
                               preexec_fn=ending_with_this_process())
    except OSError as exc:
        raise UsageError(f"{task}: cannot run the stack's [commands.{name}] "
                         f"({cmd.argv[0]}): {exc.strerror or exc}") from None
