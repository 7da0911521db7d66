"""Turning task flags into the model's Options: defaults from DESIGN section 1."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hippo_tasks.errors import UsageError
from hippo_tasks.model.project import find_project_root
from hippo_tasks.numbers import plain_int

if TYPE_CHECKING:  # the model's plan is imported by the tasks that build one
    from hippo_tasks.model.plan import Options


def resolve_root(flag: str | None = None) -> Path:
    """--project-root's folder; None (the flag left out): the nearest project found from
    the current folder, or the folder of the tasks.py that `invoke -r DIR` loaded. An
    empty value (a script's unset variable) is refused: taken for the current folder,
    `hd down -p "$P"` stopped the stack of wherever the script ran (adv24 c/8)."""
    if flag is not None and not flag.strip():
        raise UsageError(f"--project-root {flag!r} names no folder: give one, or leave the "
                         "flag out for the current folder's stack")
    if flag:
        try:
            root = Path(flag).expanduser().resolve()
            found = root.is_dir()
        except OSError as exc:  # a name too long for the file system, say: a sentence
            shown = flag if len(flag) <= 80 else flag[:77] + "..."
            raise UsageError(f"--project-root {shown}: {exc.strerror or exc}") from None
        if not found:
            hint = (f" (-p is --project-root in every task; for the profile write --profile "
                    f"{flag})" if flag in ("core", "ecom", "full") else "")
            raise UsageError(f"--project-root {flag}: no such folder{hint}")
        return root
    named = _search_root()  # `invoke -r DIR`: that folder, as named
    if named is not None:
        return named
    searched = find_project_root()
    return _running_below(searched) or searched


def _running_below(found: Path) -> Path | None:
    """A folder between here and `found` (or above here, when `found` is not) whose
    registry names a running daemon: a nested project whose stack file was removed
    while its stack ran (a `git checkout` of a branch without it). The search walked on
    to the parent's hippodrome.toml, and `hd down` there stopped the PARENT's stack,
    leaving this one running (adv45 R/12; HIPPODROME_SRC_DIR the same way). One stat a
    level, a read only where a registry is."""
    import json

    from hippo_tasks.registry.store import daemon_alive

    try:
        here = Path.cwd().resolve()
    except OSError:
        return None
    for folder in (here, *here.parents):
        if folder == found:
            return None
        registry = folder / ".hippodrome" / "registry.json"
        if not registry.is_file():
            continue
        try:
            data = json.loads(registry.read_bytes()[:1 << 20])
        except (OSError, ValueError, RecursionError):
            continue
        # and written for this folder: a `.hippodrome` copied from another running
        # stack made a subfolder the root, and `hd up` started a stack there (adv47 G/1)
        if isinstance(data, dict) and isinstance(data.get("daemon"), dict) and \
                data.get("project_root") == str(folder) and daemon_alive(data):
            return folder
    return None


def _search_root() -> Path | None:
    """The folder of the tasks.py invoke loaded when it is a stack's (it holds a
    hippodrome.toml) and not this folder or one above it: `invoke -r projA down`, run
    from projB, stopped projB's stack (adv24 c/10). Invoke finds a tasks.py upwards by
    itself; one found elsewhere was named by -r. A tasks.py with no stack file beside it
    (Hippodrome's own source) lends its tasks to the stack found from here."""
    module = sys.modules.get("tasks")
    file = getattr(module, "__file__", None)
    if not file or getattr(module, "ns", None) is None:
        return None
    folder = Path(file).resolve().parent
    if not (folder / "hippodrome.toml").is_file():
        return None  # Hippodrome's own checkout (`invoke -r SRC`): its tasks, here
    try:
        here = Path.cwd().resolve()
    except OSError:
        return folder
    return None if folder == here or folder in here.parents else folder


def python_for_services() -> str:
    """The interpreter services run under; in Docker mode, the services PEX."""
    pex_dir = os.environ.get("HIPPODROME_PEX_DIR")
    if pex_dir:
        return str(Path(pex_dir) / "services.pex")
    return sys.executable


def daemon_offset(daemon: Mapping[str, Any], file_port: int) -> str | None:
    """The port offset the running daemon was started with, as it recorded it. An older
    daemon's is its dashboard port less the file's `dashboard_port`: wrong once that was
    edited under it (doctor and seed checked and seeded ports where nothing ran)."""
    recorded = daemon.get("port_offset")
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        return str(recorded)
    port = daemon.get("port")
    return str(port - file_port) if isinstance(port, int) else None


def port_offset(flag: int | str | None) -> int:
    raw = str(flag) if flag is not None else (os.environ.get("HIPPODROME_PORT_OFFSET") or "0")
    try:
        return plain_int(raw)
    except ValueError:
        from hippo_tasks.terminal_text import as_typed

        raise UsageError(f"--port-offset / HIPPODROME_PORT_OFFSET must be an integer, got "
                         f"'{as_typed(raw)}'") from None


def check_switches() -> None:
    """A yes-or-no setting given a word it does not take is refused by `up`, before
    anything starts: `HIPPODROME_CGROUP=maybe` ran in cgroup mode and
    `HIPPODROME_WATCH_POLL=abc` watched without polling, neither with a word (adv52
    J/5), where a typo meant the other way is what the user then debugs. The words are
    those the readers of each take (ownership.establish, watch.poll_forced)."""
    from hippo_tasks.supervision.ownership import MODE_ENV, MODE_WORDS
    from hippo_tasks.supervision.watch import POLL_ENV, POLL_WORDS
    from hippo_tasks.terminal_text import as_typed

    for name, words in ((MODE_ENV, MODE_WORDS), (POLL_ENV, POLL_WORDS)):
        raw = os.environ.get(name)
        if raw is not None and raw.strip() and raw.strip().lower() not in words:
            raise UsageError(f"{name}='{as_typed(raw)}' is none of the words it takes: "
                             f"{', '.join(words)} (or leave it unset)")


SEED_LIMIT = 2**63
"""A seed is a 64-bit signed integer: one of 185 digits passed, and seeding failed at
the controller with an account name over its 200 characters (adv59 F5)."""


def random_seed(flag: str | None = None) -> int:
    """`--seed`, else HIPPODROME_RANDOM_SEED, else 42; ASCII digits only, as every number
    Hippodrome reads (`--seed ٣` was taken as 3)."""
    name, raw = ("--seed", flag) if flag is not None else (
        "HIPPODROME_RANDOM_SEED", os.environ.get("HIPPODROME_RANDOM_SEED", "42") or "42")
    try:
        number = plain_int(raw)
    except ValueError:
        number = None
    if number is not None and -SEED_LIMIT <= number < SEED_LIMIT:
        return number
    from hippo_tasks.terminal_text import as_typed

    shown = as_typed(raw if len(raw) <= 40 else f"{raw[:40]}...")
    raise UsageError(f"{name} must be an integer, got '{shown}'" if number is None else
                     f"{name} must be an integer from {-SEED_LIMIT} to {SEED_LIMIT - 1}, "
                     f"got one of {len(raw.strip().lstrip('+-'))} digits") from None


TABLE_PREFIX_MAX = 40
"""The longest name made from it must stay within AWS's limits: `{P}EventPipesRole` (IAM,
64), `{P}IndexForkStateMachine` and `{P}IndexForkQueue` (Step Functions, SQS: 80)."""


def check_table_prefix(prefix: str, made: bool = False) -> str:
    """A prefix every AWS name made from it takes (SQS allows the fewest characters):
    one with a space, other scripts or 300 letters passed, and `up` failed seconds later
    inside a service, naming a queue and not the flag. Not one that begins with `-`:
    handed on as a word of its own (`--table-prefix -x`), the provisioning job read it as
    an option and failed after ten services had started (adv59 F2)."""
    if len(prefix) <= TABLE_PREFIX_MAX and not prefix.startswith("-") and all(
            c.isascii() and (c.isalnum() or c in "-_") for c in prefix):
        return prefix
    from hippo_tasks.terminal_text import as_typed

    shown = as_typed(prefix)
    what = (f"the table prefix made from the git branch, '{shown}'," if made
            else f"--table-prefix '{shown}'")
    raise UsageError(f"{what} cannot name AWS resources: use ASCII letters, digits, '-' "
                     f"and '_', not '-' first, at most {TABLE_PREFIX_MAX} characters (e.g. "
                     "--table-prefix dev-feature-x-)")


def table_prefix_for(root: Path, flag: str) -> str:
    """The flag's prefix, else the one made from the git branch, checked as every command
    that names AWS resources checks it (`up`, `doctor`, `export k8s`, `events.validate`)."""
    from hippo_tasks.model.project import default_table_prefix

    if flag:
        return check_table_prefix(flag)
    return check_table_prefix(default_table_prefix(root), made=True)


def build_options(*, root: Path, profile: str, cell: str, table_prefix: str,
                  only: str | None,
                  offset: int | str | None, skip: tuple[str, ...] = (),
                  record: bool = True) -> Options:
    from hippo_tasks.model.plan import Options

    names = tuple(n.strip() for n in (only or "").split(",") if n.strip())
    if only is not None and not names:  # `--only ,` or `--only ''` (a variable left
        # empty) started the whole stack (s/10)
        raise UsageError(f"--only {only!r} names no service; give names, `--only a,b`, "
                         "or leave --only out for the whole profile")
    return Options(
        project_root=root,
        profile=profile,
        cell=cell,
        table_prefix=table_prefix_for(root, table_prefix),
        only=names,
        skip=skip,
        port_offset=port_offset(offset),
        random_seed=random_seed(),
        python=python_for_services(),
        env=dict(os.environ),
        record_events=record,
    )
