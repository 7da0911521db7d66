"""Every error a user can meet, defined once with its data.

Each error carries the facts needed to act on it (file, service, field, port, pid...)
and renders a message that says what happened and what to do. The CLI maps these
to exit codes in `hippo_tasks.tasks.output`, the HTTP layer to statuses in
`hippo_tasks.daemon.http`; nothing else decides either.
"""

from __future__ import annotations

import errno
import os
import shlex
from collections.abc import Iterable, Sequence

from hippo_tasks.terminal_text import as_typed, for_terminal


class HippoError(Exception):
    """Base of every error Hippodrome raises on purpose.

    Each subclass keeps its facts as attributes set by a plain `__init__`: these were
    dataclasses, and making their 15 classes cost ~3.6 ms of every `hd` command's start
    (a dataclass compiles its methods when its class is made). `__repr__` and `__eq__`
    still go by those facts, as a dataclass's did."""

    def __str__(self) -> str:
        return self.message()

    def __repr__(self) -> str:
        facts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({facts})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # as a dataclass with eq: unhashable

    def message(self) -> str:
        return self.__class__.__name__


class StackFileError(HippoError):
    """A stack file that cannot be loaded; names the file, service and field."""

    def __init__(self, path: str, problem: str, service: str | None = None,
                 field_name: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.problem = problem
        self.service = service
        self.field_name = field_name
        self.line = line

    def message(self) -> str:
        where = self.path + (f":{self.line}" if self.line else "")
        parts = [where]
        if self.service:
            parts.append(f"service '{cut_long(self.service)}'")
        if self.field_name:
            parts.append(f"field '{cut_long(self.field_name)}'")
        return ": ".join(parts) + f": {cut_long(self.problem)}"


LONGEST_QUOTED = 200
"""Characters of one word (a value, a key, a name) a message quotes: a 1 MB value in a
stack file was quoted whole, twice, a 2 MB "sentence" (adv26 g/5)."""


def cut_long(text: str) -> str:
    """`text` with each run of over LONGEST_QUOTED non-blank characters cut to that many,
    followed by `… (N characters)`."""
    if len(text) <= LONGEST_QUOTED:
        return text
    import re

    return re.sub(rf"\S{{{LONGEST_QUOTED + 1},}}",
                  lambda m: f"{m.group()[:LONGEST_QUOTED]}… ({len(m.group())} characters)",
                  text)


class PortBusyError(HippoError):
    """A port the stack needs is held by another process; nothing was started."""

    outcome = "Nothing was started."

    def __init__(self, port: int, service: str, holder_pid: int | None = None,
                 holder_cmdline: str | None = None, ours: bool = False,
                 unlisted: str = "", held_by_nobody: bool = False,
                 stack: tuple[str | None, str | None] | None = None,
                 sharers: tuple[int, ...] = (), adopted: bool = False) -> None:
        """`unlisted`: what holds the port when no listener is seen, and whether that is
        no process at all (supervision/ports.without_listener); `stack`: (service,
        folder) when the holder is another Hippodrome stack's service (ports.stack_of)."""
        self.stack = stack
        self.sharers = sharers
        """Other processes holding the same socket (supervision/ports.sharers)."""
        self.port = port
        self.service = service
        self.holder_pid = holder_pid
        self.holder_cmdline = holder_cmdline
        self.ours = ours
        self.unlisted = unlisted
        self.held_by_nobody = held_by_nobody
        self.adopted = adopted
        """The holder is an orphan of this stack the daemon adopted (ports.adopted)."""

    def message(self) -> str:
        text = f"port {self.port} (service '{self.service}') is already in use"
        if self.holder_pid is not None:
            text += f" by pid {self.holder_pid}"
            if self.holder_cmdline:
                text += f" ({self.holder_cmdline})"
            if self.sharers:  # stopping the one named frees nothing while these hold it
                text += (f" and pid{'s' if len(self.sharers) > 1 else ''} "
                         f"{', '.join(map(str, self.sharers))}, which hold the same socket")
        else:
            text += self.unlisted or " (holder unknown: it may belong to another user)"
        if self.adopted:
            text += (f", an orphan of this stack's services that the daemon adopted: it left "
                     "its service's process group and cleared its environment, so it is "
                     f"ended at `hd down`, not with its service. End it (`kill "
                     f"{self.holder_pid}`), then `hd start --service "
                     f"{shlex.quote(self.service)}`")
            return f"{text}. {self.outcome}"
        if self.ours:
            text += (
                ". It is a leftover of this project's stack: run `hd down --force`"
                " to clean it up"
            )
        elif self.stack is not None:
            name, folder = self.stack
            if name is None:
                text += (f", the daemon of the Hippodrome stack in {folder}: stop that "
                         f"stack (`hd down --project-root {shlex.quote(str(folder))}`), or "
                         "move this stack with --port-offset N")
            elif folder is not None:
                text += (f", service '{name}' of the Hippodrome stack in {folder}, whose "
                         "daemon may restart it: stop it there (`hd stop --service "
                         f"{shlex.quote(name)} --project-root {shlex.quote(folder)}`, or "
                         f"`hd down --project-root {shlex.quote(folder)}`), or move this "
                         "stack with --port-offset N")
            else:
                text += (f", service '{name}' of another Hippodrome stack: stop it with "
                         "`hd stop` or `hd down` in that stack's folder, or move this "
                         "stack with --port-offset N")
        elif self.held_by_nobody:
            text += ". Try again in a minute, or move this stack with --port-offset N"
        else:
            text += (". Stop those processes" if self.sharers else ". Stop that process") \
                + ", or move this stack with --port-offset N"
        return f"{text}. {self.outcome}"


class PortTakenError(PortBusyError):
    """A service's port taken between the start's port check and the service's own
    start (another stack's service, a program started meanwhile): a stranger answered
    its readiness probe, `up` said ready, and the service crash-looped on EADDRINUSE."""

    outcome = "It was taken after the start's port check; the service was not started."


class PortsBusyError(HippoError):
    """Several busy ports, reported together so one run shows them all."""

    def __init__(self, busy: Sequence[PortBusyError]) -> None:
        self.busy = busy

    def message(self) -> str:
        return "\n".join(b.message() for b in self.busy)


class PortsBusyAtStartError(PortsBusyError):
    """A detached daemon's PortsBusyError, as its sentence came back to `up --detach`
    (a port taken between the pre-flight and the daemon's bind: two projects started at
    once). Exit 4 as at the pre-flight: it was 2, "bad arguments", with the same words."""

    def __init__(self, text: str) -> None:
        super().__init__(())
        self.text = text

    def message(self) -> str:
        return self.text


class DaemonNotRunningError(HippoError):
    def __init__(self, project_root: str, detail: str = "") -> None:
        self.project_root = project_root
        self.detail = detail

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

    def message(self) -> str:
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
            "`hd down` first." + (f" Note: {self.note}." if self.note else "")
        )


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to a mistyped one, or None when none is close enough.

    difflib is imported only when a name was wrong: every command and the daemon load
    this module, and difflib was ~0.2 MB of the daemon's memory for the stack's life."""
    folded = {k.casefold(): k for k in known}
    if name.casefold() in folded:  # `DB` for `db`: the likeliest slip scored 0 below
        return folded[name.casefold()]
    if len(name) > LONGEST_QUOTED:  # no slip of a real name; difflib took 1.1 s on 1 MB
        return None
    import difflib

    close = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest known name, or '' when none is close."""
    close = closest(name, known)
    return f"; did you mean '{close}'?" if close else ""


