"""`hd logs`: read `.logs/latest/`, which exists whether or not a daemon runs."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from hippo_tasks.errors import UsageError, did_you_mean
from hippo_tasks.errors.state_dir import StateDirError
from hippo_tasks.supervision.logs import MAX_LINE, pieces
from hippo_tasks.supervision.printer import colour_for, use_colour
from hippo_tasks.tasks.context import resolve_root
from hippo_tasks.tasks.declare import task
from hippo_tasks.tasks.follow_files import out_of_descriptors, say_left_out
from hippo_tasks.tasks.output import handles_errors
from hippo_tasks.terminal_text import as_typed, line_for_terminal, line_without_colour

if TYPE_CHECKING:
    from invoke.context import Context



def tail_lines(path: Path, count: int, block: int = 65536, end: int | None = None
               ) -> list[bytes]:
    """The last `count` lines of a file without reading all of it. A line over MAX_LINE
    counts as its pieces, as the terminal and the API show it, so no more than
    (count + 1) * MAX_LINE bytes are read: a 200 MB progress bar with no line break
    was read (and printed) whole, at 600 MB of memory."""
    if count <= 0:
        return []
    limit = (count + 1) * MAX_LINE
    with open_log(path) as fh:
        fh.seek(0, os.SEEK_END)
        end = pos = fh.tell() if end is None else min(end, fh.tell())
        blocks: list[bytes] = []
        breaks = 0
        while pos > 0 and breaks <= count and end - pos < limit:
            step = min(block, pos)  # each block read and counted once: a log of long
            pos -= step             # lines was copied and counted again per block
            fh.seek(pos)
            blocks.append(fh.read(step))
            breaks += blocks[-1].count(b"\n")
    lines = b"".join(reversed(blocks)).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [piece for line in lines for piece in pieces(line)][-count:]


def open_log(path: Path) -> BinaryIO:
    """A log file opened for reading, never through a link and never waiting on a pipe:
    a service can write into `${logs_dir}`, and a link it put at another's log's name
    had `hd logs` print a file from outside the project as that service's log. OSError
    for anything but a regular file."""
    from hippo_tasks.model.textfile import open_regular_for_reading

    return open_regular_for_reading(path)


def _named(given: list[str]) -> list[str]:
    """`-s a -s b` and `-s a,b` alike, each once, in the order given: `-s b` after `-s a`
    was invoke's `No idea what 'b' is`. An empty one (a script's unset variable) is
    refused: it read as no flag, every service's log, exit 0 (s/9)."""
    names: list[str] = []
    for flag in given:
        for name in flag.split(","):
            if not name.strip():
                raise UsageError(f"--service '{as_typed(flag)}' names no service: give a name, or "
                                 "leave --service out for every service's log")
            if name.strip() not in names:
                names.append(name.strip())
    return names


