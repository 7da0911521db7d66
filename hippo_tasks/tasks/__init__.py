"""Thin Invoke task modules; `ns` is the whole command tree (root tasks.py and `hd`)."""

from __future__ import annotations

from invoke.collection import Collection

from hippo_tasks.tasks import control, data, doctor, lifecycle, logs


def build_namespace() -> Collection:
    ns = Collection()
    for fn in (lifecycle.up, lifecycle.down, lifecycle.status, lifecycle.start,
               lifecycle.stop, lifecycle.restart, logs.logs, doctor.doctor, data.seed,
               data.probes, data.e2e):
        ns.add_task(fn)
    ns.add_collection(control.ns)
    try:
        from hippo_tasks.tasks import events
    except ImportError:
        pass
    else:
        ns.add_collection(events.ns)
    from hippo_tasks.tasks.flags import consistent

    return consistent(ns)  # one short flag and one help text per flag, in every task


ns = build_namespace()