def close_hint(name: str, known: Iterable[str], before: str = "'", after: str = "'") -> str:
    """` (did you mean 'x'?)`, the stack file's form, or '' when none is close."""
    close = closest(name, known)
    return f" (did you mean {before}{close}{after}?)" if close else ""


class UnknownServiceError(HippoError):
    """A service name that is not in the running stack; lists the stack's and the closest."""

    def __init__(self, name: str, known: Sequence[str] = (), left_out: str = "") -> None:
        """`left_out`: why the stack file's service of that name is not in this run."""
        self.name = name
        self.known = known
        self.left_out = left_out

    def message(self) -> str:
        known = ", ".join(self.known) if self.known else "none"
        if self.left_out:  # it read "unknown service", and the agent gave up on it
            how = ("set enabled = true for it in the stack file (or remove that line), then "
                   "`hd down` and `hd up` run it" if "enabled = false" in self.left_out
                   else "`hd down`, then `hd up` (with options that include it), runs it")
            return (f"'{self.name}' is in the stack file but not part of this run "
                    f"({self.left_out}; services in this run: {known}): {how}")
        return (f"unknown service '{self.name}' (services in this stack: {known})"
                + did_you_mean(self.name, self.known))


class ServiceStartError(HippoError):
    """A blocking service failed to start or become ready; the stack was stopped."""

    def __init__(self, service: str, reason: str, last_lines: Sequence[str] = (),
                 log_path: str | None = None, log_note: str | None = None) -> None:
        self.service = service
        self.reason = reason
        self.last_lines = last_lines
        self.log_path = log_path
        self.log_note = log_note
        """Why the log file lacks lines (a full disk): it was named, empty, with no word
        (adv26 g/6)."""

    @property
    def port_taken(self) -> bool:
        """Its port was taken between the start's port check and its own start (another
        project's `up` at the same moment): a busy port, exit 4 as at the pre-flight; it
        was 1, a broken service (r/4)."""
        return PortTakenError.outcome in self.reason

    def message(self) -> str:
        text = f"service '{self.service}' failed: {self.reason}"
        if self.last_lines:
            text += "\n--- last log lines ---\n" + "\n".join(map(for_terminal, self.last_lines))
        if self.log_path:
            text += f"\n(full log: {self.log_path}" + \
                (f"; {self.log_note})" if self.log_note else ")")
        return text


