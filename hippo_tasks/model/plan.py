"""From a StackSpec and the user's choices to the exact processes to run.

Selection (profile, cell, `--only`, enabled) and rendering (`${...}` variables in
commands, env and cwd; the port offset) happen here, in pure code, so the daemon, the
CLI's pre-flight and the tests all see the same plan.

Variables: `${python}`, `${port}` (this service's), `${port:NAME}`, `${url:NAME}`,
`${host}`, `${project_root}`, `${state_dir}`, `${logs_dir}`, `${table_prefix}`,
`${cell}`, `${cell_url}`, `${profile}`, `${dashboard_port}`, `${dashboard_url}`,
`${random_seed}`, `${bind_host}` (where services listen: 127.0.0.1, or 0.0.0.0 in Docker
mode or with HIPPODROME_BIND_HOST), `${env:NAME}`; `$$` is a literal `$`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from hippo_tasks.errors import StackFileError, UsageError, close_hint
from hippo_tasks.model.envfile import read_env_file
from hippo_tasks.model.globs import literal_folders
from hippo_tasks.model.graph import topo_order
from hippo_tasks.model.project import STAMP_PARTS, file_stamp
from hippo_tasks.model.spec import Readiness, Route, ServiceSpec, StackSettings, StackSpec
from hippo_tasks.terminal_text import as_typed

HOST = "127.0.0.1"
_VAR = re.compile(
    r"\$(\$|\{([a-z_]+)(?::([A-Za-z0-9_.-]+))?\}|\{(?:[a-z_]+|\s|\}|$|[^A-Za-z0-9_@*#?$!-]))")
"""`$$`, `${name}` or `${name:arg}`; last, a `${` that is none of them (`${name` unclosed
or with another reference inside, `${}`, `${ name}`, a `${` at the end, a `${` before
what no shell takes as a parameter either: `${:python}`, `${.port}`, `${é}`), an error
rather than text passed on as it is. What a shell reads as one (`${HOME}`, `${1}`,
`${#}`, `${-}`, `${!name}`) is left to the shell."""


class Options(NamedTuple):
    """The user's choices for one `up`; everything a plan depends on besides the stack."""

    project_root: Path
    profile: str = "core"
    cell: str = "local"
    table_prefix: str = "dev-local-"
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    """Services left out whatever the profile (`--no-seed` leaves out the seed job)."""
    port_offset: int = 0
    random_seed: int = 42
    python: str = "python3"
    env: Mapping[str, str] = MappingProxyType({})
    record_events: bool = True
    """Record webhook deliveries to .hippodrome/events/ (`up --no-record` turns it off)."""
    up_started: float | None = None
    """When the `up` that starts the stack was given (store.identity), so that a `down`
    given before it, reaching the lifecycle lock after it, leaves its stack running."""


