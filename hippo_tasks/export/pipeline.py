"""From `up`'s options to the manifest text: load, plan in the image, check, build.

The one entry point the task (and the tests) call; pure but for reading the stack
file, so every error is raised before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hippo_tasks.errors import StackFileError, UsageError, check_utf8
from hippo_tasks.export import objects as O
from hippo_tasks.export import services_layout, stack_layout
from hippo_tasks.export.naming import Identity, check_namespace
from hippo_tasks.export.target import ImagePlan, build_image_plan
from hippo_tasks.export.yamlout import dump_all
from hippo_tasks.model.loader import PROJECT_FILE, load_stack
from hippo_tasks.model.plan import Options

LAYOUTS = ("stack", "services")
DEFAULT_IMAGE = "hippodrome:latest"
"""What the README's `docker build -t hippodrome .` makes; a cluster needs --image with
a registry it can pull from."""
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_REGISTRY = (rf"(?=[^/]*[.:]|localhost/)(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9A-Fa-f:]+\])"
             r"(?::[0-9]+)?")
_IMAGE_REF = re.compile(
    rf"(?P<name>(?:{_REGISTRY}/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")
"""An image reference as the container runtimes' grammar has it (distribution/reference):
a registry only where the first part has a `.` or `:` or is `localhost`, a repository in
lower case, a tag of at most 128 characters, a digest of hex. A looser pattern let
`Hippodrome:latest` or `hd:-bad` through, to be refused by the cluster at pull time."""


@dataclass(frozen=True)
class Request:
    options: Options
    """Exactly what `up` would build from the same flags (tasks.context.build_options)."""
    layout: str = "stack"
    namespace: str = ""
    image: str = DEFAULT_IMAGE
    allow_partial: bool = False


@dataclass(frozen=True)
class Manifests:
    objects: tuple[O.Obj, ...]
    text: str
    image_plan: ImagePlan
    where: O.Where

    @property
    def namespace(self) -> str:
        return self.where.namespace


CLEAN_UP_KINDS = "all,pvc,configmap,secret,serviceaccount,role,rolebinding"
"""What an export makes besides its Namespace, for a clean-up by label within one."""


def default_namespace(table_prefix: str) -> str:
    """One namespace per branch: the table prefix as a namespace name (`dev-main-` ->
    `dev-main`)."""
    name = re.sub(r"[^a-z0-9-]+", "-", table_prefix.lower()).strip("-")[:63].strip("-")
    return name or "hippodrome"


def text_inputs(req: Request) -> dict[str, str]:
    """What the manifests hold as given: the flags, and the cell's URL from the
    environment (`${env:NAME}` values are Secret references, never text here)."""
    opts = req.options
    cell_url = f"HIPPODROME_CELL_URL_{opts.cell.upper()}"
    return {"--layout": req.layout, "--profile": opts.profile, "--cell": opts.cell,
            "--table-prefix": opts.table_prefix, "--only": ",".join(opts.only),
            "--namespace": req.namespace, "--image": req.image,
            cell_url: opts.env.get(cell_url, "")}


def check_request(req: Request) -> None:
    for name, value in text_inputs(req).items():
        check_utf8(name, value, "the manifests must be")
    if req.layout not in LAYOUTS:
        raise UsageError(f"--layout {req.layout!r}: choose one of {', '.join(LAYOUTS)} "
                         "(stack: the whole stack in one pod; services: a pod per service)")
    ref = _IMAGE_REF.fullmatch(req.image)
    if ref is None or len(ref.group("name")) > 255:
        raise UsageError(f"--image {req.image!r} is not an image reference (e.g. "
                         "registry.example.com/team/hippodrome:my-branch)")
    check_namespace(req.namespace)


def project_file_text(root: Path) -> str | None:
    path = root / PROJECT_FILE
    if not path.is_file():
        return None
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # load_stack said the same first
        raise StackFileError(str(path), f"cannot be read: {exc}") from exc


def build(req: Request, say: Callable[[str], None]) -> Manifests:
    check_request(req)
    opts = req.options
    spec = load_stack(opts.project_root)
    image_plan = build_image_plan(spec, opts, req.allow_partial, say, req.layout)
    namespace = req.namespace or check_namespace(default_namespace(opts.table_prefix),
                                                 opts.table_prefix)
    ident = Identity.of(opts.project_root, opts.profile, opts.table_prefix, req.layout)
    where = O.Where(ident, namespace, req.image)
    if req.layout == "stack":
        objects = stack_layout.build(image_plan, where, project_file_text(opts.project_root))
    else:
        objects = services_layout.build(image_plan, where, say)
    header = (f"hd export k8s --layout {req.layout} --profile {opts.profile} --cell "
              f"{opts.cell} (table prefix {opts.table_prefix}, image {req.image})\n"
              f"apply: kubectl apply -f THIS_FILE\n"
              f"clean up: kubectl delete namespace {namespace}   (or, in a namespace that "
              f"holds other work too: kubectl delete {CLEAN_UP_KINDS} -n {namespace} -l "
              f"{ident.clean_up_selector})")
    return Manifests(tuple(objects), dump_all(objects, header), image_plan, where)
