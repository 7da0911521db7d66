"""Thin Invoke task modules; `ns` is the whole command tree (root tasks.py and `hd`).

`ns` is built on first use (a module `__getattr__`), not at import: importing one task
module (as `hd`'s fast path does) must not load every other one, nor invoke.
"""

from __future__ import annotations

from typing import Any


def build_namespace() -> Any:
    """The invoke Collection of every task (returned as Any: invoke is untyped)."""
    from hippo_tasks.ctrl_c import take

    take()  # under the stock `invoke`, until a task's body runs (output.exit_status)
    from invoke.collection import Collection

    from hippo_tasks.tasks import (
        actions,
        control,
        data,
        doctor,
        export,
        lifecycle,
        logs,
        scaffold,
        why,
    )
    from hippo_tasks.tasks.declare import as_task
    from hippo_tasks.tasks.mcp_server import mcp
    from hippo_tasks.tasks.program import (
        bad_arguments_said_as_ours,
        ended_as_hd_ends,
        text_never_fails,
    )

    ended_as_hd_ends()  # `invoke` runs no main() of ours: the same as `hd` from here
    text_never_fails()
    bad_arguments_said_as_ours()

    ns = Collection()
    for fn in (lifecycle.up, lifecycle.down, actions.status, actions.start,
               actions.stop, actions.restart, logs.logs, doctor.doctor, data.seed,
               data.probes, data.e2e, scaffold.init, why.why, mcp):
        ns.add_task(as_task(fn))
    ns.add_collection(control.ns)
    ns.add_collection(export.collection())
    try:
        from hippo_tasks.tasks import events
    except ImportError:
        pass
    else:
        ns.add_collection(events.ns)
    from hippo_tasks.tasks.flags import consistent

    return consistent(ns)  # one short flag and one help text per flag, in every task


def __getattr__(name: str) -> Any:
    if name == "ns":
        globals()["ns"] = built = build_namespace()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
