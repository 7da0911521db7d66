"""`hd export k8s` (`hd export.k8s`): Kubernetes manifests for the same stack file
and options as `up`, thin over `hippo_tasks.export`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hippo_tasks.errors import ProductionGuardError, UsageError
from hippo_tasks.tasks.context import build_options, resolve_root
from hippo_tasks.tasks.declare import task
from hippo_tasks.tasks.flags import no_empty
from hippo_tasks.tasks.lifecycle import UP_HELP
from hippo_tasks.tasks.output import RED, handles_errors, paint

if TYPE_CHECKING:
    from invoke.context import Context

K8S_HELP = {
    "output": "folder for the manifests (default ./k8s); writes <layout>.yaml there",
    "profile": UP_HELP["profile"],
    "cell": UP_HELP["cell"],
    "table-prefix": UP_HELP["table-prefix"],
    "project-root": UP_HELP["project-root"],
    "only": "comma-separated services (with what they depend on); long only here: -o is "
            "--output",
    "port-offset": UP_HELP["port-offset"],
    "seed": "include the seed job (--no-seed to leave it out, as `up --no-seed`)",
    "layout": "stack (default: the whole stack in one pod, `hd up` inside) | services "
              "(a Deployment or Job per service)",
    "namespace": "namespace of every object (default: the table prefix, dev-BRANCH)",
    "image": "the Hippodrome image the cluster pulls (default hippodrome:latest)",
    "allow-partial": "leave out what a cluster cannot run (named), instead of failing",
    "yes": "confirm --cell prod when stdin is not a terminal",
}


@task(help=K8S_HELP)
@handles_errors
def k8s(c: Context, output: str = "k8s", profile: str = "core", cell: str = "local",
        table_prefix: str = "", project_root: str | None = None, only: str | None = None,
        port_offset: str | None = None, seed: bool = True, layout: str = "stack",
        namespace: str | None = None, image: str | None = None, allow_partial: bool = False,
        yes: bool = False) -> None:
    """Write Kubernetes manifests for the same stack and options as `up`."""
    from hippo_tasks.export.pipeline import CLEAN_UP_KINDS, DEFAULT_IMAGE, Request, build
    from hippo_tasks.export.write import write_manifests

    if cell == "prod":
        print(paint("WARNING: Connecting to PRODUCTION cell!", RED, sys.stderr),
              file=sys.stderr)
        if not yes and not sys.stdin.isatty():
            raise ProductionGuardError()
    if not output.strip():  # a script's unset variable wrote into the current folder
        raise UsageError(f"--output {output!r} names no path: give a file or folder, or "
                         "leave the flag out for ./k8s")
    no_empty("--namespace", namespace, "give one, or leave the flag out for the table "
                                       "prefix's")
    no_empty("--image", image, "give one, or leave the flag out for hippodrome:latest")
    root = resolve_root(project_root)
    _not_hippodromes_own(Path(output), root)
    opts = build_options(root=root, profile=profile, cell=cell, table_prefix=table_prefix,
                         only=only, offset=port_offset, skip=() if seed else ("seed",))

    def warn(line: str) -> None:
        print(f"hippodrome | warning: {line}", file=sys.stderr, flush=True)

    made = build(Request(opts, layout, namespace or "", image or DEFAULT_IMAGE,
                         allow_partial), warn)
    path = write_manifests(Path(output), layout, made.text)
    kinds: dict[str, int] = {}
    for obj in made.objects:
        kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in kinds.items())
    print(f"hippodrome | wrote {path}: {summary} (namespace {made.namespace})")
    print(f"hippodrome | apply: kubectl apply -f {path}")
    if namespace:  # given: it may hold other work, which deleting it would take too
        print(f"hippodrome | clean up: kubectl delete {CLEAN_UP_KINDS} -n {made.namespace} "
              f"-l {made.where.ident.clean_up_selector} (the namespace was given with "
              f"--namespace: `kubectl delete namespace {made.namespace}` would delete "
              "everything else in it too)")
    else:
        print(f"hippodrome | clean up: kubectl delete namespace {made.namespace}")


def collection() -> Any:
    from invoke.collection import Collection

    from hippo_tasks.tasks.declare import as_task

    ns = Collection("export")
    ns.add_task(as_task(k8s), "k8s")
    return ns


def _not_hippodromes_own(output: Path, root: Path) -> None:
    """`-o hippodrome.toml` in a folder running the bundled stack made a folder of that
    name, and every `hd` command there then refused it, exit 3 (adv59); `.hippodrome`
    and `.logs` are Hippodrome's own."""
    out = output.expanduser().absolute()
    for name, what in (("hippodrome.toml", "the stack file's name: a folder there would "
                                           "stop every hd command here"),
                       (".hippodrome", "Hippodrome's own state folder"),
                       (".logs", "Hippodrome's own log folder")):
        own = root / name
        if out == own or own in out.parents:
            raise UsageError(f"-o {output}: {own} is {what}; choose another folder (the "
                             "default is ./k8s); nothing was written")
