"""The plan as the image runs it: the same stack file and options as `up`, with the
image's paths (project root /srv/hippodrome, `${python}` the services PEX, services on
0.0.0.0), and `${env:NAME}` left as a reference the cluster fills from a Secret.

Everything here goes through the model's public API (load_stack, build_plan), so the
export selects, orders and renders exactly as `up` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hippo_tasks.errors import UsageError
from hippo_tasks.export.problems import Problem, UnsupportedStackError, left_out, problems_of
from hippo_tasks.model.plan import Options, StackPlan, build_plan
from hippo_tasks.model.spec import ServiceSpec, StackSpec

IMAGE_PEX_DIR = "/opt/hippodrome/pex"
IMAGE_SRC_DIR = "/srv/hippodrome"
IMAGE_PYTHON = f"{IMAGE_PEX_DIR}/services.pex"
IMAGE_USER = 10001
"""What the Dockerfile sets up: where the PEX files are, the project root, its user."""

_ENV_REF = re.compile(r"\$(\$|\{env:([A-Za-z0-9_.-]+)\})")
_MARK = "\x00hd-env:"


@dataclass(frozen=True)
class ImagePlan:
    """The plan in the image, what was left out of it and why, and the problems that
    only cost a feature (watch)."""

    plan: StackPlan
    spec: StackSpec
    env_refs: tuple[str, ...]
    """Variables named by `${env:NAME}`: each comes from the Secret, never inline."""
    left_out: Mapping[str, str]
    warnings: tuple[str, ...]


def env_refs(texts: Iterable[str]) -> list[str]:
    """The NAMEs of `${env:NAME}` in stack-file strings (`$${env:X}` is literal text)."""
    names: list[str] = []
    for text in texts:
        for match in _ENV_REF.finditer(text):
            if match.group(2) and match.group(2) not in names:
                names.append(match.group(2))
    return names


def _raw_strings(spec: StackSpec, svc: ServiceSpec) -> list[str]:
    setup = list(svc.setup.command) + [svc.setup.creates] if svc.setup else []
    return [*svc.command, svc.cwd, *(v for _, v in svc.env), *svc.env_file, *setup,
            *(v for _, v in spec.env)]


def image_options(opts: Options, refs: Iterable[str]) -> Options:
    """`up`'s options, moved into the image: its paths, its interpreter, and an
    environment holding only what the image's `hd up` would see."""
    env = {"HIPPODROME_PEX_DIR": IMAGE_PEX_DIR, "HIPPODROME_SRC_DIR": IMAGE_SRC_DIR}
    cell_url = f"HIPPODROME_CELL_URL_{opts.cell.upper()}"
    if opts.env.get(cell_url):
        env[cell_url] = opts.env[cell_url]
    env.update({name: f"{_MARK}{name}\x00" for name in refs})
    return opts._replace(project_root=Path(IMAGE_SRC_DIR), python=IMAGE_PYTHON,
                               env=env)


def k8s_text(text: str) -> str:
    """A rendered string as Kubernetes reads command, args and env values, where `$(NAME)`
    expands a variable and `$$` is one `$`: so every literal `$` is written `$$` (only
    `$(` once was, and `pa$$word` reached the container as `pa$word`), and each
    `${env:NAME}` becomes `$(NAME)` (filled from the Secret). Every `$` doubled, not
    just those before `(` or `$`: a literal `$` right before a `${env:NAME}` is followed
    by `$(NAME)` only once that is written."""
    escaped = text.replace("$", "$$")
    return re.sub(f"{_MARK}([A-Za-z0-9_.-]+)\x00", r"$(\1)", escaped)


def refs_in(texts: Iterable[str]) -> list[str]:
    """The `${env:NAME}` references left in rendered strings, by NAME."""
    found: list[str] = []
    for text in texts:
        for name in re.findall(f"{_MARK}([A-Za-z0-9_.-]+)\x00", text):
            if name not in found:
                found.append(name)
    return found


def build_image_plan(spec: StackSpec, opts: Options, allow_partial: bool,
                     say: Callable[[str], None], layout: str = "services") -> ImagePlan:
    """Select and render as `up` would; raise UnsupportedStackError for what a cluster
    cannot run, unless `allow_partial`, where those services are left out (with what
    needs them) and each is said."""
    # env_file is read at plan time, from the project tree; a cluster has none, so the
    # rule in problems.py reports it and the plan is built without it.
    bare = spec._replace(services=tuple(
        s._replace(env_file=()) for s in spec.services))
    all_refs = env_refs(t for s in spec.services for t in _raw_strings(spec, s))
    first = build_plan(bare, image_options(opts, all_refs))
    written = {s.name: spec.service(s.name) for s in first.services}
    problems = problems_of((s._replace(external=p.spec.external)
                            for p in first.services for s in [written[p.name]]), layout)
    if problems and not allow_partial:
        raise UnsupportedStackError("unsupported stack", problems)
    dropped = left_out(problems, {s.name: s.depends_on for s in first.services})
    warnings = [f"left out '{name}': {why}" for name, why in dropped.items()]
    warnings += [f"'{p.service}' exported without {p.feature}: it {p.what}"
                 for p in problems if not p.drops_service and p.service not in dropped]
    plan = first
    if dropped:
        only = tuple(n for n in opts.only if n not in dropped)
        if opts.only and not only:
            raise UsageError("--only names only services that are left out: "
                             + _listing(problems))
        kept = [s.name for s in first.services if s.name not in dropped]
        if not kept:
            raise UnsupportedStackError("nothing left", problems, dropped)
        plan = build_plan(bare, image_options(opts, all_refs)._replace(
            only=only, skip=(*opts.skip, *dropped)))
    for line in warnings:
        say(line)
    names = {s.name for s in plan.services}
    refs = env_refs(t for s in spec.services if s.name in names
                    for t in _raw_strings(spec, s))
    return ImagePlan(plan, spec, tuple(refs), dropped, tuple(warnings))


def _listing(problems: Iterable[Problem]) -> str:
    return "; ".join(p.line() for p in problems)
