"""`--layout services`: a Deployment (and a Service, when it has a port) per
long-running service, a Job per `kind = "job"`, each pod from the same image.

Order: an init container waits for each dependency's readiness (`hippo_tasks.export.
wait`: the dependency's own readiness path, its port, or its Job's success).
No daemon runs here: no dashboard, no webhook routing, no restart from the page;
Kubernetes restarts, probes and orders. That is why values naming the dashboard (the
webhook URL) are emptied, said once. A Job's project root is a volume of its own, so
what it writes (the seed job's `.hippodrome/seed.json` and `.env.e2e`) outlives it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from hippo_tasks.export import objects as O
from hippo_tasks.export import probes, sizing
from hippo_tasks.export.envmap import container_env, container_text
from hippo_tasks.export.hosts import port_owners
from hippo_tasks.export.naming import port_name, service_names
from hippo_tasks.export.target import IMAGE_PYTHON, IMAGE_SRC_DIR, ImagePlan, k8s_text, refs_in
from hippo_tasks.model.plan import PlannedService, StackPlan

TINI = "/usr/bin/tini"
"""PID 1 in every container, as in the image's entrypoint: reaps, forwards SIGTERM."""


def build(image_plan: ImagePlan, where: O.Where,
          say: Callable[[str], None]) -> list[O.Obj]:
    plan = image_plan.plan
    running = [s for s in plan.services if not s.spec.external]
    names = service_names(s.name for s in plan.services)
    owners = port_owners(image_plan.spec, plan, names)
    emptied: set[str] = set()
    out: list[O.Obj] = [O.namespace(where)]
    waits = {s.name: probes.wait_targets(s, plan, names) for s in running}
    if any(t.startswith("job/") for ts in waits.values() for t in ts):
        out += O.waiter_rbac(where)
    workloads: list[O.Obj] = []
    for svc in running:
        name = names[svc.name]
        container = _container(svc, name, where.image, plan, owners, emptied)
        pod = _pod(svc, container, waits[svc.name], where.image)
        if svc.spec.kind == "job":
            claim = f"{name}-output"
            out.append(O.claim(where, claim, svc.name))
            container["volumeMounts"] = [{"name": "output", "mountPath": IMAGE_SRC_DIR}]
            pod["volumes"] = [{"name": "output",
                               "persistentVolumeClaim": {"claimName": claim}}]
            workloads.append(O.job(where, name, svc.name, pod))
            continue
        if svc.port is not None:
            out.append(O.service(where, name, [{"name": port_name(svc.name, svc.port, set()),
                                                "port": svc.port, "targetPort": svc.port}],
                                 svc.name))
        workloads.append(O.deployment(where, name, svc.name, pod))
    for svc in plan.services:
        if svc.spec.external:
            say(f"'{svc.name}' is external (probed, not started): nothing is exported for "
                f"it; give the namespace a Service named {names[svc.name]} (e.g. of type "
                "ExternalName) for others to reach it")
    if emptied:
        say(f"{', '.join(sorted(emptied))} named the dashboard, which the services layout "
            "does not run (no webhook routing): set to empty; use --layout stack for the "
            "webhook path")
    return out + workloads


def _container(svc: PlannedService, name: str, image: str, plan: StackPlan,
               owners: dict[int, str], emptied: set[str]) -> O.Obj:
    mine = refs_in([*svc.argv, *svc.env.values()])
    container: O.Obj = {
        "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
        "command": [TINI, "--", *(container_text(a, owners) for a in svc.argv)],
        "workingDir": str(svc.cwd),
        "env": container_env(svc, mine, owners, plan.dashboard_port,
                             plan.options.cell == "local", emptied),
        "resources": sizing.resources(sizing.service_mb(svc.name),
                                      sizing.CPU_REQUEST_SERVICE),
        **probes.probes(svc, plan),
    }
    if svc.port is not None:
        container["ports"] = [{"name": port_name(svc.name, svc.port, set()),
                               "containerPort": svc.port}]
    return container


def _pod(svc: PlannedService, container: O.Obj, waits: list[str], image: str) -> O.Obj:
    pod: O.Obj = {
        "securityContext": O.pod_security(),
        "terminationGracePeriodSeconds": max(1, math.ceil(svc.spec.stop_timeout)),
        "containers": [container],
    }
    if waits:
        pod["initContainers"] = [{
            "name": "wait-for-dependencies", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": [IMAGE_PYTHON, "-m", "hippo_tasks.export.wait",
                        *(k8s_text(t) for t in waits)],
            "resources": sizing.resources(sizing.UNMEASURED_MB / 2, sizing.CPU_REQUEST_SERVICE),
        }]
    if any(t.startswith("job/") for t in waits):
        pod["serviceAccountName"] = O.WAITER
    return pod