class ProductionGuardError(HippoError):
    def message(self) -> str:
        return (
            "Refusing to connect to the PRODUCTION cell without confirmation: stdin is not a "
            "terminal. Pass --yes if you really mean it, or use --cell staging / --cell local."
        )


class StartCutShortError(HippoError):
    """`up --detach` saw its daemon end before the stack's start was over: `hd down`
    or a signal from elsewhere, or a crash. Only this run's daemon output is shown."""

    def __init__(self, reason: str, last_lines: tuple[str, ...], log_path: str) -> None:
        self.reason = reason
        self.last_lines = last_lines
        self.log_path = log_path

    def message(self) -> str:
        text = self.reason
        if self.last_lines:
            text += "; its output in this run:\n" + "\n".join(map(for_terminal, self.last_lines))
        return text + f"\n(full output: {self.log_path})"


class UsageError(HippoError):
    """Bad arguments to a command or an API call."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def message(self) -> str:
        return self.problem


def check_utf8(name: str, value: str, must: str) -> None:
    """An argument holding a byte that is not UTF-8 (the shell's `$'dev-\\xff-'`, which
    Python keeps as a lone surrogate) can be written into no manifest, JSON body or
    header: refused up front, shown as typed, exit 2. `must`: what needs UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{name} '{as_typed(value)}' is not UTF-8 text, which {must}: "
                         "write it in UTF-8 (or plain ASCII)") from None


class RecordingError(UsageError):
    """A webhook recording that cannot be replayed: names the file and, where it is one
    line's fault, the line (a usage error: exit 2, HTTP 400)."""

    def __init__(self, problem: str, path: str = "", line: int | None = None) -> None:
        super().__init__(problem)
        self.path = path
        self.line = line

    def message(self) -> str:
        where = self.path + (f":{self.line}" if self.line else "")
        return f"{where}: {self.problem}" if where else self.problem


class EventsLeftError(HippoError):
    """`hd down` stopped the stack but could not delete what `--enable-events` made (the
    lines above say why): it ended `could not delete ...`, exit 0, as if all were done."""

    def __init__(self, count: int) -> None:
        self.count = count

    def message(self) -> str:
        what, it = ("1 resource", "it stays") if self.count == 1 else \
            (f"{self.count} resources", "they stay")
        return (f"the stack is stopped, but {what} made by --enable-events could not be "
                f"deleted (said above): {it} recorded in .hippodrome/registry.json, and "
                "the next `hd down` or `hd up` tries again")