def _regular(path: Path) -> bool:
    """A log file proper: something else put under its name (a directory, a link) is
    no log."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _run_folder(root: Path) -> Path:
    """`.logs/latest`; while it is missing under a running stack (`rm .logs/latest`: the
    daemon links it again within 2 s), that daemon's own run folder, where it names one
    inside `.logs`. "no logs yet ... start the stack with `hd up`" was said beside a
    running stack, whose `up` then refused (adv51 H/2)."""
    latest = root / ".logs" / "latest"
    if os.path.lexists(latest):
        return latest
    from hippo_tasks.registry.store import Registry, daemon_alive

    try:
        data = Registry(root).read()
    except (OSError, StateDirError):
        return latest
    if daemon_alive(data):
        named = Path(str((data.get("daemon") or {}).get("logs_dir") or "/"))
        if named.parent == root / ".logs" and not named.is_symlink() and named.is_dir():
            return named
    return latest


def _files(latest: Path, service: str) -> list[Path]:
    if not latest.exists():
        raise UsageError(f"no logs yet: {latest} does not exist (start the stack with "
                         "`hd up`)")
    if service:
        from hippo_tasks.model.fields import SERVICE_NAME

        path = latest / f"{service}.log"
        # A name, never a path: `-s /any/dir/x` or `-s ../../x` printed any x.log.
        if not SERVICE_NAME.match(service) or not os.path.lexists(path):
            row = _known_without_log(latest.parent.parent, service) \
                if SERVICE_NAME.match(service) else None
            if row is not None:
                # The stack's own service, not started yet (waiting for a dependency, a
                # job before it), or its file deleted: refused as an unknown name, exit 2,
                # even with -f, whose use that is (adv28 l/3). The follower waits for it.
                print(f"hippodrome: {_no_file(service, path, row)}", file=sys.stderr,
                      flush=True)
                return [path]
            names = sorted(p.stem for p in latest.glob("*.log"))
            others = [as_typed(n) for n in names if n != service]  # not itself again
            raise UsageError(f"no log for service '{as_typed(service)}' in {latest} (logs: "
                             f"{', '.join(map(as_typed, names)) or 'none'})"
                             f"{did_you_mean(as_typed(service), others)}")
        if not _regular(path):
            raise UsageError(f"{path} is not a regular file (something else was put where "
                             "this log belongs): move it away; the daemon then writes the "
                             "log there again")
        return [path]
    found = []
    for path in sorted(latest.glob("*.log")):
        if _regular(path):
            found.append(path)
        else:
            say_left_out(path)
    return found


def _no_file(service: str, path: Path, row: dict[str, Any]) -> str:
    """Why a service the daemon runs has no log file. One that has started had one
    (its first line is the daemon's `pending -> starting`): it was deleted, and was
    said to have "no log yet (it is running)" (adv53 F3)."""
    timings = row.get("timings")
    if not row.get("pid") and not (isinstance(timings, dict) and timings.get("spawned_at")):
        return f"{service} has no log yet ({state_words(row)})"
    return (f"{service}'s log file {path} is gone (deleted or moved while the stack runs); "
            "the daemon starts a new one at its next line (it notices within 2 s). Its "
            f"earlier lines: `hd logs --timestamps -s {service}`")


def _known_without_log(root: Path, service: str) -> dict[str, Any] | None:
    """A service with no log file, as the running daemon knows it: its status row
    (`pending`, waiting for db) when its stack runs it, UnknownServiceError when this
    run left it out (as every other command says it: "no log for service 'c'" read as
    a log gone missing), None when the daemon does not know it or none runs. Asked on
    this path only."""
    from hippo_tasks.daemon.client import DaemonClient
    from hippo_tasks.errors import HippoError, UnknownServiceError

    try:
        status = DaemonClient.for_project(root).status()
    except (HippoError, OSError, ValueError):
        return None
    rows = [r for r in status.get("services") or () if isinstance(r, dict)]
    left_out = status.get("left_out")
    if isinstance(left_out, dict) and isinstance(left_out.get(service), str):
        raise UnknownServiceError(service, tuple(str(r.get("name")) for r in rows),
                                  left_out[service])
    return next((r for r in rows if r.get("name") == service), None)


def state_words(row: dict[str, Any]) -> str:
    """A status row's state as `hd logs` says it: `it is pending: waiting for db`."""
    waiting = [str(w.get("service")) for w in row.get("waiting_on") or ()
               if isinstance(w, dict)]
    return f"it is {row.get('state')}" + (f": waiting for {', '.join(waiting)}" if waiting
                                           else "")


def _count(lines: int | str) -> int:
    """--lines as a number. Taken as text: with an int default, invoke's own parser
    ran int() on it, and `invoke logs --lines abc` was a traceback (under `hd` too,
    its fast path aside, though `hd` caught it as a vaguer sentence)."""
    try:
        count = int(lines)
    except ValueError:
        raise UsageError(f"--lines takes a whole number of lines, got {lines!r}") from None
    if count < 0:  # tail -n -5 is 5 lines; here it printed nothing, and said nothing
        raise UsageError(f"--lines must be 0 or more, got {count}")
    return count


@task(iterable=["service"],
      help={"service": "a service; again, or a,b, for more (default: all)",
            "follow": "keep printing new lines",
            "lines": "how many lines from the end, a whole number (default 50)",
            "timestamps": "prefix each line with the time the daemon read it (needs the "
                          "running daemon: the files hold no times)"})
@handles_errors
def logs(c: Context, service: list[str] | None = None, follow: bool = False,
         lines: int | str = "50", project_root: str | None = None,
         timestamps: bool = False) -> None:
    """Show services' logs from `.logs/latest/` (with --timestamps, from the daemon)."""
    services = _named(service or [])
    lines = _count(lines)
    from hippo_tasks.registry.lifecycle_lock import wait_for_up

    # An `up` under way is about to make .logs/latest point at its run: read the run it
    # makes, not "no logs yet" or the last run's lines (adv34 v/2).
    wait_for_up(resolve_root(project_root))
    if timestamps:
        from hippo_tasks.supervision.printer import colour_map
        from hippo_tasks.tasks import timed_logs

        root = resolve_root(project_root)
        names = [p.stem for p in (root / ".logs" / "latest").glob("*.log")]
        timed_logs.show(root, services, lines, follow,
                        colour_map(names) if use_colour() else None)
        return
    latest = _run_folder(resolve_root(project_root))
    files = [path for name in services for path in _files(latest, name)] if services \
        else _files(latest, "")
    colour = use_colour()
    from hippo_tasks.supervision.printer import colour_map

    colours = colour_map(p.stem for p in latest.glob("*.log"))  # as `up` paints them
    out = sys.stdout.buffer
    # One service's lines go bare; from the moment a second one's log appears (a follow
    # into the next `up`, with a service added), every line names its service: they
    # went on bare, interleaved with nothing to tell them apart.
    label_width = [max((len(as_typed(p.stem)) for p in files), default=0) if len(files) != 1 else 0]

    def prefix(name: str) -> bytes:
        if not label_width[0]:
            return b""
        label = as_typed(name).ljust(label_width[0]).encode() + b" | "  # `caf\xe9.log`
        return ((colours.get(name) or colour_for(name)).encode() + label + b"\x1b[0m"
                if colour else label)

    from hippo_tasks.tasks.follow_files import Follower

    if follow:  # loaded now: out of descriptors, the sentence that names the limit
        import resource  # noqa: F401 - could not import it (`ulimit -n: ?`)

    shown = line_for_terminal if colour else line_without_colour
    follower = Follower(out, prefix, open_log, shown)
    for path in files:
        # Where following begins is taken before the tail is read and printed, and the
        # tail ends there: with unbuffered output (PYTHONUNBUFFERED, as in Docker
        # images) a line written between the print and a later stat was lost.
        try:
            info = path.lstat()
            tail = tail_lines(path, int(lines), end=info.st_size)
        except PermissionError as exc:  # a regular file, not "not a regular file" (c/14)
            if services:
                raise StateDirError(str(path), exc.strerror or "Permission denied",
                                    reading=True) from None
            print(f"hippodrome: cannot read {path}: {exc.strerror}: left out (run this as "
                  "the user who started the stack)", file=sys.stderr, flush=True)
            continue
        except FileNotFoundError:  # not written yet (the follow below waits for it)
            continue
        except OSError as exc:  # replaced since it was listed: as the listing would have
            if out_of_descriptors(exc):  # said; or no descriptor left (ulimit -n: R/17)
                raise StateDirError.from_os(exc, path) from None
            say_left_out(path)
            continue
        if follow:  # (which holds the file open)
            follower.begin(path, info.st_ino, info.st_size)
        for line in tail:
            out.write(prefix(path.stem) + shown(line) + b"\n")
    out.flush()
    while follow:
        time.sleep(0.2)
        try:
            now = sorted(latest.glob("*.log")) if not services else files
            if len(now) > 1 and max(len(as_typed(p.stem)) for p in now) > label_width[0]:
                label_width[0] = max(len(as_typed(p.stem)) for p in now)
                colours.update(colour_map(p.stem for p in now))
            follower.look(now)
        except OSError as exc:
            if not out_of_descriptors(exc):
                raise
            raise StateDirError.from_os(exc, latest) from None
