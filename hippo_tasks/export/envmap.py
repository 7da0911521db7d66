"""A service's environment as a container's `env` list, in the services layout.

Values are the plan's, with loopback URLs turned into in-cluster Service names (as
are command arguments: `container_text`). What must not be written into a manifest
comes from Secrets, by reference:
- `${env:NAME}` (a value from the exporting machine's environment, often a secret):
  NAME from Secret `hippodrome-env`, listed first so `$(NAME)` in later values and in
  the command expands to it;
- AWS credentials when the cell is not local: from Secret `hippodrome-aws`.
Values naming the dashboard (the webhook URL) are emptied: the services layout runs no
daemon (see services_layout).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hippo_tasks.export.hosts import names_port, rewrite
from hippo_tasks.export.naming import BASE_NAME
from hippo_tasks.export.target import k8s_text
from hippo_tasks.model.plan import PlannedService

ENV_SECRET = f"{BASE_NAME}-env"
AWS_SECRET = f"{BASE_NAME}-aws"
WEBHOOK_SECRET = f"{BASE_NAME}-webhook"
AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
OPTIONAL_AWS_KEYS = ("AWS_SESSION_TOKEN",)
"""Long-lived keys have no session token: a Secret without it still starts the pod."""


def secret_ref(name: str, secret: str, key: str | None = None,
               optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key or name}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def aws_refs() -> list[dict[str, Any]]:
    return [secret_ref(k, AWS_SECRET, optional=k in OPTIONAL_AWS_KEYS) for k in AWS_KEYS]


def container_text(text: str, owners: Mapping[int, str]) -> str:
    """A rendered env value or command argument as the services layout writes it: the
    one place both go through, so a `${url:NAME}`/`${port:NAME}` points at the
    in-cluster Service in a command just as in env (a loopback URL would be the pod's
    own), and Kubernetes' `$(VAR)` expansion gives back the text `up` renders."""
    return k8s_text(rewrite(text, owners))


def container_env(svc: PlannedService, refs: Sequence[str], owners: Mapping[int, str],
                  dashboard_port: int, local_cell: bool,
                  emptied: set[str]) -> list[dict[str, Any]]:
    """The env list; keys emptied for naming the dashboard are added to `emptied`."""
    out = [secret_ref(name, ENV_SECRET) for name in refs]
    for key, value in svc.env.items():
        if key in refs:
            continue  # `NAME = "${env:NAME}"`: the reference above is the value
        if key in AWS_KEYS and not local_cell:
            out.append(secret_ref(key, AWS_SECRET, optional=key in OPTIONAL_AWS_KEYS))
            continue
        if names_port(value, dashboard_port):
            emptied.add(key)
            value = ""
        out.append({"name": key, "value": container_text(value, owners)})
    given = {e["name"] for e in out}
    extra = {"PYTHONUNBUFFERED": "1"}  # as the daemon gives every service
    if svc.port is not None:
        extra["PORT"] = str(svc.port)
    out += [{"name": k, "value": v} for k, v in extra.items() if k not in given]
    return out
