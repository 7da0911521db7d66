"""Shared by the export tests: build manifests for a project folder as the CLI does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from hippo_tasks.export.pipeline import Manifests, Request, build
from hippo_tasks.tasks.context import build_options

K8S_VERSION = kubernetes_validate.latest_version()


def export(root: Path, *, profile: str = "core", cell: str = "local", layout: str = "stack",
           only: str | None = None, offset: int = 0, seed: bool = True,
           allow_partial: bool = False,
           namespace: str = "", image: str = "hippodrome:latest",
           said: list[str] | None = None, table_prefix: str = "") -> Manifests:
    opts = build_options(root=root, profile=profile, cell=cell, table_prefix=table_prefix,
                         only=only,
                         offset=offset, skip=() if seed else ("seed",))
    sink = said if said is not None else []
    return build(Request(opts, layout, namespace, image, allow_partial), sink.append)


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def validate_all(text: str) -> int:
    """Validate every document strictly against the bundled schemas; how many."""
    docs = documents(text)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    return len(docs)


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def k8s_expand(text: str, defined: dict[str, str]) -> str:
    """What a container sees of a manifest's command, args or env value: a port of
    Kubernetes' `$(VAR)` expansion (k8s.io/kubernetes third_party/forked/golang/
    expansion): `$$` is `$`, `$(NAME)` a defined variable's value (left as written when
    NAME is not defined), `$(` without `)` and `$` before anything else stay as they are."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
            continue
        after = text[i + 1]
        close = text.find(")", i + 2) if after == "(" else -1
        if after == "$":
            out.append("$")
        elif close != -1:
            name = text[i + 2:close]
            out.append(defined.get(name, f"$({name})"))
            i = close + 1
            continue
        else:
            out.append("$" + after)
        i += 2
    return "".join(out)
