"""Building blocks both layouts share: metadata, pod security, volumes, the object
kinds. Each returns a plain dict, ready for yamlout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hippo_tasks.export.naming import BASE_NAME, Identity
from hippo_tasks.export.target import IMAGE_USER

Obj = dict[str, Any]
STATE_SIZE = "1Gi"
WAITER = f"{BASE_NAME}-waiter"


@dataclass(frozen=True)
class Where:
    """Who the objects belong to, where they go, and what runs in them."""

    ident: Identity
    namespace: str
    image: str

    def meta(self, name: str, service: str | None = None,
             annotations: Mapping[str, str] | None = None) -> Obj:
        return self.ident.metadata(name, self.namespace, service, annotations)


def pod_security() -> Obj:
    """The image's user; fsGroup makes a fresh volume writable by it."""
    return {"runAsUser": IMAGE_USER, "runAsGroup": IMAGE_USER, "fsGroup": IMAGE_USER,
            "runAsNonRoot": True}


def namespace(where: Where) -> Obj:
    meta = where.meta(where.namespace)
    meta.pop("namespace", None)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def claim(where: Where, name: str, service: str | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": where.meta(name, service),
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": STATE_SIZE}}}}


def service(where: Where, name: str, ports: Sequence[Obj], service_label: str | None) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": where.meta(name, service_label),
            "spec": {"type": "ClusterIP", "selector": where.ident.selector(service_label),
                     "ports": list(ports)}}


def deployment(where: Where, name: str, service_label: str | None, pod: Obj) -> Obj:
    """One replica, replaced (not rolled): a stack's state is one copy's."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": where.meta(name, service_label),
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                     "selector": {"matchLabels": where.ident.selector(service_label)},
                     "template": {"metadata": {"labels": where.ident.labels(service_label)},
                                  "spec": pod}}}


def job(where: Where, name: str, service_label: str, pod: Obj) -> Obj:
    """Runs once; a failure is final, as a Hippodrome job's (no retries)."""
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": where.meta(name, service_label),
            "spec": {"backoffLimit": 0,
                     "template": {"metadata": {"labels": where.ident.labels(service_label)},
                                  "spec": {**pod, "restartPolicy": "Never"}}}}


def config_map(where: Where, name: str, data: Mapping[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": where.meta(name),
            "data": dict(data)}


def waiter_rbac(where: Where) -> list[Obj]:
    """The account init containers use to ask whether a Job has succeeded: `get` on
    Jobs in this namespace, nothing else."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": where.meta(WAITER)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": where.meta(WAITER),
         "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": where.meta(WAITER),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": WAITER},
         "subjects": [{"kind": "ServiceAccount", "name": WAITER,
                       **({"namespace": where.namespace} if where.namespace else {})}]},
    ]
