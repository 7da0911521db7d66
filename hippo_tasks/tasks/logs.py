"""`hd logs`: read `.logs/latest/`, which exists whether or not a daemon runs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hippo_tasks.errors import UsageError, did_you_mean
from hippo_tasks.supervision.printer import colour_for, use_colour
from hippo_tasks.tasks.context import resolve_root
from hippo_tasks.tasks.declare import task
from hippo_tasks.tasks.output import handles_errors
from hippo_tasks.terminal_text import line_for_terminal

if TYPE_CHECKING:
    from invoke.context import Context


def tail_lines(path: Path, count: int, block: int = 65536) -> list[bytes]:
    """The last `count` lines of a file without reading all of it."""
    if count <= 0:
        return []
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        pos = fh.tell()
        blocks: list[bytes] = []
        breaks = 0
        while pos > 0 and breaks <= count:  # each block read and counted once: a log of
            step = min(block, pos)          # long lines (a \r progress bar) was copied
            pos -= step                     # and counted again per block, quadratically
            fh.seek(pos)
            blocks.append(fh.read(step))
            breaks += blocks[-1].count(b"\n")
    lines = b"".join(reversed(blocks)).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines[-count:]


def _files(latest: Path, service: str) -> list[Path]:
    if not latest.exists():
        raise UsageError(f"no logs yet: {latest} does not exist (start the stack with "
                         "`hd up`)")
    if service:
        path = latest / f"{service}.log"
        if not path.exists():
            names = sorted(p.stem for p in latest.glob("*.log"))
            raise UsageError(f"no log for service '{service}' in {latest} (logs: "
                             f"{', '.join(names) or 'none'}){did_you_mean(service, names)}")
        return [path]
    return sorted(latest.glob("*.log"))


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


@task(help={"service": "one service (default: all)", "follow": "keep printing new lines",
            "lines": "how many lines from the end, a whole number (default 50)",
            "timestamps": "prefix each line with the time the daemon read it (needs the "
                          "running daemon: the files hold no times)"})
@handles_errors
def logs(c: Context, service: str = "", follow: bool = False, lines: int | str = "50",
         project_root: str = "", timestamps: bool = False) -> None:
    """Show services' logs from `.logs/latest/` (with --timestamps, from the daemon)."""
    lines = _count(lines)
    if timestamps:
        from hippo_tasks.supervision.printer import colour_map
        from hippo_tasks.tasks import timed_logs

        root = resolve_root(project_root)
        names = [p.stem for p in (root / ".logs" / "latest").glob("*.log")]
        timed_logs.show(root, service, lines, follow, colour_map(names) if use_colour() else None)
        return
    latest = resolve_root(project_root) / ".logs" / "latest"
    files = _files(latest, service)
    colour = use_colour()
    width = max((len(p.stem) for p in files), default=0)
    from hippo_tasks.supervision.printer import colour_map

    colours = colour_map(p.stem for p in latest.glob("*.log"))  # as `up` paints them
    out = sys.stdout.buffer

    def prefix(name: str) -> bytes:
        if len(files) == 1:
            return b""
        label = name.ljust(width).encode() + b" | "
        return ((colours.get(name) or colour_for(name)).encode() + label + b"\x1b[0m"
                if colour else label)

    offsets: dict[Path, tuple[int, int]] = {}
    """Per file: the inode read and how far. A new run (`hd up` again) makes new files
    under the same names: read from their start, not from the old run's offset."""
    for path in files:
        for line in tail_lines(path, int(lines)):
            out.write(prefix(path.stem) + line_for_terminal(line) + b"\n")
        info = path.stat()
        offsets[path] = (info.st_ino, info.st_size)
    out.flush()
    partial: dict[Path, bytes] = {}
    while follow:
        time.sleep(0.2)
        for path in sorted(latest.glob("*.log")) if not service else files:
            try:
                info = path.stat()
            except FileNotFoundError:  # between runs: the new one has not written it yet
                continue
            size = info.st_size
            inode, start = offsets.get(path, (info.st_ino, 0))
            if inode != info.st_ino or size < start:
                start = 0
                partial.pop(path, None)
            if size == start:
                continue
            with open(path, "rb") as fh:
                fh.seek(start)
                chunk = partial.pop(path, b"") + fh.read(size - start)
            offsets[path] = (info.st_ino, size)
            *whole, rest = chunk.split(b"\n")
            if rest:
                partial[path] = rest
            for line in whole:
                out.write(prefix(path.stem) + line_for_terminal(line) + b"\n")
        out.flush()
