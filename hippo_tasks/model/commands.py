"""A stack command (`[commands.NAME]`) made ready to run against a stack's choices.

Rendered like a service: the same `${...}` variables, and the stack's `[env]` contract
under the command's own `env`, so a platform program run by `hd seed` sees exactly
the URLs, table prefix and seed its services were given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hippo_tasks.errors import UsageError, did_you_mean
from hippo_tasks.model.plan import Options, Renderer, all_ports, base_vars, cell_hint
from hippo_tasks.model.spec import ServiceSpec, StackSpec


@dataclass(frozen=True)
class PlannedCommand:
    name: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    """The contract and the command's own variables (not the caller's environment)."""


def plan_command(spec: StackSpec, opts: Options, name: str, task: str = "") -> PlannedCommand:
    """The command `name` rendered for `opts`; a UsageError when the stack has none."""
    try:
        cmd = spec.command(name)
    except KeyError:
        known = [c.name for c in spec.commands]
        offered = ", ".join(known) if known else "none"
        raise UsageError(
            f"{task or name}: the stack offers no '{name}' command (its [commands.NAME] "
            f"tables: {offered}){did_you_mean(name, known)}; add a [commands.{name}] table "
            "with command = [...] to hippodrome.toml, or keep [stack] defaults = true "
            "for the bundled platform's") from None
    ports = all_ports(spec, opts)
    stand_in = ServiceSpec(name=name, source=cmd.source)
    render = Renderer(stand_in, base_vars(spec, opts, ports), ports, opts.env, spec.names,
                      table=f"commands.{name}", cell_hint=cell_hint(spec))
    return PlannedCommand(
        name=name,
        argv=tuple(render(a, "command") for a in cmd.command),
        cwd=opts.project_root / render(cmd.cwd, "cwd"),
        env={k: render(v, "env") for k, v in (*spec.env, *cmd.env)},
    )
