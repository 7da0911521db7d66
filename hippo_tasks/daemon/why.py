"""`hd why NAME`: what a service waits on, down the dependency chain, from live state.

A service that is not ready is either waiting for a dependency (then the question moves
to that dependency, and on down), or is itself starting, backing off, failed or
stopped (then its own reason and last lines are the answer). Walking the chain here,
in the daemon, gives the CLI, the page and the MCP server one answer to render.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from hippo_tasks.supervision.snapshot import ServiceSnapshot
from hippo_tasks.supervision.timeline import own_seconds

LAST_LINES = 10
MAX_DEPTH = 32

Lines = Callable[[str], list[str]]
"""A service's last output lines (its own, not the supervisor's notes)."""


def _own_sentence(snap: ServiceSnapshot, readiness: str) -> str:
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
        return (f"{name} started{ago} (pid {snap.pid}) and is not ready yet: waiting for "
                f"its readiness check ({readiness})")
    if state == "backoff":
        return f"{name} is backing off before a restart: {snap.reason}"
    if state == "failed":
        return f"{name} failed: {snap.reason}"
    if state == "stopped":
        what = snap.reason or "stopped"
        return f"{name} is stopped ({what}); `hd start --service {name}` starts it"
    if state == "stopping":
        return f"{name} is stopping ({snap.reason})"
    return f"{name} is {state}" + (f" ({snap.reason})" if snap.reason else "")


def blocked_on(snap: ServiceSnapshot,
               snaps: Mapping[str, ServiceSnapshot]) -> list[tuple[str, str]]:
    """What stands between this service and ready: what its start waits for now, or,
    once it gave up because a dependency failed or was stopped, its dependencies that
    are still not ready."""
    if snap.waiting_on:
        return list(snap.waiting_on)
    if snap.ready or snap.state not in ("failed", "stopped", "pending") or \
            not snap.reason.startswith("dependency '"):
        return []
    return [(d, "ready") for d in snap.depends_on if d in snaps and not snaps[d].ready]


def explain(name: str, snaps: Mapping[str, ServiceSnapshot], readiness: Mapping[str, str],
            lines: Lines, log_path: Callable[[str], str | None]) -> dict[str, Any]:
    """The answer for `name` (known to exist): its own state and sentence, and every
    service it is (transitively) blocked on, nearest first, each once."""
    snap = snaps[name]
    blockers: list[dict[str, Any]] = []
    seen = {name}
    frontier = [(dep, cond, 1) for dep, cond in blocked_on(snap, snaps)]
    while frontier:
        dep, condition, depth = frontier.pop(0)
        if dep in seen or dep not in snaps or depth > MAX_DEPTH:
            continue
        seen.add(dep)
        other = snaps[dep]
        blockers.append({
            "service": dep, "state": other.state, "condition": condition,
            "healthy": other.healthy, "reason": other.reason,
            "summary": _own_sentence(other, readiness.get(dep, "")),
            "waiting_on": [d for d, _ in blocked_on(other, snaps)],
            "last_lines": lines(dep), "log_path": log_path(dep), "depth": depth,
        })
        frontier += [(d, c, depth + 1) for d, c in blocked_on(other, snaps)]
    roots = [b for b in blockers if not b["waiting_on"]]
    bottom = ("; at the bottom of the chain: " + "; ".join(b["summary"] for b in roots)
              if roots else "")
    if snap.waiting_on:
        waits = ", ".join(f"{d} ({c})" for d, c in snap.waiting_on)
        summary = f"{name} is waiting for {waits}" + bottom
    else:
        summary = _own_sentence(snap, readiness.get(name, "")) + bottom
    return {
        "service": name, "state": snap.state, "healthy": snap.healthy, "ready": snap.ready,
        "reason": snap.reason, "summary": summary, "blockers": blockers,
        "last_lines": lines(name), "log_path": log_path(name), "timings": snap.timings,
    }


def render(answer: Mapping[str, Any]) -> str:
    """The terminal form of `explain`'s answer."""
    out = [str(answer["summary"])]
    for b in answer["blockers"]:
        pad = "  " * int(b["depth"])
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
