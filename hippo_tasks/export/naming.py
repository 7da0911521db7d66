"""Object names and labels: every exported object says which project, profile and table
prefix it belongs to, so one selector finds (and deletes) a branch's stack."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from hippo_tasks.errors import UsageError

GROUP = "hippodrome.dev"
PROJECT_LABEL = f"{GROUP}/project"
PROFILE_LABEL = f"{GROUP}/profile"
PREFIX_LABEL = f"{GROUP}/table-prefix"
LAYOUT_LABEL = f"{GROUP}/layout"
SERVICE_LABEL = f"{GROUP}/service"
PREFIX_ANNOTATION = f"{GROUP}/table-prefix"
BASE_NAME = "hippodrome"
"""The stack layout's Deployment and Service, and the prefix of shared objects
(Secrets, the waiter's account) in both layouts: one stack per namespace."""

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


def label_value(text: str) -> str:
    """A label value: at most 63 of [A-Za-z0-9-_.], starting and ending alphanumeric
    (`dev-main-` becomes `dev-main`; the exact prefix is in an annotation)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def dns_name(service: str) -> str:
    """A service's object name: a DNS-1035 label (`fake_cell` -> `fake-cell`), since it
    is also the in-cluster host name other services reach it by."""
    name = re.sub(r"[^a-z0-9-]+", "-", service.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = "svc-" + name
    name = name[:63].rstrip("-")
    return name


def reserved_namespace(namespace: str) -> bool:
    """`default` and `kube-*`: the cluster's own. Every export holds a Namespace object
    labelled as this stack's, and its clean-up deletes that namespace: exported into
    kube-system, `kubectl apply` labelled the cluster's kube-system as the stack's, and
    the clean-up the README gives deleted it."""
    return namespace == "default" or namespace.startswith("kube-")


def check_namespace(namespace: str, table_prefix: str | None = None) -> str:
    """`namespace` as given with --namespace, or (`table_prefix` given) the one made
    from the table prefix."""
    if namespace and not _NAMESPACE.match(namespace):
        raise UsageError(
            f"--namespace {namespace!r} is not a Kubernetes namespace name: at most 63 "
            "lower-case letters, digits and '-', starting and ending with a letter or "
            "digit (e.g. hd-feature-x)")
    if reserved_namespace(namespace):
        given = (f"--namespace {namespace!r} is" if table_prefix is None else
                 f"the table prefix {table_prefix!r} makes the namespace {namespace!r}, "
                 "which is")
        raise UsageError(
            f"{given} the cluster's own (default, kube-*): the export labels its namespace "
            "as this stack's and its clean-up deletes it; give a namespace of the stack's "
            "own with --namespace (e.g. --namespace hd-feature-x)")
    return namespace


def service_names(services: Iterable[str]) -> dict[str, str]:
    """Stack name -> object name, refusing two services that would share one
    (`fake_cell` and `fake-cell`)."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in services:
        obj = dns_name(name)
        if obj in seen:
            raise UsageError(
                f"services '{seen[obj]}' and '{name}' would both be named '{obj}' in "
                "Kubernetes (names are lower case, '_' becomes '-'): rename one of them in "
                "hippodrome.toml")
        if obj == BASE_NAME or obj.startswith(BASE_NAME + "-"):
            raise UsageError(
                f"service '{name}' would be named '{obj}', which the export keeps for its "
                f"own objects ({BASE_NAME}, {BASE_NAME}-...): rename it in hippodrome.toml")
        seen[obj] = name
        out[name] = obj
    return out


PORT_NAME_MAX = 15


def port_name(name: str, port: int, taken: set[str]) -> str:
    """A port's name, unique in its object (added to `taken`). Kubernetes refuses the
    whole object over a bad one (IANA_SVC_NAME: at most 15 lower-case letters, digits and
    single hyphens, alphanumeric at both ends, a letter in it), so every run of other
    characters, `_` and `-` alike, becomes one hyphen: `web-_api` -> `web-api`, never
    `web--api`."""
    short = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:PORT_NAME_MAX].strip("-")
    chosen = next(c for c in _port_names(short, port) if c not in taken)
    taken.add(chosen)
    return chosen


def _port_names(short: str, port: int) -> Iterator[str]:
    """The name from the service's, when it has a letter; then `p<port>`, `p<port>-2`,
    ... (two services can clean up to the same name: `a-b` and `a--b`)."""
    if re.search("[a-z]", short):
        yield short
    yield f"p{port}"
    yield from (f"p{port}-{n}" for n in itertools.count(2))


@dataclass(frozen=True)
class Identity:
    """What every object's labels say: the project, profile, table prefix, layout."""

    project: str
    profile: str
    table_prefix: str
    layout: str

    @classmethod
    def of(cls, project_root: Path, profile: str, table_prefix: str,
           layout: str) -> Identity:
        return cls(label_value(project_root.name) or "project", profile, table_prefix, layout)

    def labels(self, service: str | None = None) -> dict[str, str]:
        out = {
            "app.kubernetes.io/name": BASE_NAME,
            "app.kubernetes.io/managed-by": "hippodrome",
            PROJECT_LABEL: self.project,
            PROFILE_LABEL: label_value(self.profile),
            PREFIX_LABEL: label_value(self.table_prefix) or "none",
            LAYOUT_LABEL: self.layout,
        }
        if service is not None:
            out["app.kubernetes.io/component"] = label_value(service)
            out[SERVICE_LABEL] = label_value(service)
        return out

    def selector(self, service: str | None = None) -> dict[str, str]:
        """The labels a Deployment's pods are matched by (a subset of `labels`)."""
        keys = (PROJECT_LABEL, PREFIX_LABEL, LAYOUT_LABEL)
        out = {k: v for k, v in self.labels().items() if k in keys}
        if service is not None:
            out[SERVICE_LABEL] = label_value(service)
        return out

    def metadata(self, name: str, namespace: str, service: str | None = None,
                 annotations: Mapping[str, str] | None = None) -> dict[str, object]:
        meta: dict[str, object] = {"name": name}
        if namespace:
            meta["namespace"] = namespace
        meta["labels"] = self.labels(service)
        meta["annotations"] = {PREFIX_ANNOTATION: self.table_prefix, **(annotations or {})}
        return meta

    @property
    def clean_up_selector(self) -> str:
        return f"{PROJECT_LABEL}={self.project},{PREFIX_LABEL}={self.labels()[PREFIX_LABEL]}"
