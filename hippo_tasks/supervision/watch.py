"""Hot reload: restart a service when files matching its `watch` globs change.

The kernel says what changed (watchfiles: inotify, FSEvents, kqueue), so an idle
watcher costs nothing however many files it covers; the polling watcher it replaces
stat()ed every matching file twice a second (a third of a core over 20,000 files).
Polling remains where notifications cannot work: network file systems and some bind
mounts never deliver them. `HIPPODROME_WATCH_POLL=1` forces it (watchfiles also
falls back to it by itself when the kernel refuses, and on WSL).

A burst of changes (a `git checkout`, an editor's save-and-format) becomes one
restart: the restart waits until the files have been quiet for DEBOUNCE seconds.
Only the folders the globs can reach are watched (`src/**/*.py` watches `src`, not a
`node_modules` beside it), and only paths matching a glob count, with Path.glob's
rules: `**` is any number of folders, `*`, `?` and `[...]` stay within one name.

One watcher serves the whole stack (StackWatcher): one inotify instance over the union
of every service's folders, each change dispatched to the services whose globs match
it (the kernel allows a user 128 instances in all; one a service ran out of them).
Hippodrome's own folders (.logs, .hippodrome; a nested project's too) never count, nor do
the files Python and
editors leave about (watchfiles' DefaultFilter: __pycache__, *.pyc, .git, swap files).
A watched folder deleted or replaced is watched again; a folder that cannot be read is
named in the service's log and the rest is still watched.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NamedTuple

from hippo_tasks.model.globs import glob_regex, literal_folders, parts

DEBOUNCE = 0.3
"""Seconds of quiet that end a burst."""
STEP_MS = 50
"""watchfiles hands over what it gathered once no event came for this long."""
GATHER_MS = 100
"""...and at the latest this long after the first one, while events keep coming. Its
default is 1,600 ms: a build or a code generator rewriting files every few ms was
handed over in 1.6 s batches, so each 0.3 s quiet period ended between two of them and
the service restarted mid-burst, on a half-written tree, every 1.6 s. While a burst goes
on, hand-overs come one STEP_MS, this, and the thread's own work apart: that must stay
well below DEBOUNCE, whose quiet is timed from the last hand-over. At 200 ms they came
0.25 s apart, and a watch thread kept from running for 50 ms (a loaded machine, or the
daemon's loop holding the GIL) ended the quiet mid-burst; at 100 ms, 0.15 s apart."""
POLL_DELAY_MS = 300
"""Between two scans, when polling. A change is seen only at a scan, so quiet is judged
over DEBOUNCE plus this when polling."""
POLL_ENV = "HIPPODROME_WATCH_POLL"
POLL_ON = ("1", "true", "yes", "on")
POLL_WORDS = (*POLL_ON, "0", "false", "no", "off")
"""Every word POLL_ENV takes (`up` refuses any other: tasks/context.check_switches)."""
ADDED = 1
"""watchfiles.Change.added (an IntEnum; its module is imported only by the watcher)."""
MODIFIED = 2
"""watchfiles.Change.modified."""
DELETED = 3
"""watchfiles.Change.deleted."""


def poll_forced(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool | None:
    """True when the setting asks for polling, or where watchfiles would have chosen it
    (`WATCHFILES_FORCE_POLLING` set, or WSL 2, whose Windows drives report no changes):
    the scan is poll_scan.py's, not watchfiles'. None: the kernel's notifications."""
    value = environ.get(POLL_ENV, "").strip().lower()
    if value in POLL_ON:
        return True
    theirs = environ.get("WATCHFILES_FORCE_POLLING", "").strip().lower()
    if theirs:
        return True if theirs not in ("false", "disable", "disabled") else None
    release = os.uname().release.lower() if hasattr(os, "uname") else ""
    return True if "microsoft-standard" in release and sys.platform == "linux" else None


def target_folders(root: Path, patterns: Iterable[str]) -> set[Path]:
    """Each pattern's literal leading folders: what the watch is for."""
    return {Path(os.path.normpath(root.joinpath(*literal_folders(p)))) for p in patterns}


def outermost(folders: Iterable[Path]) -> list[Path]:
    """The folders, those inside another one dropped (a recursive watch covers them)."""
    found = set(folders)
    return sorted(f for f in found if not any(o != f and o in f.parents for o in found))


def watch_roots(root: Path, patterns: Iterable[str]) -> list[Path]:
    """The folders to hand the kernel: each pattern's literal leading folders (the
    nearest existing one, so a folder made later is still seen), nested ones dropped."""
    found: set[Path] = set()
    for folder in target_folders(root, patterns):
        while not folder.is_dir() and folder != folder.parent:
            folder = folder.parent
        found.add(folder)
    return outermost(found)


def climbs(parts_: Iterable[str]) -> int:
    """How many leading `..` components: how far above the root a path (or pattern) is."""
    n = 0
    for part in parts_:
        if part != "..":
            break
        n += 1
    return n


class GlobMatcher:
    """Which changed paths count: files matching a pattern, relative to the root.

    A path outside the root (`../web/app.py`, from the stack's one watcher) counts only
    for a pattern that climbs out as far by name (`../web/*.py`): as with Path.glob, a
    wildcard never stands for `..`. `**/*.py` took a sibling service's save for one of
    its own, and one save restarted every service of a monorepo."""

    def __init__(self, root: Path, patterns: Iterable[str]) -> None:
        self.root = root
        self.regexes = [(climbs(parts(p)), glob_regex(p)) for p in patterns]
        self.folders = [_folder_parts(parts(p)) for p in patterns]
        """Each pattern's folder part (`src/**` of `src/**/*.py`), for `may_hold`."""

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    def matches(self, path: str) -> bool:
        rel = self.relative(path)
        up = climbs(rel.split("/"))
        return any(up == n and rx.fullmatch(rel) for n, rx in self.regexes) \
            and not os.path.isdir(path)

    def may_hold(self, folder: str) -> bool:
        """Could a file under `folder` match? (`src/lib` for `src/**/*.py` or
        `src/lib/*.py`, `src` for `src/app/*.py`; not `docs` for either.)"""
        rel = self.relative(folder).split("/")
        return any(_leads_into(rel, f) for f in self.folders)


def _folder_parts(pattern: Sequence[str]) -> list[str]:
    """The folders a pattern's files lie in: all but its last part (all of `src/**`)."""
    return list(pattern) if pattern and pattern[-1] == "**" else list(pattern[:-1])


def _leads_into(path: Sequence[str], folder: Sequence[str]) -> bool:
    """`path` is one of the folders `folder` (pattern parts) names, or above one."""
    if not path:
        return True
    if not folder:
        return False
    if folder[0] == "**":
        return _leads_into(path, folder[1:]) or _leads_into(path[1:], folder)
    return fnmatchcase(path[0], folder[0]) and _leads_into(path[1:], folder[1:])


class Watched(NamedTuple):
    """One service's `watch` globs, relative to its cwd."""

    name: str
    cwd: Path
    patterns: tuple[str, ...]


SYSTEM_TREES = ("/proc", "/sys", "/dev")
"""The kernel's own trees: tens of thousands of folders, links back to `/`, no source."""


def out_of_bounds(link: str) -> str | None:
    """Why a link to a folder is not followed, or None when it may be. One to a folder
    holding it (`/`, `..`, a home folder) takes the watch over everything around the
    project; one into /proc or /sys over the kernel's trees. notify adds its watches
    with the GIL held: `ln -s / src/root` under a running stack kept the daemon from
    answering for good while its memory grew, `ln -s /proc src/p` for 25 s (adv55 2)."""
    target = os.path.realpath(link)
    here = os.path.realpath(os.path.dirname(link))
    if inside(here, (target.rstrip(os.sep),)):  # ("" for `/`: every path is below it)
        return f"leads to {target}, a folder that holds it"
    if inside(target, SYSTEM_TREES):
        return f"leads to {target}, the kernel's own tree"
    return None


def inside(path: str, folders: Iterable[str]) -> bool:
    """`path` is one of the folders or below one (plain string prefixes: this runs for
    every change the kernel reports)."""
    return any(path == f or path.startswith(f + os.sep) for f in folders)


def nested_state(path: str) -> bool:
    """`path` is in another project's Hippodrome folders, below this one (a stack per
    package of a monorepo): a `.hippodrome` anywhere, or a `.logs` beside one. The inner
    stack's registry writes and log lines restarted the outer stack's `**/*` services
    (adv45 R/4). A `.logs` of another tool, with no `.hippodrome` beside it, counts."""
    sep = os.sep
    if f"{sep}.hippodrome{sep}" in path + sep:
        return True
    at = (path + sep).find(f"{sep}.logs{sep}")
    return at >= 0 and os.path.isdir(os.path.join(path[:at], ".hippodrome"))


def own_prefixes(folders: Iterable[Path]) -> tuple[str, ...]:
    """Hippodrome's folders as the kernel may name them: as given and resolved."""
    out: set[str] = set()
    for folder in folders:
        out.add(os.path.abspath(folder))
        out.add(os.path.realpath(folder))
    return tuple(sorted(out))


class Subscriber:
    """One service's view of the stack's changes: its globs, minus Hippodrome's own
    folders and what watchfiles' DefaultFilter leaves out (Python writes __pycache__ on
    every start: `src/**` restarted twice per save). A default-ignored folder the
    globs name outright (`node_modules/x/*.js`) still counts."""

    def __init__(self, watched: Watched, own: tuple[str, ...]) -> None:
        from watchfiles import DefaultFilter

        self.name = watched.name
        self.matcher = GlobMatcher(watched.cwd, watched.patterns)
        self.cwd = os.path.abspath(watched.cwd)
        self.own = own
        named = {part for p in watched.patterns for part in parts(p)}
        self.ignored = DefaultFilter(
            ignore_dirs=[d for d in DefaultFilter.ignore_dirs if d not in named])

    def counts(self, change: Any, path: str) -> bool:
        """A file of this service's that matches and is not ignored."""
        return self.admits(change, path) and self.matcher.matches(path)

    def admits(self, change: Any, path: str) -> bool:
        """Outside Hippodrome's folders, and not ignored (a pattern may climb out of the
        cwd, `../shared/*.py`: the globs alone say what is the service's)."""
        if inside(path, self.own) or nested_state(path):  # (reached through a link:
            return False  # StackWatcher._wants)
        return bool(self.ignored(change, self.matcher.relative(path).replace("/", os.sep)))

    def wants(self, change: Any, path: str) -> bool:
        """A matching file, or a folder that appeared (moved in whole: the kernel names
        the folder, not each file in it)."""
        if not self.admits(change, path):
            return False
        return self.matcher.matches(path) or (int(change) == ADDED and os.path.isdir(path))

    def expand(self, changes: Iterable[tuple[Any, str]],
               gone: Collection[str] = ()) -> set[str]:
        """Matching paths among the changes, a folder that appeared standing for its
        matching files (a folder merely "modified" is one whose entries changed: those
        entries are reported on their own), and a folder that went away whole (in
        `gone`: a link to one, a pattern's folder moved away) standing for itself.
        Each folder is walked once: a folder inside one walked already was seen with
        it. A tree 1,100 folders deep made while watched is 1,100 folders that appeared,
        and walking each one's subtree kept the watcher at a full core, growing with the
        square of the depth, missing every save meanwhile."""
        out: set[str] = set()
        walked: set[str] = set()
        for change, path in sorted(changes, key=lambda c: len(c[1])):  # outer first
            if not self.admits(change, path):
                continue
            if int(change) == ADDED and os.path.isdir(path):
                linked = os.path.islink(path)
                if path in walked or (linked and out_of_bounds(path)) or (
                        self.own and linked and inside(os.path.realpath(path), self.own)):
                    # (a link made to Hippodrome's own folder, `ln -s ../.logs src/logs`,
                    # counted each log file in it once: adv39 p/2)
                    continue
                for folder, dirs, files in walk(path):
                    walked.add(folder)
                    dirs[:] = [d for d in dirs
                               if self.admits(ADDED, os.path.join(folder, d))]
                    out.update(self.matcher.relative(os.path.join(folder, f)) for f in files
                               if self.counts(ADDED, os.path.join(folder, f)))
            elif self.matcher.matches(path) or (int(change) == DELETED and path in gone
                                                and self.matcher.may_hold(path)):
                out.add(self.matcher.relative(path))
        return out


def walk(top: str | Path, onerror: Callable[[OSError], object] | None = None,
         links_to: set[str] | None = None) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk's top-down (folder, dirs, files), links to folders listed but not entered
    (and their paths added to `links_to`), and `dirs` prunable in place, without
    recursion: 3.11's os.walk recurses, and a tree 1,100 folders deep under a watched
    one stopped hot reload for the whole stack with a RecursionError (and left the
    daemon spinning)."""
    stack = [os.fspath(top)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            if onerror is not None:
                onerror(exc)
            continue
        dirs: list[str] = []
        files: list[str] = []
        links: set[str] = set()
        for entry in entries:
            try:
                is_dir = entry.is_dir()
                if is_dir and entry.is_symlink():
                    links.add(entry.name)
            except OSError as exc:
                is_dir = False
                # A link this user may not follow (`ln -s /proc/1/root src/r`) is a
                # folder that cannot be read as much as one of mode 000 is, and was
                # passed by in silence (adv56). A loop or a dangling link is no folder.
                if onerror is not None and isinstance(exc, PermissionError):
                    onerror(exc)
            (dirs if is_dir else files).append(entry.name)
        if links and links_to is not None:
            links_to.update(os.path.join(folder, d) for d in links)
        yield folder, dirs, files
        stack.extend(os.path.join(folder, d) for d in reversed(dirs) if d not in links)


def unreadable(roots: Iterable[Path], links: set[str] | None = None
               ) -> tuple[list[str], list[str]]:
    """(folders below the roots that cannot be read, the readable folders to hand the
    kernel besides the roots), and the links to folders found, into `links`. notify's
    recursive add stops at the first folder it cannot read, silently leaving later
    siblings unwatched: when a tree has one, each readable folder in it is added on its
    own too."""
    blocked: list[str] = []
    extra: list[str] = []
    for root in roots:
        errors: list[OSError] = []
        found = [folder for folder, _dirs, _files in walk(root, onerror=errors.append,
                                                           links_to=links)]
        if errors:
            blocked += [str(e.filename) for e in errors]
            extra += [f for f in found if f != str(root)]
    return blocked, extra


DECODE_ERROR = re.compile(r'Unable to decode path(?: "(.*)" to string)?')
"""watchfiles' error for a changed file whose name is not UTF-8; group 1 is the name
as Rust debug-prints it (`caf\xE9.py`), close enough to match a service's globs."""