class ShutdownInProgressError(HippoError):
    def __init__(self, by: str = "") -> None:
        """`by`: who asked for the shutdown (`by `hd down` ...`), when known."""
        super().__init__(by)
        self.by = by

    def message(self) -> str:
        by = f" ({self.by})" if self.by else ""
        return (f"the stack is shutting down{by}: nothing starts or stops any more; "
                "run `hd up` again once it has stopped")


class StackShutDownError(HippoError):
    """A start or restart that a shutdown (`hd down`) overtook while it waited: it said
    "'db' is not running; `hd start --service db` starts it", exit 1, with no daemon
    left to start anything."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def message(self) -> str:
        return self.text


class RequestTimeoutError(HippoError):
    def __init__(self, what: str, seconds: float) -> None:
        self.what = what
        self.seconds = seconds

    def message(self) -> str:
        return f"{self.what} did not finish within {self.seconds:g}s"



class LogReadersBusyError(HippoError):
    """Every log-query slot stayed taken while this request waited."""

    def __init__(self, slots: int, waited: float) -> None:
        self.slots = slots
        self.waited = waited

    def message(self) -> str:
        return (f"the daemon has been answering {self.slots} other log queries for "
                f"{self.waited:g}s (it answers {self.slots} at a time); try again, or ask "
                "for fewer lines or a narrower filter")


class LogAnswersUnreadError(HippoError):
    """Log answers the clients have not read kept the daemon at its limit while this
    request waited."""

    def __init__(self, held: int, most: int, waited: float) -> None:
        self.held_mb = round(held / 2**20)
        self.most_mb = round(most / 2**20)
        self.waited = waited

    def message(self) -> str:
        return (f"the daemon has held {self.held_mb} MB of log answers that their clients "
                f"have not read for {self.waited:g}s (it holds at most {self.most_mb} MB); "
                "try again, ask for fewer lines, or end the client that is not reading "
                "(a paused `curl`, a stopped script): an unread answer is let go at "
                "most 15 s after the daemon began to send it")


class LifecycleBusyError(HippoError):
    """Another `up` or `down` for this project held the lifecycle lock for too long."""

    def __init__(self, project_root: str, holder: str, waited: float) -> None:
        self.project_root = project_root
        self.holder = holder
        self.waited = waited

    def message(self) -> str:
        return (
            f"another command ({self.holder}) has been starting or stopping the stack of "
            f"{self.project_root} for over {self.waited:g}s. Wait for it to finish, or "
            "stop it (Ctrl+C in its terminal); `hd down --force` cleans up afterwards."
        )


class ProcessLimitError(HippoError):
    """A thread or process could not be made: the user's process limit (`ulimit -u`)
    is reached. Was a traceback (`RuntimeError: can't start new thread`, or
    `BlockingIOError` from fork) inside "the daemon exited with code 70"."""

    def __init__(self, what: str, then: str = "run `hd up` again", said: str = "") -> None:
        self.what = what
        self.then = then
        self.said = said
        """The whole sentence as another process said it (the daemon, to `up`)."""

    def message(self) -> str:
        if self.said:
            return self.said
        try:
            import resource

            limit = resource.getrlimit(resource.RLIMIT_NPROC)[0]
            shown = f" (ulimit -u: {limit})" if limit != resource.RLIM_INFINITY else ""
        except (ImportError, OSError, ValueError):
            shown = ""
        return (f"cannot start {self.what}: this user's process limit is reached{shown}, "
                "or the system's, or memory for a thread's stack is short (a low `ulimit "
                "-v`, or a huge `ulimit -s`, refuses a thread the same way). End some "
                f"processes or raise the limit, then {self.then}.")

    @classmethod
    def of(cls, exc: BaseException, what: str) -> ProcessLimitError | None:
        """The error for `exc` if it is the kernel refusing a thread or process."""
        if isinstance(exc, BlockingIOError) or (
                isinstance(exc, RuntimeError) and "can't start new thread" in str(exc)):
            return cls(what)
        return None


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
