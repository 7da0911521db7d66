"""One meaning per flag across every task: short flags and shared help from one table.

invoke gives each flag the first free letter of its name, per task, so `-p` was
`--profile` for `up` and `doctor` but `--project-root` everywhere else, and `up` ran
out of letters for `--port-offset` (its help showed `--=STRING`). Here short flags are
explicit: a flag has the short form below in every task that has it, or none.
"""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection
from invoke.tasks import Task

from hippo_tasks.errors import UsageError

SHORT_FLAGS: dict[str, str] = {
    "project-root": "p",
    "service": "s",
    "json": "j",
    "lines": "l",
    "follow": "f",
    "force": "f",
    "detach": "d",
    "cell": "c",
    "output": "o",
    "only": "o",
    "table-prefix": "t",
    "yes": "y",
    "verbose": "v",
    "endpoint-url": "e",
    "quiet": "q",
}
"""Flag -> its one-letter form. `-f` is `--follow` for `logs` and `--force` for `down`
(no task has both); `-o` is `--only`, except in `export.k8s`, where it is `--output` (its
`--output` comes first, so `--only` is long only there); every other letter means one
thing. Flags not listed (`--profile`,
`--port-offset`, `--seed`, `--enable-events`, `--detail-type`, `--file`, ...) are long
only. `hd`'s fast path (program.py) reads the same short forms."""

SHARED_HELP: dict[str, str] = {
    "project-root": "project folder (default: nearest parent with hippodrome.toml or "
                    "tasks.py, else HIPPODROME_SRC_DIR, else the current folder)",
    "port-offset": "shift every port by N (default HIPPODROME_PORT_OFFSET, else 0)",
    "table-prefix": "DynamoDB table prefix (default dev-{git branch}-)",
}
"""The help of flags several tasks share, worded once for all of them."""


class ConsistentTask(Task[Any]):
    """invoke's Task with the short flags of SHORT_FLAGS instead of automatic ones."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        auto, self.auto_shortflags = self.auto_shortflags, False
        try:
            opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        finally:
            self.auto_shortflags = auto
        short = SHORT_FLAGS.get(name.strip("_").replace("_", "-"))
        if short and short not in taken_names:
            opts["names"].append(short)
        return opts


def consistent(ns: Collection) -> Collection:
    """Give every task of the tree (sub-collections too) the shared short flags and help."""
    for task in ns.tasks.values():
        if type(task) is Task:
            task.__class__ = ConsistentTask  # no state of its own: only arg_opts differs
        params = {p.strip("_").replace("_", "-") for p in task.argspec(task.body).parameters}
        for flag, text in SHARED_HELP.items():
            if flag in params:
                task.help[flag] = text
    for sub in ns.collections.values():
        consistent(sub)
    return ns


def no_empty(flag: str, value: str | None, otherwise: str) -> None:
    """A flag given empty (a script's unset variable) is refused: `--file ''` sent the
    default event, exit 0, and `--filter=` replayed everything (adv25 e/3); `export k8s
    --namespace ''` exported into the default namespace (adv26 g/4)."""
    if value is not None and not value.strip():
        raise UsageError(f"{flag} {value!r} names nothing: {otherwise}")
