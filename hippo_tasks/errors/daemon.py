"""The daemon missing, gone mid-answer, unreachable, stranded or already running.

What a command says when it cannot talk to the stack's daemon the way it meant to; each
names the daemon's pid and the one command that gets past it."""

from __future__ import annotations

from hippo_tasks.errors import HippoError


class DaemonNotRunningError(HippoError):
    def __init__(self, project_root: str, detail: str = "", ended: int | None = None
                 ) -> None:
        """`ended`: the pid of the daemon the registry named, found gone (kill -9, a
        crash), whose leftovers `detail` says were cleaned up."""
        self.project_root = project_root
        self.detail = detail
        self.ended = ended

    def message(self) -> str:
        text = f"No Hippodrome daemon is running for {self.project_root}"
        if self.detail:
            text += f" ({self.detail})"
        return text + ". Start the stack with `hd up`."


class DaemonEndedError(DaemonNotRunningError):
    """The daemon went away while a command waited for its answer: exit 5 as no daemon,
    not 6, whose words (`If it is hung, ...`) sent one looking for a hung process."""

    def __init__(self, pid: int, reason: str, foreground: bool = False) -> None:
        """`foreground`: a foreground `hd up`'s daemon, whose words went to its terminal;
        daemon.log, which it does not write, was empty or another run's (w/9)."""
        super().__init__("", "")
        self.pid = pid
        self.reason = reason
        self.foreground = foreground

    def message(self) -> str:
        words = ("the terminal that ran `hd up`" if self.foreground
                 else ".hippodrome/daemon.log")
        return (f"The Hippodrome daemon (pid {self.pid}) ended while this command waited for "
                f"it ({self.reason}): it was killed or crashed (its last words are in "
                f"{words}). `hd status` says what is left; `hd up` starts the stack again.")


class DaemonShutDownError(DaemonEndedError):
    """The daemon went away mid-answer after its shutdown began (its daemon.log's last
    line): a request that reached it as it closed its port. It said "killed or crashed"
    of a graceful `hd down` (adv32 t/4). Still a DaemonEndedError for every caller that
    takes one in its stride (`logs --follow` ends, `down` cleans up)."""

    def message(self) -> str:
        return ("the stack was shut down (by `hd down`, POST /api/shutdown or a signal) "
                f"while this command waited for its daemon (pid {self.pid}): nothing runs "
                "now; `hd up` starts it again")


class StrandedDaemonError(DaemonNotRunningError):
    """A daemon that writes this folder's daemon.log but names itself in no registry
    here: the folder was deleted (or replaced) and made again under its running stack
    (`rm -rf proj`, a fresh clone). Its daemon keeps off the new folder, which may be
    another project; `hd status` said no daemon runs and `Start the stack with hd up`,
    while `hd up` said one already runs (adv30 q/5). Exit 5 as no daemon here."""

    def __init__(self, project_root: str, pids: list[int]) -> None:
        super().__init__(project_root)
        self.pids = pids

    def message(self) -> str:
        shown = ", ".join(map(str, self.pids))
        return (f"A stack started in {self.project_root} before this folder was deleted or "
                f"replaced still runs (daemon pid {shown}), and does not write here any "
                "more, so this command cannot reach it. `hd down` stops it; then `hd up` "
                "starts this folder's stack.")


class DaemonUnreachableError(HippoError):
    def __init__(self, url: str, pid: int, reason: str) -> None:
        self.url = url
        self.pid = pid
        self.reason = reason

    def message(self) -> str:
        return (
            f"The Hippodrome daemon (pid {self.pid}) does not answer at {self.url}: "
            f"{self.reason}. If it is hung, run `hd down --force` to clean up from the "
            "process registry."
        )


class UnlistedDaemonError(DaemonUnreachableError):
    """A daemon the registry does not name, asked to stop (SIGTERM), still running."""

    def __init__(self, pids: list[int], waited: float) -> None:
        super().__init__("", pids[0], "")
        self.pids = pids
        self.waited = waited

    def message(self) -> str:
        shown = ", ".join(map(str, self.pids))
        return (f"pid {shown} (this project's daemon: it writes .hippodrome/daemon.log) did "
                f"not stop within {self.waited:g}s of SIGTERM; `kill -9 {shown}` ends it, "
                "and its guard then ends the services")


EXIT_ALREADY_RUNNING = 7
"""The exit code for a DaemonAlreadyRunningError (tasks/output.py); `hd mcp`'s start
reads it from an `up` that lost a race (mcp/backend.py)."""


class DaemonAlreadyRunningError(HippoError):
    def __init__(self, project_root: str, url: str, pid: int, note: str = "") -> None:
        """`note`: the stack file changed since that daemon started (project.changed_since)."""
        self.project_root = project_root
        self.url = url
        self.pid = pid
        self.note = note

    shutting_down = ""
    """Who asked for the shutdown the daemon is finishing ("" when it is not)."""
    stranded = False
    """It runs from this folder's deleted or replaced predecessor: only `hd down` reaches
    it (StrandedDaemonError)."""
    given_later = False
    """A `down` found it started by an `up` given after the `down` was: the later
    command wins (lifecycle._up_given_later)."""

    def message(self) -> str:
        if self.given_later:
            return (f"The stack running for {self.project_root} (daemon pid {self.pid}) "
                    "was started by an `hd up` given after this `hd down`: the later "
                    "command wins, so it was left running. `hd down` stops it.")
        if self.stranded:
            at = f", at {self.url}" if self.url else ""
            return (f"A stack started in {self.project_root} before this folder was deleted "
                    f"or replaced still runs (daemon pid {self.pid}{at}). `hd down` stops "
                    "it; then `hd up` starts this folder's stack.")
        if self.shutting_down:  # "Use `hd restart`", which sent one back to `up` (r/8)
            return (f"The Hippodrome daemon (pid {self.pid}) for {self.project_root} is "
                    f"shutting down (asked {self.shutting_down}): `hd down` waits for it to "
                    "finish; then `hd up` starts the stack again")
        return (
            f"A Hippodrome daemon (pid {self.pid}) is already running for "
            f"{self.project_root} at {self.url}. Use `hd status`, `hd restart`, or "
            "`hd down` first (`hd down --force` if it does not answer)."
            + (f" Note: {self.note}." if self.note else "")
        )
