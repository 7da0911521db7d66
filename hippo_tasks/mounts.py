"""The mount table, read from /proc/self/mountinfo (Linux).

Two jobs need it: finding the cgroup v2 hierarchy, and never pruning through a mount
point. A device number does not tell a mount apart: a bind mount of a folder on the
same disk shares it, and pruning old log runs emptied one (adv60 1).
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"\\([0-7]{3})")


def mounts() -> list[tuple[str, str]]:
    """(mount point, file system type) of each mount this process sees; [] where there
    is no mountinfo to read."""
    out = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields = left.split(" ")
                if len(fields) > 4 and right:
                    # the kernel writes a space, tab, newline or backslash as \040 ...
                    point = _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
                    out.append((point, right.split(" ", 1)[0]))
    except OSError:
        return []
    return out


def mount_points_in(folder: str) -> list[str]:
    """The mount points at `folder` (a real path) or below it."""
    inside = folder.rstrip("/") + "/"
    return [point for point, _kind in mounts() if point == folder or point.startswith(inside)]
