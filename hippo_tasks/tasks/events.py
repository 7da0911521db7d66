"""`invoke events.*`: EventBridge tasks, thin over `hippo_tasks.events` and the daemon.

`events.send` posts to the running daemon's webhook, the path EventBridge deliveries
take, so routing can be tried without an AWS account.

The AWS layer is imported inside each task body, so listing tasks (or running any
other command) never loads boto3.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from hippo_tasks.daemon.client import DaemonClient
from hippo_tasks.errors import DaemonUnreachableError, UsageError
from hippo_tasks.model.project import default_table_prefix, find_project_root
from hippo_tasks.registry.store import Registry
from hippo_tasks.tasks.context import resolve_root
from hippo_tasks.tasks.output import RED, handles_errors, paint


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


SEND_HELP = {
    "detail-type": "the event's detail-type, e.g. EcomIndexSettings.MODIFY (routes match "
    "its prefix)",
    "file": "a JSON file holding the event's `detail` object (default: a minimal one)",
    "project-root": "project folder (default: nearest parent with hippodrome.toml or tasks.py)",
}

_SAMPLE_KEYS = {
    "EcomIndexSettings": {"pk": {"S": "INDEX#test"}, "sk": {"S": "SETTINGS"}},
    "Merchandising": {"pk": {"S": "RULE#test"}},
}


def _detail(path: str, detail_type: str, table_prefix: str) -> dict[str, Any]:
    """The file's object, else the smallest detail shaped like event_pipe's records."""
    if path:
        try:
            detail = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"--file {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise UsageError(f"--file {path}: not valid JSON ({exc})") from None
        if not isinstance(detail, dict):
            raise UsageError(f"--file {path}: the event's detail must be a JSON object")
        return detail
    family, _, op = detail_type.rpartition(".")
    family = family or detail_type
    keys = _SAMPLE_KEYS.get(family, {"pk": {"S": "EVENT#test"}})
    return {"eventName": op if op in ("INSERT", "MODIFY", "REMOVE") else "MODIFY",
            "tableName": f"{table_prefix}{family}Table", "keys": keys,
            "newImage": {"pk": keys["pk"]}}


@task(help=SEND_HELP)
@handles_errors
def send(c: Context, detail_type: str = "", file: str = "", project_root: str = "") -> None:
    """Post one event to the running daemon's webhook and print where it was routed.

    The same path an EventBridge delivery takes, so a route can be tried without AWS.
    Exits 1 when the webhook answers 4xx/5xx (the answer is still printed).
    """
    if not detail_type:
        raise UsageError("--detail-type is required, e.g. --detail-type EcomIndexSettings.MODIFY")
    root = resolve_root(project_root)
    client = DaemonClient.for_project(root)
    daemon = Registry(root).read().get("daemon") or {}
    detail = _detail(file, detail_type, str(daemon.get("table_prefix") or ""))
    event = {"source": "marqo.dynamodb", "detail-type": detail_type, "detail": detail}
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("HIPPODROME_WEBHOOK_TOKEN")
    if token:
        headers["x-hippodrome-webhook-token"] = token
    req = urllib.request.Request(client.url + "/webhook/eventbridge", method="POST",
                                 data=json.dumps(event).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DaemonUnreachableError(client.url, client.pid, str(reason)) from None
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {"raw": raw.decode("utf-8", "replace")}
    print(json.dumps(answer, indent=2), flush=True)
    if status >= 400:
        print(paint(f"hippodrome: the webhook answered {status}", RED, sys.stderr),
              file=sys.stderr)
        raise Exit(code=1)


ns = Collection("events")
ns.add_task(validate)
ns.add_task(send)
