"""A service's readiness, liveness and start timeout as Kubernetes probes, and what a
dependant's init container waits for.

Hippodrome polls readiness until `start_timeout` (a startupProbe with as many one-second
tries), then re-probes every `liveness_interval` and restarts after `liveness_failures`
misses when `auto_restart` (a livenessProbe; none without auto_restart, since
Kubernetes can only restart). A `log` readiness has no Kubernetes counterpart: the port
is probed instead when there is one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hippo_tasks.model.plan import PlannedService, StackPlan

CONDITION_DEFAULT = {"service": "healthy", "job": "completed_successfully"}


def handler(svc: PlannedService) -> dict[str, Any] | None:
    kind = svc.readiness.kind
    if svc.port is None:
        return None
    if kind == "http":
        return {"httpGet": {"path": svc.readiness.value, "port": svc.port}}
    if kind in ("tcp", "log"):
        return {"tcpSocket": {"port": svc.port}}
    return None


def probes(svc: PlannedService, plan: StackPlan) -> dict[str, Any]:
    """startupProbe / readinessProbe / livenessProbe fields for the container."""
    how = handler(svc)
    if how is None:
        return {}
    out: dict[str, Any] = {
        "startupProbe": {**how, "periodSeconds": 1, "timeoutSeconds": 1,
                         "failureThreshold": max(1, math.ceil(svc.spec.start_timeout))},
        "readinessProbe": {**how, "periodSeconds": 5, "timeoutSeconds": 2,
                           "failureThreshold": 1},
    }
    if svc.spec.auto_restart:
        out["livenessProbe"] = {
            **how, "timeoutSeconds": 2,
            "periodSeconds": max(1, math.ceil(plan.settings.liveness_interval)),
            "failureThreshold": plan.settings.liveness_failures,
        }
    return out


def wait_target(dep: PlannedService, condition: str, host: str) -> str | None:
    """What a dependant waits for before it starts, or None (nothing to wait for:
    `started`, or a dependency Hippodrome calls ready once started)."""
    if dep.spec.kind == "job" or condition == "completed_successfully":
        return f"job/{host}"
    if condition == "started":
        return None
    how = handler(dep)
    if how is None:
        return None
    if "httpGet" in how:
        return f"http://{host}:{dep.port}{dep.readiness.value}"
    return f"tcp://{host}:{dep.port}"


def wait_targets(svc: PlannedService, plan: StackPlan,
                 names: Mapping[str, str]) -> list[str]:
    conditions = dict(svc.spec.conditions)
    out = []
    for dep_name in svc.depends_on:
        dep = plan.service(dep_name)
        if dep.spec.external or dep_name not in names:
            continue  # probed, never started: nothing waits for it (as in `up`)
        condition = conditions.get(dep_name, CONDITION_DEFAULT[dep.spec.kind])
        target = wait_target(dep, condition, names[dep_name])
        if target is not None:
            out.append(target)
    return out
