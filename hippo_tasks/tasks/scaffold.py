"""`hd init`: a commented hippodrome.toml (and, if asked, a tasks.py) in the current folder."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from hippo_tasks.errors import UsageError
from hippo_tasks.errors.state_dir import StarterWriteError
from hippo_tasks.model.project import current_folder
from hippo_tasks.tasks.declare import task
from hippo_tasks.tasks.output import handles_errors

if TYPE_CHECKING:
    from invoke.context import Context

STACK_FILE = "hippodrome.toml"
TASKS_FILE = "tasks.py"


def starter_files(from_bundled: bool, with_tasks: bool) -> dict[str, str]:
    """File name -> content, in the order they are written."""
    from hippo_tasks.tasks import starter

    files = {STACK_FILE: starter.BUNDLED_STACK if from_bundled else starter.OWN_STACK}
    if with_tasks:
        files[TASKS_FILE] = starter.TASKS_PY
    return files


def write_starter(folder: Path, from_bundled: bool = False, with_tasks: bool = False,
                  force: bool = False) -> list[Path]:
    """Write the starter files into `folder`: all of them or none. Nothing when one
    exists and not `force`, or when something other than a file stands at a name (a
    folder: `--force` cannot replace it, and it failed half-way, after replacing the
    user's hippodrome.toml). Returns the paths written."""
    files = starter_files(from_bundled, with_tasks)
    blocked = [name for name in files if (folder / name).exists()
               and not (folder / name).is_file()]
    if blocked:
        said = "; ".join(f"{name} in {folder} is {_what_is(folder / name)}" for name in blocked)
        raise UsageError(f"{said}: hd init writes regular files only; move it away, then run "
                         "hd init again; nothing was written")
    dangling = [name for name in files if os.path.islink(folder / name)
                and not (folder / name).exists()]
    if dangling and not force:  # taken for no file, and the link replaced (adv24 c/4)
        name = dangling[0]
        try:
            os.stat(folder / name)
            leads = f"a link to {os.readlink(folder / name)}, which does not exist"
        except OSError as exc:  # a loop was "which does not exist: create it" (adv27 i/6)
            leads = ("a symbolic link that leads back to itself (a loop)"
                     if exc.errno == errno.ELOOP else
                     f"a link to {os.readlink(folder / name)}, which does not exist")
        raise UsageError(
            f"{name} in {folder} is {leads}: hd init writes nothing over it (fix or remove "
            "the link, or run `hd init --force` to replace it with a fresh file); nothing "
            "was written")
    existing = [name for name in files if (folder / name).exists()]
    if existing and not force:
        names = " and ".join(existing)
        raise UsageError(
            f"{names} already {'exists' if len(existing) == 1 else 'exist'} in {folder}; "
            "hd init writes nothing over an existing file (edit it, or run `hd init "
            "--force` to replace it with a fresh one); nothing was written")
    temps = {name: folder / f".{name}.hd-init-{os.getpid()}" for name in files}
    name = ""
    placed: list[Path] = []
    try:  # every file written aside first: a full disk leaves the old ones as they were
        for name, text in files.items():
            temps[name].write_bytes(text.encode("utf-8"))
        for name in files:
            if force:
                os.replace(temps[name], folder / name)
            else:  # never over a file made since the check: two `hd init` at once both
                fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL  # said
                             | os.O_NOFOLLOW, 0o644)  # they wrote it (adv24 c)
                placed.append(folder / name)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(files[name].encode("utf-8"))
    except FileExistsError:
        _undo(placed, temps.values())
        raise UsageError(f"{name} appeared in {folder} while hd init wrote (another hd "
                         "init?); nothing was written") from None
    except OSError as exc:
        _undo(placed, temps.values())
        raise StarterWriteError.from_os(exc, folder / name) from exc
    _undo([], temps.values())
    return [folder / name for name in files]


def _undo(placed: list[Path], temps: Iterable[Path]) -> None:
    """Remove what this run placed (all or none) and its temporary files."""
    for path in [*placed, *temps]:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _web_port() -> str:
    """The starter's `web` port as `hd up` here will serve it: the file says 8080, and
    HIPPODROME_PORT_OFFSET moves it (adv57: init named 8080 where up served 8180). An
    offset `up` would refuse is named as such, not guessed at."""
    from hippo_tasks.tasks.context import port_offset

    try:
        offset = port_offset(None)
    except UsageError:
        return ("8080, which HIPPODROME_PORT_OFFSET would move, but hd up refuses its "
                "value: unset it or make it an integer")
    if offset == 0:
        return "8080"
    return f"{8080 + offset}: the file's 8080 moved by HIPPODROME_PORT_OFFSET={offset}"


def next_steps(written: list[Path], from_bundled: bool) -> str:
    names = ", ".join(p.name for p in written)
    lines = [f"wrote {names} in {written[0].parent}"]
    if from_bundled:
        lines.append("  the bundled stack, with commented overrides: uncomment what you need")
    else:
        lines.append("  a job `page` (writes index.html) and a service `web` (serves it on "
                     f"port {_web_port()}); the other fields are commented examples")
    lines.append("next: hd up --detach   (or hd up: foreground, Ctrl+C stops it)")
    lines.append("      hd status; hd logs --service " + ("controller" if from_bundled else "web")
                 + "; hd down")
    if any(p.name == TASKS_FILE for p in written):
        lines.append("      invoke up works here too, with the invoke installed beside Hippodrome")
    return "\n".join(lines)


@task(help={"from-bundled": "start from the bundled stack (defaults = true) with commented "
                            "overrides, instead of a small stack of your own",
            "tasks": "also write a tasks.py, so `invoke up` works in this folder",
            "force": "replace hippodrome.toml (and tasks.py) if they exist"})
@handles_errors
def init(c: Context, from_bundled: bool = False, tasks: bool = False,
         force: bool = False) -> None:
    """Write a commented hippodrome.toml (and, with --tasks, a tasks.py) here."""
    written = write_starter(current_folder(), from_bundled, tasks, force)
    print(next_steps(written, from_bundled))


def _what_is(path: Path) -> str:
    """What stands at a name that is not a regular file, named as `hd up` names it: a
    FIFO and a link to /dev/zero were "not a file (a folder, or a link to one)" (adv26
    g/9)."""
    from hippo_contract.small_file import kind_of

    try:
        kind = kind_of(os.stat(path).st_mode)
    except OSError as exc:
        kind = f"not readable ({exc.strerror})"
    if os.path.islink(path):
        return f"a link to {os.readlink(path)}, which is {kind}"
    return kind