class PlannedService(NamedTuple):
    spec: ServiceSpec
    port: int | None
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    depends_on: tuple[str, ...]
    setup_argv: tuple[str, ...] = ()
    setup_creates: Path | None = None
    left_out: tuple[tuple[str, str], ...] = ()
    """Dependencies its depends_on names that this run leaves out, each with why."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def readiness(self) -> Readiness:
        return self.spec.readiness

    @property
    def url(self) -> str | None:
        return f"http://{HOST}:{self.port}" if self.port else None


class PlannedRoute(NamedTuple):
    route: Route
    port: int | None

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"


class StackPlan(NamedTuple):
    options: Options
    settings: StackSettings
    dashboard_port: int
    services: tuple[PlannedService, ...]
    routes: tuple[PlannedRoute, ...]
    file_stamp: str | None = None
    """StackSpec.file_stamp: the stack file this plan was read from."""
    left_out: tuple[tuple[str, str], ...] = ()
    """The stack file's services not in this run, each with why_left_out's reason."""

    def service(self, name: str) -> PlannedService:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)

    @property
    def dashboard_url(self) -> str:
        return dashboard_url(self.options, self.dashboard_port)


def _selected(spec: StackSpec, opts: Options) -> list[ServiceSpec]:
    from hippo_tasks.model.loader import known_profiles

    profiles = known_profiles(spec)
    if opts.profile not in profiles:
        raise UsageError(f"unknown profile '{as_typed(opts.profile)}'; choose one of "
                         f"{', '.join(profiles)}")
    if opts.cell not in spec.cell_names:
        raise UsageError(f"unknown cell '{as_typed(opts.cell)}'; choose one of "
                         f"{', '.join(spec.cell_names)}")
    chosen = [
        s for s in spec.services
        if s.enabled and opts.profile in s.profiles and opts.cell in s.cells
        and s.name not in opts.skip
    ]
    chosen = [s._replace(external=True) if opts.profile in s.external_in else s
              for s in chosen]
    if not opts.only:
        return chosen
    by_name = {s.name: s for s in chosen}
    for name in opts.only:
        shown = as_typed(name)  # a byte that is not UTF-8 as typed, not `\udce9`
        if name in opts.skip:  # `--only seed --no-seed`: the seed is in the profile
            raise UsageError(f"--only names '{shown}', which --no-seed leaves out: drop one "
                             "of the two")
        if name not in by_name:
            spec_of = next((s for s in spec.services if s.name == name), None)
            if spec_of is not None and not spec_of.enabled:  # it blamed the profile (s/4)
                raise UsageError(f"--only names '{shown}', which is switched off with enabled "
                                 "= false in the stack file: set enabled = true (or remove "
                                 "that line) to run it")
            raise UsageError(
                f"--only names '{shown}', which is not in profile '{opts.profile}' with cell "
                f"'{opts.cell}' (selected: {', '.join(by_name) or 'none'})"
            )
    keep: set[str] = set()

    def add(name: str) -> None:
        if name in keep or name not in by_name:
            return
        keep.add(name)
        for dep in by_name[name].depends_on:
            add(dep)

    for name in opts.only:
        add(name)
    return [s for s in chosen if s.name in keep]


def cell_url_variable(cell: str) -> str:
    """The environment variable that gives a cell without a stand-in its URL."""
    return f"HIPPODROME_CELL_URL_{cell.upper()}"


def given_cell_url(opts: Options) -> str | None:
    """The cell's URL as the environment gave it (what the daemon keeps for `hd seed`
    from a shell without it); None when the stack file or a stand-in gives it."""
    return opts.env.get(cell_url_variable(opts.cell)) or None


def _cell_url(spec: StackSpec, opts: Options, ports: Mapping[str, int]) -> str:
    """A cell with a stand-in service is that service (its `cells` keep it to that
    cell); any other is reached at a URL from the environment or the stack file."""
    cell = spec.cell(opts.cell)
    if cell.stand_in:
        port = ports.get(cell.stand_in)
        return f"http://{HOST}:{port}" if port else ""
    return given_cell_url(opts) or cell.url


def all_ports(spec: StackSpec, opts: Options) -> dict[str, int]:
    """Ports of every service, selected or not, so ${url:x} of a skipped one still
    renders; checked to stay real ports once shifted."""
    ports = {s.name: s.port + opts.port_offset for s in spec.services if s.port is not None}
    _check_shifted_ports(spec, opts, ports, spec.settings.dashboard_port + opts.port_offset)
    return ports


def base_vars(spec: StackSpec, opts: Options, ports: Mapping[str, int]) -> dict[str, str]:
    """The `${...}` variables that are the same for every service and command."""
    root = opts.project_root
    dashboard_port = spec.settings.dashboard_port + opts.port_offset
    return {
        "python": opts.python,
        "host": HOST,
        "project_root": str(root),
        "state_dir": str(root / ".hippodrome" / "state"),
        "logs_dir": str(root / ".logs" / "latest"),
        "table_prefix": opts.table_prefix,
        "cell": opts.cell,
        "cell_url": _cell_url(spec, opts, ports),
        "profile": opts.profile,
        "dashboard_port": str(dashboard_port),
        "dashboard_url": dashboard_url(opts, dashboard_port),
        "random_seed": str(opts.random_seed),
        "bind_host": bind_host(opts.env),
        "port_offset": str(opts.port_offset),
    }


def cell_hint(spec: StackSpec) -> str:
    """For a missing cell URL: which cells a stand-in serves instead (it said "runs only
    with --cell X" of a stand-in that runs in every cell; adv49 B/6)."""
    runs = [f"{c.stand_in} "
            f"{'runs only' if spec.service(c.stand_in).cells == (c.name,) else 'stands in'}"
            f" with --cell {c.name}" for c in spec.cells if c.stand_in]
    return f" ({'; '.join(runs)})" if runs else ""


def build_plan(spec: StackSpec, opts: Options) -> StackPlan:
    chosen = _selected(spec, opts)
    ports = all_ports(spec, opts)
    dashboard_port = spec.settings.dashboard_port + opts.port_offset
    root = opts.project_root
    base = base_vars(spec, opts, ports)
    names = {s.name for s in chosen}
    everyone = tuple(s.name for s in spec.services)
    known = {s.name: s for s in spec.services}
    order = topo_order({s.name: [d for d in s.depends_on if d in names] for s in chosen})
    by_name = {s.name: s for s in chosen}
    planned = []
    env_stamps: dict[str, str | None] = {}
    taken = {ports[n]: n for n in names if n in ports}
    taken[dashboard_port] = ""
    for name in order:
        svc = by_name[name]
        render = Renderer(svc, base, ports, opts.env, everyone, cell_hint=cell_hint(spec),
                          taken=taken)
        cwd = root / render(svc.cwd, "cwd")
        _check_watch_folders(svc, root, cwd, render)
        setup_argv: tuple[str, ...] = ()
        creates = None
        if svc.setup is not None:
            setup_argv = tuple(render(a, "setup") for a in svc.setup.command)
            creates = cwd / render(svc.setup.creates, "setup")
        planned.append(
            PlannedService(
                spec=svc,
                port=ports.get(name),
                argv=tuple(render(a, svc.command_field) for a in svc.command),
                cwd=cwd,
                env={**_stack_env(spec, svc, render),
                     **_env_files(svc, root, render, env_stamps),
                     **{k: render(v, f"env.{k}") for k, v in svc.env}},
                depends_on=tuple(d for d in svc.depends_on if d in names),
                setup_argv=setup_argv,
                setup_creates=creates,
                left_out=tuple((d, why_left_out(known.get(d), opts))
                               for d in svc.depends_on if d not in names),
            )
        )
    routes = tuple(PlannedRoute(r, ports.get(r.service)) for r in spec.routes)
    stamp = spec.file_stamp
    if stamp is not None:
        stamp = STAMP_PARTS.join([stamp, *(f"{p}\t{s or ''}" for p, s in env_stamps.items())])
    return StackPlan(opts, spec.settings, dashboard_port, tuple(planned), routes,
                     stamp, tuple((s.name, why_left_out(s, opts))
                                            for s in spec.services if s.name not in names))


def why_left_out(dep: ServiceSpec | None, opts: Options) -> str:
    """Which choice left a service out of the run, named by what to change: a job
    switched off with `enabled = false` was said to be "left out of profile core"."""
    if dep is None:
        return "not a service of the stack"
    if not dep.enabled:
        return "switched off with enabled = false"
    if dep.name in opts.skip:
        return "left out by --no-seed"
    if opts.profile not in dep.profiles:
        return f"not in profile {opts.profile}"
    if opts.cell not in dep.cells:
        return f"not run with cell {opts.cell}"
    return "left out by --only"


def left_out_dependencies(plan: StackPlan) -> list[str]:
    """A line for each service that starts without a dependency its `depends_on` names,
    because the profile, cell, `--only` or `--no-seed` leaves that one out. That is how
    one stack file serves every profile (the bundled seed job waits for what the profile
    runs); said aloud, since a dependant starting without its database was silent. Not
    for the bundled stack's own services, which are written that way: `invoke up` on the
    default stack would open with a line about its seed job."""
    lines = []
    left_out = dict(plan.left_out)
    for svc in plan.services:
        if svc.spec.source.startswith("<bundled "):  # by design: the bundle's own seed job
            continue
        if svc.left_out:
            why = "; ".join(f"{d}: {reason}" for d, reason in svc.left_out)
            lines.append(f"{svc.name} starts without "
                         f"{', '.join(d for d, _ in svc.left_out)} (named in its "
                         f"depends_on; {why})")
        named = dict(svc.left_out)
        for ref, other in _service_references(svc.spec):
            if other in left_out and other not in named:
                named[other] = left_out[other]
                lines.append(f"{svc.name} is given {ref} of {other}, which this run leaves "
                             f"out ({left_out[other]}): nothing of this stack answers "
                             "there, and whatever else listens on that port gets its "
                             "requests")
    return lines


_REFERENCE = re.compile(r"\$\{(url|port):([A-Za-z_][A-Za-z0-9_.-]*)\}")


def _service_references(spec: ServiceSpec) -> list[tuple[str, str]]:
    """The `${url:NAME}` / `${port:NAME}` a service's command, cwd and env name, as
    (the reference, NAME): a dependency reached by its URL rather than `depends_on`
    was given silently when the run left it out (z/5)."""
    texts = [*spec.command, spec.cwd, *(v for _, v in spec.env)]
    return [(m.group(0), m.group(2)) for text in texts for m in _REFERENCE.finditer(text)]


def _check_shifted_ports(spec: StackSpec, opts: Options, ports: Mapping[str, int],
                         dashboard_port: int) -> None:
    """Every port, the dashboard's included, must still be a real port once shifted:
    port 0 would make the kernel pick a random one, and past 65535 bind() overflows."""
    shifted = [("the dashboard ([stack] dashboard_port)", spec.settings.dashboard_port,
                dashboard_port)]
    shifted += [(f"'{s.name}'", s.port, ports[s.name]) for s in spec.services
                if s.port is not None]
    for who, written, port in shifted:
        if not 0 < port < 65536:
            raise UsageError(
                f"--port-offset {opts.port_offset} moves {who} from port {written} to port "
                f"{port}, outside 1-65535: choose an offset that keeps every port in range")


def _stack_env(spec: StackSpec, svc: ServiceSpec, render: Renderer) -> dict[str, str]:
    """The stack-wide [env], rendered for `svc`; a bad `${...}` there is [env]'s error at
    its own line: it was blamed on the first service's `env` field, at that service's
    header, though the service had no `env` (adv28 l/7)."""
    out: dict[str, str] = {}
    for key, value in spec.env:
        try:
            out[key] = render(value, "env")
        except StackFileError as exc:
            from hippo_tasks.model.loader import source_line_named

            where = next(((f, n) for f in reversed(spec.files)
                          if (n := source_line_named(f, "env", key)) is not None),
                         (exc.path, None))
            own = "${port}" in value  # each service's own: one without a port fails it
            raise StackFileError(where[0], exc.problem + (
                f" (every service gets [env], and service '{svc.name}' has no port: use "
                "${port:NAME}, or give the variable in each service's own env)" if own
                else ""), None, f"env.{key}", where[1]) from None
    return out


def _env_files(svc: ServiceSpec, root: Path, render: Renderer,
               stamps: dict[str, str | None]) -> dict[str, str]:
    """The service's env_file variables, rendered; a bad `${...}` in one is that file's
    error, not the stack file's. Each file's stamp goes into `stamps`, taken before it
    is read (a later edit shows: project.changed_since)."""
    out: dict[str, str] = {}
    for name in svc.env_file:
        path = root / render(name, "env_file")
        stamps.setdefault(str(path), file_stamp(path))
        for key, value, line in read_env_file(path, svc.name):
            try:
                out[key] = render(value, "env")
            except StackFileError as exc:
                raise StackFileError(str(path), f"{key}: {exc.problem}", svc.name,
                                     "env_file", line) from None
    return out


def _check_watch_folders(svc: ServiceSpec, root: Path, cwd: Path, render: Renderer) -> None:
    """A `watch` pattern's literal folders (`../../**/*.py` from the project root)
    must stay inside the project or the service's cwd: `..` climbing further would hand
    the file watcher a home folder or the whole disk to watch."""
    allowed = [Path(os.path.normpath(root)), Path(os.path.normpath(cwd))]
    for pattern in svc.watch:
        folder = Path(os.path.normpath(cwd.joinpath(*literal_folders(pattern))))
        if not any(folder == a or a in folder.parents for a in allowed):
            raise render.fail(f"pattern {pattern!r} watches {folder}, outside the project "
                              f"({root}) and the service's cwd: watch files of this project",
                              "watch")


class Renderer:
    """Renders `${...}` in one service's fields (or, with `table`, a non-service table's
    such as `commands.seed`, whose errors then name that table)."""

    def __init__(
        self,
        svc: ServiceSpec,
        base: Mapping[str, str],
        ports: Mapping[str, int],
        env: Mapping[str, str],
        services: tuple[str, ...] = (),
        table: str | None = None,
        cell_hint: str = "",
        taken: Mapping[int, str] | None = None,
    ) -> None:
        self.svc = svc
        self.base = base
        self.ports = ports
        self.env = env
        self.services = services
        self.table = table
        self.cell_hint = cell_hint
        self.taken = taken or {}
        """The ports of this run (moved by the offset): port -> the service that owns
        it, or "" for the dashboard's. A `${port:N}` on one of them is refused."""

    def __call__(self, text: str, field_name: str) -> str:
        def sub(match: re.Match[str]) -> str:
            if match.group(1) == "$":
                return "$"
            var, arg = match.group(2), match.group(3)
            if var is None:
                raise self.fail(f"'{match.group(0)}' starts a variable that is not "
                                "${name} or ${name:arg} (a missing '}'? variables do not "
                                "nest); a literal $ is $$, and a shell's own ${...} is "
                                "written $${...}", field_name)
            if arg and arg.startswith("-"):  # `${port:-8080}`: "no such service '-8080'"
                raise self.fail(f"'{match.group(0)}' is a shell's default-value form; "
                                f"Hippodrome's ${{{var}:...}} takes a name: for the "
                                f"shell's, write $${match.group(0)[1:]}", field_name)
            return self.lookup(var, arg, field_name)

        return _VAR.sub(sub, text)

    def shifted(self, port: int, field_name: str) -> str:
        """`${port:9229}`: a port that is no service's own (a Node inspector, a debug
        port), moved with the stack by --port-offset like every service port, so two
        copies side by side do not clash on it."""
        moved = port + int(self.base.get("port_offset", "0"))
        if not 1 <= moved <= 65535:
            raise self.fail(f"${{port:{port}}} is port {moved} with --port-offset "
                            f"{self.base.get('port_offset')}, outside 1-65535", field_name)
        owner = self.taken.get(moved)
        if owner is not None and owner != self.svc.name:
            # It was not checked: the other service's readiness met this one's socket,
            # up said ready, and the owner crash-looped on its own port (adv24 c/16).
            whose = f"service '{owner}''s own port" if owner else \
                "the dashboard's port ([stack] dashboard_port)"
            hint = f" (to reach it, write ${{port:{owner}}})" if owner else ""
            raise self.fail(f"${{port:{port}}} is port {moved}, {whose}: two programs "
                            f"cannot both listen on it; choose another number{hint}",
                            field_name)
        return str(moved)

    def fail(self, problem: str, field_name: str) -> StackFileError:
        from hippo_tasks.model.loader import service_line, source_line

        if self.table is not None:
            key = field_name.split(".")[0]
            return StackFileError(self.svc.source, problem, None, f"{self.table}.{field_name}",
                                  source_line(self.svc.source, self.table, key))
        return StackFileError(self.svc.source, problem, self.svc.name, field_name,
                              service_line(self.svc.source, self.svc.name, field_name))

    def lookup(self, var: str, arg: str | None, field_name: str) -> str:
        if var == "port" and arg is None:
            if self.svc.port is None:
                raise self.fail("uses ${port} but has no port", field_name)
            return str(self.ports[self.svc.name])
        if var == "port" and arg is not None and arg.isascii() and arg.isdigit():
            return self.shifted(int(arg), field_name)
        if var in ("port", "url") and arg is not None:
            if arg not in self.services:
                raise self.fail(f"${{{var}:{arg}}}: no such service '{arg}'"
                                + close_hint(arg, self.services), field_name)
            if arg not in self.ports:
                raise self.fail(f"${{{var}:{arg}}} names service '{arg}', which has no port",
                                field_name)
            port = self.ports[arg]
            return str(port) if var == "port" else f"http://{HOST}:{port}"
        if var == "env" and arg is not None:
            if arg not in self.env:
                raise self.fail(f"${{env:{arg}}}: environment variable {arg} is not set",
                                field_name)
            return self.env[arg]
        if var == "cell_url" and arg is None and not self.base["cell_url"]:
            # The choice of cell is what lacks, not the file (exit 2, as a bad --cell):
            # it read as an error at a line of the bundled stack, exit 3.
            cell = self.base["cell"]
            what = f"[{self.table}]" if self.table else f"service '{self.svc.name}'"
            raise UsageError(
                f"--cell {cell} needs the cell's URL ({what} uses ${{cell_url}}): set "
                f"{cell_url_variable(cell)} or [cells.{cell}] url = \"...\" in "
                f"hippodrome.toml{self.cell_hint}")
        if arg is None and var in self.base:
            return self.base[var]
        known = (*self.base, "port", "env", "url")
        raise self.fail(f"unknown variable ${{{var}{':' + arg if arg else ''}}}"
                        + close_hint(var, known, "${", "}"), field_name)


def dashboard_host(env: Mapping[str, str]) -> str:
    """Where the daemon listens: HIPPODROME_DASHBOARD_HOST, else loopback (every address
    in a PEX or Docker run, where `docker run -p` must reach it)."""
    if env.get("HIPPODROME_DASHBOARD_HOST"):
        return canonical_address(env["HIPPODROME_DASHBOARD_HOST"])
    return "0.0.0.0" if env.get("HIPPODROME_PEX_DIR") else HOST


def canonical_address(host: str) -> str:
    """An IP address in its one usual spelling (`127.1`, `127.000.000.001` and
    `::ffff:127.0.0.1` are 127.0.0.1, `0:0:0:0:0:0:0:1` is ::1); a name as it is.
    The daemon bound the spelling given and handed out URLs in it, whose Host its own
    guard then refused: `hd status` and `hd down` got a 403."""
    import ipaddress
    import socket

    bare = host.strip("[]")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:  # a mapped IPv4 address is that IPv4 address (the webhook refused its URL)
        mapped = isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped
        return str(mapped) if mapped else address.compressed
    try:  # inet_aton's shorthands, as the kernel's resolver takes them
        return socket.inet_ntoa(socket.inet_aton(bare)) if bare[:1].isdigit() else host
    except OSError:
        return host


def dashboard_url(opts: Options, port: int) -> str:
    """The daemon's URL as the plan and its services know it (one spelling for both)."""
    return f"http://{url_host(dashboard_host(opts.env))}:{port}"


def url_host(bound: str) -> str:
    """The host of a URL that reaches a socket bound to `bound`: loopback for every
    address, an IPv6 literal in brackets. `HIPPODROME_DASHBOARD_HOST=::1` gave
    `http://::1:9000`, which no browser or client takes, and services' ${dashboard_url}
    kept 127.0.0.1, where nothing listened."""
    if bound in ("", "0.0.0.0"):
        return HOST
    if bound == "::":
        return "[::1]"
    if ":" in bound and not bound.startswith("["):
        return f"[{bound}]"
    return bound


def bind_host(env: Mapping[str, str]) -> str:
    """Services listen on loopback, except in Docker mode, where `docker run -p` must
    reach them from outside the container."""
    if env.get("HIPPODROME_BIND_HOST"):
        return env["HIPPODROME_BIND_HOST"]
    return "0.0.0.0" if env.get("HIPPODROME_PEX_DIR") else HOST
