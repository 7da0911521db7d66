"""A file or folder Hippodrome must write (`.hippodrome`, `.logs`, `hd init`'s files)
that it cannot: said by cause (a link, a pipe, a folder in a file's place, a limit, a
read-only or full disk), since "make the folder writable" is the remedy for few of them."""

from __future__ import annotations

import errno
import os
import shlex

from hippo_tasks.errors import HippoError


def _limit(name: str, unit: str = "") -> str:
    """The soft limit `resource.RLIMIT_<name>` as a message says it, "?" if unread."""
    try:
        import resource

        limit = resource.getrlimit(getattr(resource, f"RLIMIT_{name}"))[0]
    except (ImportError, OSError, ValueError, AttributeError):
        return "?"
    return "unlimited" if limit == resource.RLIM_INFINITY else f"{limit}{unit}"


EXIT_STATE_DIR = 10
"""The exit code for a StateDirError (tasks/output.py), also a detached daemon's."""


class StateDirError(HippoError):
    """A folder Hippodrome must write (`.hippodrome`, `.logs`) cannot be written."""

    def __init__(self, path: str, problem: str, reading: bool = False) -> None:
        self.path = path
        self.problem = problem
        self.reading = reading

    @classmethod
    def from_os(cls, exc: OSError, where: str | os.PathLike[str],
                reading: bool = False) -> StateDirError:
        """Named for `where`, the folder to make writable; but a folder standing where a
        file belongs (`mkdir .hippodrome/registry.lock`) is named itself: for a rename
        onto it (`.logs/latest`) that is the target, not the temporary file."""
        if exc.errno in (errno.EISDIR, errno.ELOOP, errno.E2BIG):  # a link, a program
            where = exc.filename2 or exc.filename or where
        if not os.path.isabs(where) and isinstance(exc.filename2, str) and \
                os.path.isabs(exc.filename2):
            # A link's own name, not its target's: `latest` -> `20261206-195955` was
            # said as "cannot write 20261206-195955", a name found nowhere (adv45 R/5).
            where = exc.filename2
        return cls(str(where), exc.strerror or str(exc), reading)

    def message(self) -> str:
        if self.problem in (os.strerror(errno.EMFILE), os.strerror(errno.ENFILE)):
            # Not the folder, nor the user: it read "Make the folder writable" or "Run
            # this as the user who started the stack" under a tiny `ulimit -n`.
            return (f"cannot open {self.path}: {self.problem} (the open-files limit, "
                    f"ulimit -n: {_limit('NOFILE')}): raise it (`ulimit -n 4096`) and run again; "
                    "nothing was started or stopped.")
        if self.problem == os.strerror(errno.E2BIG):  # a program started, not a folder
            return (f"cannot start {self.path}: its environment and command line are too "
                    "long for the system (E2BIG; `getconf ARG_MAX` bytes): unset some large "
                    "variables; nothing was started or stopped.")
        if self.problem == os.strerror(errno.ELOOP):  # O_NOFOLLOW met a link (adv24 c/12)
            return (f"cannot write {self.path}: it is a symbolic link, and Hippodrome "
                    "writes its own files only, never through a link (one committed to a "
                    "repository, or planted, would have it overwrite the file it leads "
                    "to): remove the link (Hippodrome makes the file). Nothing was started "
                    "or stopped.")
        if self.reading:  # another user's stack: its registry was taken for corrupt
            return (f"cannot read {self.path}: {self.problem}. Run this as the user who "
                    "started the stack (or make the file readable); nothing was started "
                    "or stopped.")
        if self.problem in ("File exists", "Not a directory"):  # mkdir's and open's words
            return (f"cannot write {self.path}: a file stands where Hippodrome needs a "
                    "folder (.hippodrome, .logs or one inside them); move that file away. "
                    "Nothing was started or stopped.")
        if self.problem == os.strerror(errno.EFBIG):  # the folder is fine (adv45 R/9)
            return (f"cannot write {self.path}: {self.problem}: the shell's file-size limit "
                    f"(ulimit -f: {_limit('FSIZE', ' bytes')}) is too small for Hippodrome's "
                    "files; raise it (`ulimit -f unlimited`) and run again; nothing was "
                    "started or stopped.")
        if self.problem.endswith(", not a file"):  # a named pipe (adv45 R/7)
            return (f"cannot write {self.path}: {self.problem}; move it away (Hippodrome "
                    "makes the file again). Nothing was started or stopped.")
        if self.problem == "Is a directory":
            return (f"cannot write {self.path}: a folder stands where Hippodrome keeps a "
                    "file; move that folder away (Hippodrome makes the file again). "
                    "Nothing was started or stopped.")
        return (
            f"cannot write {self.path}: {self.problem}. Make the folder writable (or free "
            "disk space), or run from a project folder you can write to; nothing was "
            "started or stopped."
        )


class RegistryLockedError(StateDirError):
    """The registry's lock held by another process past the wait: it read "Make the
    folder writable (or free disk space)", which it was (adv36 f/4)."""

    def message(self) -> str:
        return (f"{self.problem}: end it or let it finish, then run this again. Nothing "
                "was started or stopped.")


class SharedStateDirError(StateDirError):
    """`.hippodrome` is a symbolic link. To another project's `.hippodrome`, two stacks
    would share one registry, each taking the other's for a copied one (set aside under
    its running daemon) and `up` writing its stack over it. To any folder, the daemon's
    output is that folder's daemon.log, by which `down --force` (and the search for a
    stack the registry does not name) proves a daemon is this project's: it was left
    running, exit 0 (adv25 d/3)."""

    def __init__(self, path: str, target: str) -> None:
        super().__init__(path, "a symbolic link")
        self.target = target

    def message(self) -> str:
        remove = (f"Remove the link (`rm {shlex.quote(self.path)}`; Hippodrome makes the "
                  "folder); nothing was started or stopped.")
        if os.path.basename(self.target) == ".hippodrome":
            return (f"{self.path} is a link to {self.target}, the state folder of the "
                    f"project in {os.path.dirname(self.target)}: two stacks cannot share "
                    f"one. {remove}")
        return (f"{self.path} is a symbolic link (to {self.target}): the stack's state "
                "folder must be a folder of the project, since Hippodrome knows its daemon "
                f"by the path of .hippodrome/daemon.log. {remove}")


class StarterWriteError(StateDirError):
    """`hd init` could not write its files: it starts nothing, so the outcome is what it
    did not write (it ended "nothing was started or stopped")."""

    def message(self) -> str:
        return (f"cannot write {self.path}: {self.problem}. Make the folder writable (or "
                "free disk space), or run hd init in a folder you can write to; nothing "
                "was written.")
