"""The stack as data: what a stack file says, validated, before any choice of profile.

These types are frozen so that a loaded stack can be shared by the daemon, the CLI and
the tests without anyone changing it under the others. They are NamedTuples, not frozen
dataclasses: every `hd up` makes these classes before its first service can start, and
a frozen dataclass takes ~0.6 ms to make (it compiles its methods), a NamedTuple ~0.1.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

ReadinessKind = Literal["http", "tcp", "log", "none"]
ServiceKind = Literal["service", "job"]
Condition = Literal["started", "healthy", "completed_successfully"]
"""What a dependant waits for (compose's names, without the `service_` prefix). The
default is "healthy" for a service and "completed_successfully" for a job."""

DEFAULT_PROFILE = "core"
DEFAULT_CELL = "local"
"""What `up` chooses without --profile / --cell (DESIGN section 1). Which other profiles
and cells exist, and which service stands in for a cell, is stack-file data
(`[profiles.NAME]`, `[cells.NAME]`): the orchestrator knows no platform's names."""


class Readiness(NamedTuple):
    """How to tell that a service is ready; `value` is the path, or the log regex."""

    kind: ReadinessKind
    value: str = ""

    def describe(self) -> str:
        if self.kind == "http":
            return f"http {self.value}"
        if self.kind == "log":
            return f"log /{self.value}/"
        return self.kind


SETUP_TIMEOUT = 600.0
"""Seconds a setup step may take (`npm ci` on a slow network takes minutes) before it
is ended and the service failed: a step that never ended held `hd up` for ever."""


class SetupStep(NamedTuple):
    """Runs once before a service's first start, when `creates` does not exist."""

    command: tuple[str, ...]
    creates: str
    timeout: float = SETUP_TIMEOUT


class ServiceSpec(NamedTuple):
    name: str
    command: tuple[str, ...] = ()
    port: int | None = None
    cwd: str = "."
    env: tuple[tuple[str, str], ...] = ()
    profiles: tuple[str, ...] = (DEFAULT_PROFILE,)
    """The loader fills in every declared profile when the file names none."""
    cells: tuple[str, ...] = (DEFAULT_CELL,)
    """The loader fills in every declared cell when the file names none."""
    depends_on: tuple[str, ...] = ()
    readiness: Readiness = Readiness("none")
    start_timeout: float = 30.0
    stop_timeout: float = 5.0
    blocking: bool = True
    auto_restart: bool = True
    max_restarts: int = 5
    external: bool = False
    external_in: tuple[str, ...] = ()
    """Profiles in which the service is external (probed, not started)."""
    watch: tuple[str, ...] = ()
    kind: ServiceKind = "service"
    setup: SetupStep | None = None
    enabled: bool = True
    description: str = ""
    source: str = ""
    stop_signal: str = "SIGTERM"
    """What stopping sends first, to every process of the service (SIGKILL follows at
    `stop_timeout`)."""
    restart_cascades: bool = False
    """Its state lives only in its process (moto's tables and queues): ready again after
    any restart, a crash's included, what depends on it restarts too, as `--cascade`,
    so the jobs that filled it run again."""
    env_file: tuple[str, ...] = ()
    """Files of NAME=value lines, relative to the project root; later files win, and
    `env` wins over them all."""
    conditions: tuple[tuple[str, Condition], ...] = ()
    """depends_on entries that named a condition other than the default."""
    command_field: str = "command"
    """The field `command` was written as: `shell` for `shell = "..."`, so an error in
    it names the field the file has (it said 'command', adv42 T/3)."""

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


class Route(NamedTuple):
    """Webhook routing: events whose detail-type starts with the prefix go to the service."""

    detail_type_prefix: str
    service: str
    path: str = "/events"


class CellSpec(NamedTuple):
    """A cell `--cell NAME` may choose. Its URL (`${cell_url}`) is, in this order:
    HIPPODROME_CELL_URL_{NAME}, the URL of the `stand_in` service (one the stack runs
    in place of the real cell), or `url`."""

    name: str
    url: str = ""
    stand_in: str = ""
    description: str = ""


class CommandSpec(NamedTuple):
    """A program the platform offers for a running stack (`hd seed`, `hd probes`):
    run from the CLI, not supervised, with the stack's env contract (`[env]`, rendered
    for the running stack's profile, cell, table prefix and port offset) plus its own."""

    name: str
    command: tuple[str, ...]
    description: str = ""
    cwd: str = "."
    env: tuple[tuple[str, str], ...] = ()
    source: str = ""


class StackSettings(NamedTuple):
    defaults: bool = True
    dashboard_port: int = 9000
    log_runs_kept: int = 10
    liveness_interval: float = 10.0
    liveness_failures: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    log_buffer_lines: int = 5000


class StackSpec(NamedTuple):
    settings: StackSettings
    services: tuple[ServiceSpec, ...]
    routes: tuple[Route, ...] = ()
    cell_urls: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    """Variables every service gets (its own `env` wins)."""
    files: tuple[str, ...] = ()
    profiles: tuple[str, ...] = (DEFAULT_PROFILE,)
    """Declared profiles in file order (the default one first if none declares it): a
    service that names no profiles is in each of these."""
    cells: tuple[CellSpec, ...] = (CellSpec(DEFAULT_CELL),)
    commands: tuple[CommandSpec, ...] = ()
    file_stamp: str | None = None
    """The project's stack file as stat'ed just before it was read
    (project.stack_file_stamp): taken later, an edit in between went unnoticed."""

    @property
    def cell_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cells)

    def cell(self, name: str) -> CellSpec:
        for cell in self.cells:
            if cell.name == name:
                return cell
        raise KeyError(name)

    def command(self, name: str) -> CommandSpec:
        for cmd in self.commands:
            if cmd.name == name:
                return cmd
        raise KeyError(name)

    def service(self, name: str) -> ServiceSpec:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)
