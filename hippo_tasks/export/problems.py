"""What a cluster cannot run as written, named with what to do.

Each rule reads one service of the stack as written (the spec) and says whether a pod
made from the image could run it. A problem either leaves the service out (with the
services that need it), or, where the service still works without the feature (a
`watch` glob: no hot reload in a cluster), only drops the feature. Without
`--allow-partial` any problem stops the export; with it, each is a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hippo_tasks.errors import UsageError
from hippo_tasks.model.spec import ServiceSpec

PYTHON_VAR = "${python}"


@dataclass(frozen=True)
class Problem:
    service: str
    what: str
    fix: str
    feature: str = ""
    """Set when only this feature is lost (with --allow-partial the service is exported
    without it); empty when the service itself cannot run."""

    @property
    def drops_service(self) -> bool:
        return not self.feature

    def line(self) -> str:
        return f"'{self.service}' {self.what}: {self.fix}"


class UnsupportedStackError(UsageError):
    """Services a cluster cannot run; every one named, with what to do (exit 2)."""

    def __init__(self, problem: str, problems: Sequence[Problem] = (),
                 left_out: Mapping[str, str] | None = None) -> None:
        super().__init__(problem)
        self.problems = problems
        self.left_out = left_out
        """Set when --allow-partial was given and left every service out."""

    def message(self) -> str:
        if self.left_out is not None:
            return self._nothing_left(self.left_out)
        lines = [f"  - {p.line()}" for p in self.problems]
        return ("cannot export this stack as it is:\n" + "\n".join(lines) + "\n"
                "Fix these in hippodrome.toml (or switch the services off for the export "
                "with [services.NAME] enabled = false), or pass --allow-partial to export "
                "the rest (the services left out, and what needs them, are listed).")

    def _nothing_left(self, left_out: Mapping[str, str]) -> str:
        """--allow-partial was given: advice to pass it would loop, so say that it left
        nothing, with why each service is out."""
        lines = [f"  - {p.line()}" for p in self.problems if p.drops_service]
        own = {p.service for p in self.problems if p.drops_service}
        lines += [f"  - '{name}' {why}" for name, why in left_out.items() if name not in own]
        return ("--allow-partial leaves nothing to export: a cluster can run none of the "
                "selected services as written:\n" + "\n".join(lines) + "\n"
                "Fix these in hippodrome.toml and export again.")


def _command(svc: ServiceSpec) -> Problem | None:
    argv = svc.command
    if not argv:
        return Problem(svc.name, "has no command", "give it command = [...], or mark it "
                       "external = true if something outside the cluster provides it")
    program = argv[0]
    if program == PYTHON_VAR:
        if len(argv) > 1 and argv[1] in ("-m", "-c"):
            return None
        script = argv[1] if len(argv) > 1 else ""
        return Problem(svc.name, f"runs the script {script!r} from the project tree, which "
                       "the image does not have", "make it a module of a package the image "
                       "holds and run it as [\"${python}\", \"-m\", \"package.module\"] (an "
                       "image of your own: FROM the Hippodrome image, pip install your "
                       "package into it, --image REF)")
    if program.startswith("/"):
        return None  # a file of the image (`shell = ...` runs /bin/sh -c)
    kind = "relative path" if "/" in program else "program name looked up on PATH"
    return Problem(svc.name, f"runs {program!r} (a {kind}), which the image cannot be "
                   "shown to have", "write the absolute path of the program inside the "
                   "image (e.g. \"/usr/bin/node\"), in an image of your own that has it "
                   "(--image REF), or run it as a Python module with ${python} -m")


def _cwd(svc: ServiceSpec) -> Problem | None:
    if svc.cwd in (".", "", "${project_root}"):
        return None
    return Problem(svc.name, f"runs in cwd = {svc.cwd!r}, a folder of the project tree, "
                   "which the image does not have", "drop cwd (commands run in the project "
                   "root, /srv/hippodrome in the image) and pass paths as arguments")


def _setup(svc: ServiceSpec) -> Problem | None:
    if svc.setup is None:
        return None
    return Problem(svc.name, f"has a setup step ({' '.join(svc.setup.command)}) that "
                   "prepares the project tree", "do that step when building your image "
                   "(a RUN line) and remove setup from the service")


def _env_file(svc: ServiceSpec) -> Problem | None:
    if not svc.env_file:
        return None
    return Problem(svc.name, f"reads env_file {', '.join(svc.env_file)} from the project "
                   "tree", "put those variables in a Secret named hippodrome-env and write "
                   "them as env = { NAME = \"${env:NAME}\" }: the export turns each into "
                   "a reference to that Secret")


def _watch(svc: ServiceSpec) -> Problem | None:
    if not svc.watch:
        return None
    return Problem(svc.name, f"has watch = {list(svc.watch)} (hot reload of the project "
                   "tree)", "a cluster runs the image, where nothing changes: remove "
                   "watch (or --allow-partial exports the service without it)",
                   feature="watch")


RULES = (_command, _cwd, _setup, _env_file, _watch)
"""One function per thing a cluster cannot do; adding a rule is one function here."""
DAEMON_DOES = frozenset({_watch})
"""What the stack layout's pod does as a laptop does, its daemon running the stack file
as written: it watches its project volume. `--allow-partial` said "exported without
watch" of a service the pod went on hot-reloading (adv49 B/1)."""


def problems_of(services: Iterable[ServiceSpec], layout: str = "services") -> list[Problem]:
    rules = [rule for rule in RULES if layout != "stack" or rule not in DAEMON_DOES]
    found: list[Problem] = []
    for svc in services:
        if svc.external:
            continue  # not started anywhere: only its port is probed
        found.extend(p for rule in rules if (p := rule(svc)) is not None)
    return found


def left_out(problems: Iterable[Problem],
             depends_on: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Service -> why it is left out: each with a dropping problem, then every service
    that needs one of them, transitively."""
    out = {p.service: p.what for p in problems if p.drops_service}
    changed = True
    while changed:
        changed = False
        for name, deps in depends_on.items():
            if name in out:
                continue
            gone = [d for d in deps if d in out]
            if gone:
                out[name] = f"depends on '{gone[0]}', which is left out"
                changed = True
    return out
