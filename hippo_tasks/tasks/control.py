"""`hd control.*`: the seeds' `hd control ...` names, same behaviour as the top-level tasks."""

from __future__ import annotations

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from hippo_tasks.tasks import actions, lifecycle
from hippo_tasks.tasks.declare import as_task
from hippo_tasks.tasks.output import handles_errors


@task(help={"project-root": lifecycle.UP_HELP["project-root"]})
@handles_errors
def shutdown(c: Context, project_root: str | None = None) -> None:
    """Stop every service and the daemon (as `hd down`)."""
    lifecycle.down(c, project_root=project_root)


ns = Collection("control")
ns.add_task(as_task(actions.status), "status")
ns.add_task(as_task(actions.start), "start")
ns.add_task(as_task(actions.stop), "stop")
ns.add_task(as_task(actions.restart), "restart")
ns.add_task(shutdown, "shutdown")
