"""`--layout stack` (the default): the whole stack in one pod, as `docker run` runs it.

One Deployment runs the image's `hd up` with the export's options, so the daemon
orders, probes, restarts and routes webhooks exactly as on a laptop; a Service exposes
the dashboard and every service's port. The project root (/srv/hippodrome) is a
volume: the registry, logs, services' state and the seed job's output (`.hippodrome/
seed.json`, `.env.e2e`) outlive the pod. A project's own hippodrome.toml travels as a
ConfigMap mounted in that root.
"""

from __future__ import annotations

import math
from typing import Any

from hippo_tasks.export import objects as O
from hippo_tasks.export import sizing
from hippo_tasks.export.envmap import ENV_SECRET, WEBHOOK_SECRET, aws_refs, secret_ref
from hippo_tasks.export.naming import BASE_NAME, port_name
from hippo_tasks.export.target import IMAGE_SRC_DIR, ImagePlan, k8s_text
from hippo_tasks.model.loader import PROJECT_FILE
from hippo_tasks.model.plan import Options

STATE_CLAIM = f"{BASE_NAME}-state"
STACK_FILE_MAP = f"{BASE_NAME}-stack-file"
READY_SCRIPT = (
    "import json, sys, urllib.request as r\n"
    "d = json.load(r.urlopen('http://127.0.0.1:{port}/api/status', timeout=4))\n"
    "bad = [s['name'] for s in d['services']\n"
    "       if s['blocking'] and not s['external'] and not s['ready']]\n"
    "sys.exit('not ready: ' + ', '.join(bad) if bad else 0)\n"
)
"""Ready when every blocking service is (as `up --detach` judges): /healthz only says
the daemon serves, which it does before the first service starts."""


def up_args(opts: Options, left_out: list[str], kept: list[str]) -> list[str]:
    """`hd up` as the pod runs it: the export's options, written out."""
    args = ["up", "--profile", opts.profile, "--cell", opts.cell,
            "--table-prefix", opts.table_prefix]
    if opts.port_offset:
        args += ["--port-offset", str(opts.port_offset)]
    if opts.only or left_out:
        args += ["--only", ",".join(kept)]
    if "seed" in opts.skip:
        args.append("--no-seed")
    if opts.cell == "prod":
        args.append("--yes")  # the export itself asked (stdin is no terminal in a pod)
    return args


def build(image_plan: ImagePlan, where: O.Where, project_file: str | None) -> list[O.Obj]:
    plan = image_plan.plan
    running = [s for s in plan.services if not s.spec.external]
    kept = [s.name for s in plan.services]
    taken: set[str] = set()
    ports = [("dashboard", plan.dashboard_port)] + [
        (s.name, s.port) for s in running if s.port is not None]
    named = [(port_name(n, p, taken), p) for n, p in ports]
    env: list[dict[str, Any]] = [secret_ref("HIPPODROME_WEBHOOK_TOKEN", WEBHOOK_SECRET,
                                            "token", optional=True)]
    if plan.options.cell != "local":
        env += aws_refs()
    env += [secret_ref(name, ENV_SECRET) for name in image_plan.env_refs]
    env += [{"name": k, "value": k8s_text(v)} for k, v in plan.options.env.items()
            if k.startswith("HIPPODROME_CELL_URL_")]
    health = {"httpGet": {"path": "/healthz", "port": plan.dashboard_port}}
    mounts: list[O.Obj] = [{"name": "state", "mountPath": IMAGE_SRC_DIR}]
    volumes: list[O.Obj] = [{"name": "state",
                             "persistentVolumeClaim": {"claimName": STATE_CLAIM}}]
    out: list[O.Obj] = [O.namespace(where)]
    if project_file is not None:
        out.append(O.config_map(where, STACK_FILE_MAP, {PROJECT_FILE: project_file}))
        mounts.append({"name": "stack-file", "mountPath": f"{IMAGE_SRC_DIR}/{PROJECT_FILE}",
                       "subPath": PROJECT_FILE, "readOnly": True})
        volumes.append({"name": "stack-file", "configMap": {"name": STACK_FILE_MAP}})
    container = {
        "name": BASE_NAME, "image": where.image, "imagePullPolicy": "IfNotPresent",
        "args": [k8s_text(a) for a in up_args(plan.options, list(image_plan.left_out),
                                              kept)],
        "env": env,
        "ports": [{"name": n, "containerPort": p} for n, p in named],
        "startupProbe": {**health, "periodSeconds": 1, "failureThreshold": 120},
        "livenessProbe": {**health, "periodSeconds": 10, "timeoutSeconds": 5,
                          "failureThreshold": 3},
        "readinessProbe": {"exec": {"command": [
            "python3", "-c", READY_SCRIPT.format(port=plan.dashboard_port)]},
            "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 1},
        "resources": sizing.resources(sizing.stack_mb(s.name for s in running),
                                      sizing.CPU_REQUEST_STACK),
        "volumeMounts": mounts,
    }
    grace = math.ceil(sum(s.spec.stop_timeout for s in running)) + 10
    pod = {"securityContext": O.pod_security(), "terminationGracePeriodSeconds": grace,
           "containers": [container], "volumes": volumes}
    service_ports = [{"name": n, "port": p, "targetPort": p} for n, p in named]
    return out + [O.claim(where, STATE_CLAIM),
                  O.service(where, BASE_NAME, service_ports, None),
                  O.deployment(where, BASE_NAME, None, pod)]
