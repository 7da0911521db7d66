"""Dependency graph checks and ordering: unknown dependencies, port clashes, cycles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from hippo_tasks.errors import close_hint

if TYPE_CHECKING:
    from hippo_tasks.model.fields import FileContext
    from hippo_tasks.model.spec import ServiceSpec, StackSpec


def _can_run_together(a: ServiceSpec, b: ServiceSpec) -> bool:
    return bool(set(a.profiles) & set(b.profiles)) and bool(set(a.cells) & set(b.cells))


def check_graph(spec: StackSpec, sources: Mapping[str, FileContext],
                route_sources: Sequence[tuple[FileContext, str]],
                dashboard_from: FileContext | None = None) -> None:
    """`sources`: the file each service's table came from; `route_sources`: for each of
    `spec.routes`, its file and entry (`routes[1]`), so an error names that entry's line;
    `dashboard_from`: the file that set `dashboard_port`, if any."""
    enabled = [s for s in spec.services if s.enabled]
    names = {s.name for s in spec.services}
    kinds = {s.name: s.kind for s in spec.services}  # once: per service, loading was O(n^2)
    for svc in enabled:
        for dep in svc.depends_on:
            if dep not in names:
                raise sources[svc.name].error(
                    f"depends on unknown service '{dep}' (known: {', '.join(sorted(names))})",
                    svc.name,
                    "depends_on",
                )
            if dep == svc.name:
                raise sources[svc.name].error("depends on itself (a cycle)", svc.name, "depends_on")
        for dep, condition in svc.conditions:
            if condition == "completed_successfully" and kinds.get(dep) != "job":
                # A service is restarted or failed when it exits: it never completes, and
                # this one would wait for it for ever.
                raise sources[svc.name].error(
                    f"condition completed_successfully on '{dep}', which is not a job: only "
                    f"a kind = \"job\" completes; wait for '{dep}' with \"healthy\" or "
                    "\"started\", or make it a job", svc.name, "depends_on")
    by_port: dict[int, ServiceSpec] = {}
    for svc in enabled:
        if svc.port is None:
            continue
        if svc.port == spec.settings.dashboard_port:
            ctx = sources[svc.name]
            if dashboard_from is not None and dashboard_from is not ctx:
                # The user's dashboard_port on a bundled service's port: it was blamed on
                # a line of the installed package's file, which nobody edits (z/4).
                raise dashboard_from.error(
                    f"dashboard_port {svc.port} is the port of service '{svc.name}' (from "
                    f"{ctx.path}): choose another dashboard_port", None, "dashboard_port")
            raise ctx.error(
                f"port {svc.port} is the dashboard's port ([stack] dashboard_port)",
                svc.name,
                "port",
            )
        other = by_port.get(svc.port)
        if other is not None and _can_run_together(other, svc):
            raise sources[svc.name].error(
                f"duplicate port {svc.port}: used by both '{other.name}' and '{svc.name}'",
                svc.name,
                "port",
            )
        by_port.setdefault(svc.port, svc)
    ports = {s.name: s.port for s in spec.services}
    for route, (ctx, where) in zip(spec.routes, route_sources, strict=True):
        if route.service not in names:
            raise ctx.error(f"[[routes]] names unknown service '{route.service}'"
                            + close_hint(route.service, names), None, f"{where}.service")
        if ports[route.service] is None:  # or every matching event is a 503 at delivery
            raise ctx.error(
                f"[[routes]] for '{route.detail_type_prefix}' names '{route.service}', which "
                f"has no port: events are delivered by HTTP POST to a service's port (give "
                f"'{route.service}' a `port`, or route to a service that has one)",
                None, f"{where}.service")
    cycle = find_cycle({s.name: s.depends_on for s in enabled})
    if cycle:
        first = cycle[0]
        raise sources[first].error(
            "dependency cycle: " + " -> ".join(cycle), first, "depends_on"
        )


def find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One dependency cycle as a path that returns to its start, or None.

    Depth-first with an explicit stack: a chain of a thousand services is a valid stack
    and must not hit Python's recursion limit."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    for start in sorted(deps):
        if colour[start] != white:
            continue
        colour[start] = grey
        path = [start]
        pending = [iter(deps.get(start, ()))]
        while pending:
            for dep in pending[-1]:
                if dep not in colour:
                    continue
                if colour[dep] == grey:
                    return path[path.index(dep):] + [dep]
                if colour[dep] == white:
                    colour[dep] = grey
                    path.append(dep)
                    pending.append(iter(deps.get(dep, ())))
                    break
            else:
                colour[path.pop()] = black
                pending.pop()
    return None


def topo_order(deps: Mapping[str, Iterable[str]]) -> list[str]:
    """Names with every dependency before its dependants; ties keep the given order."""
    order: list[str] = []
    seen: set[str] = set()
    for start in deps:
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(deps.get(start, ())))]
        while stack:
            node, todo = stack[-1]
            for dep in todo:
                if dep in deps and dep not in seen:
                    seen.add(dep)
                    stack.append((dep, iter(deps.get(dep, ()))))
                    break
            else:
                stack.pop()
                order.append(node)
    return order
