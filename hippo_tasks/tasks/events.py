"""`invoke events.*`: EventBridge tasks, thin over `hippo_tasks.events`.

The AWS layer is imported inside each task body, so listing tasks (or running any
other command) never loads boto3.
"""

from __future__ import annotations

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from hippo_tasks.model.project import default_table_prefix, find_project_root


@task(
    help={
        "table-prefix": "DynamoDB table prefix (default: dev-{git branch}-)",
        "verbose": "also print ARNs, pipe states and stream view types",
        "endpoint-url": "AWS endpoint, e.g. the local moto http://127.0.0.1:9003 "
        "(default: AWS_ENDPOINT_URL, else real AWS)",
    }
)
def validate(
    c: Context,
    table_prefix: str | None = None,
    verbose: bool = False,
    endpoint_url: str | None = None,
) -> None:
    """Check the EventBridge buses, pipes and table streams for a table prefix."""
    from hippo_tasks.events.validate import validate as run_validation

    prefix = table_prefix or default_table_prefix(find_project_root())
    lines, ok = run_validation(prefix, endpoint_url=endpoint_url, verbose=verbose)
    print("\n".join(lines), flush=True)
    if not ok:
        raise Exit(code=1)


ns = Collection("events")
ns.add_task(validate)
