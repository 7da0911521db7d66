"""`hd why NAME`: what a service waits on, down the dependency chain, from live state.

A service that is not ready is either waiting for a dependency (then the question moves
to that dependency, and on down), or is itself starting, backing off, failed or
stopped (then its own reason and last lines are the answer). Walking the chain here,
in the daemon, gives the CLI, the page and the MCP server one answer to render.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from hippo_tasks.supervision.snapshot import ServiceSnapshot
from hippo_tasks.supervision.timeline import own_seconds

LAST_LINES = 10
MAX_DEPTH = 32

Lines = Callable[[str], list[str]]
"""A service's last output lines (its own, not the supervisor's notes)."""


def _own_sentence(snap: ServiceSnapshot, readiness: str, shutting: bool = False) -> str:
    name, state = snap.name, snap.state
    if snap.external:
        return (f"{name} is external (not started by hippodrome) and "
                + ("answers its probe" if snap.healthy else "does not answer its probe"))
    if snap.ready:
        took = own_seconds({"timings": snap.timings})
        return f"{name} is ready" + (f" (took {took:.2f}s after its dependencies)"
                                     if took is not None else "")
    if state == "starting":
        spawned = snap.timings.get("spawned_at")
        ago = f" {time.time() - spawned:.1f}s ago" if spawned else ""
        if snap.kind == "job":  # "waiting for its readiness check (none)" (adv24 a/8)
            since = f" for {time.time() - spawned:.1f}s" if spawned else ""
            return f"{name} is a job, running{since} (pid {snap.pid}): done when it exits 0"
        return (f"{name} started{ago} (pid {snap.pid}) and is not ready yet: waiting for "
                f"its readiness check ({readiness})")
    if state == "backoff":
        return f"{name} is backing off before a restart: {snap.reason}"
    if state == "failed":
        return f"{name} failed: {snap.reason}"
    if state == "stopped":
        what = snap.reason or "stopped"
        if shutting:  # a start would be refused
            return f"{name} is stopped ({what})"
        return f"{name} is stopped ({what}); `hd start --service {name}` starts it"
    if state == "stopping":
        return f"{name} is stopping ({snap.reason})"
    return f"{name} is {state}" + (f" ({snap.reason})" if snap.reason else "")


def blocked_on(snap: ServiceSnapshot, snaps: Mapping[str, ServiceSnapshot],
               conditions: Mapping[str, Mapping[str, str]] | None = None
               ) -> list[tuple[str, str]]:
    """What stands between this service and ready: what its start waits for now, or,
    once it gave up because a dependency failed or was stopped, its dependencies that
    are still not ready, each with the condition it has to meet (`conditions`: the
    stack file's, by service; it said "needed: ready" where the wait had said
    completed_successfully a second before, adv24 a/8)."""
    if snap.waiting_on:
        return list(snap.waiting_on)
    if snap.ready or snap.state not in ("failed", "stopped", "pending") or \
            not snap.reason.startswith("dependency '"):
        return []
    own = (conditions or {}).get(snap.name, {})
    return [(d, own.get(d) or "healthy") for d in snap.depends_on
            if d in snaps and not snaps[d].ready]


def explain(name: str, snaps: Mapping[str, ServiceSnapshot], readiness: Mapping[str, str],
            lines: Lines, log_path: Callable[[str], str | None],
            conditions: Mapping[str, Mapping[str, str]] | None = None,
            shutting_down: str | None = None) -> dict[str, Any]:
    """The answer for `name` (known to exist): its own state and sentence, and every
    service it is (transitively) blocked on, nearest first, each once. Past MAX_DEPTH
    only the bottom of the chain is listed (`hidden` counts the rest): the walk stopped
    there, and on a 40-link chain the service holding everything up was never named.
    `shutting_down`: who asked for the shutdown under way; said first, and no start is
    advised (the daemon would refuse it)."""
    shutting = shutting_down is not None
    snap = snaps[name]
    found: list[tuple[str, str, int, list[str]]] = []
    seen = {name}
    frontier = deque((dep, cond, 1) for dep, cond in blocked_on(snap, snaps, conditions))
    while frontier:
        dep, condition, depth = frontier.popleft()
        if dep in seen or dep not in snaps:
            continue
        seen.add(dep)
        waits = blocked_on(snaps[dep], snaps, conditions)
        found.append((dep, condition, depth, [d for d, _ in waits]))
        frontier.extend((d, c, depth + 1) for d, c in waits)
    shown = [f for f in found if f[2] <= MAX_DEPTH or not f[3]]
    blockers: list[dict[str, Any]] = [{
        "service": dep, "state": snaps[dep].state, "condition": condition,
        "healthy": snaps[dep].healthy, "reason": snaps[dep].reason,
        "summary": _own_sentence(snaps[dep], readiness.get(dep, ""), shutting),
        "waiting_on": waiting, "last_lines": lines(dep), "log_path": log_path(dep),
        "depth": depth,
    } for dep, condition, depth, waiting in shown]
    roots = [b for b in blockers if not b["waiting_on"]]
    bottom = ("; at the bottom of the chain: " + "; ".join(b["summary"] for b in roots)
              if roots else "")
    if snap.waiting_on:
        waits_text = ", ".join(f"{d} ({c})" for d, c in snap.waiting_on)
        summary = f"{name} is waiting for {waits_text}" + bottom
    else:
        summary = _own_sentence(snap, readiness.get(name, ""), shutting) + bottom
    if shutting:
        summary = (f"the stack is shutting down ({shutting_down}): nothing starts again "
                   f"until `hd up` once it has stopped; {summary}")
    return {
        "service": name, "state": snap.state, "healthy": snap.healthy, "ready": snap.ready,
        "reason": snap.reason, "summary": summary, "blockers": blockers,
        "hidden": len(found) - len(shown),
        "last_lines": lines(name), "log_path": log_path(name), "timings": snap.timings,
    }


def render(answer: Mapping[str, Any]) -> str:
    """The terminal form of `explain`'s answer."""
    out = [str(answer["summary"])]
    hidden = int(answer.get("hidden") or 0)
    for b in answer["blockers"]:
        if hidden and int(b["depth"]) > MAX_DEPTH:
            out.append(f"{'  ' * (MAX_DEPTH + 1)}... {hidden} more services waiting in "
                       "between, not listed")
            hidden = 0
        pad = "  " * min(int(b["depth"]), MAX_DEPTH + 1)
        out.append(f"{pad}- {b['service']} [{b['state']}] (needed: {b['condition']}): "
                   f"{b['summary']}")
        for line in b["last_lines"][-5:]:
            out.append(f"{pad}    | {line}")
        if b.get("log_path"):
            out.append(f"{pad}    log: {b['log_path']}")
    if not answer["ready"] and not answer["blockers"] and answer["last_lines"]:
        out.append("  last lines:")
        out += [f"    | {line}" for line in answer["last_lines"][-LAST_LINES:]]
        if answer.get("log_path"):
            out.append(f"  log: {answer['log_path']}")
    return "\n".join(out)
