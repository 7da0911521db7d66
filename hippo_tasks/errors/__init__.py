"""Every error a user can meet, defined once with its data.

Each error carries the facts needed to act on it (file, service, field, port, pid...)
and renders a message that says what happened and what to do. Three families with
many cases each have a module here: busy ports (`ports`), an absent or unreachable
daemon (`daemon`), unwritable state files (`state_dir`). The CLI maps these
to exit codes in `hippo_tasks.tasks.output`, the HTTP layer to statuses in
`hippo_tasks.daemon.http`; nothing else decides either.
"""

from __future__ import annotations

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


PORT_TAKEN = "It was free when the stack started and is taken now; the service was not started."
"""The end of a PortTakenError's sentence (errors/ports.py), by which a service's failure
is told to be one."""


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
        return PORT_TAKEN in self.reason

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


class DownLeftError(HippoError):
    """`hd down` stopped the stack, but not all of it: what `--enable-events` made could
    not be deleted (the lines above say why), or processes of the stack outlived its
    daemon (SIGKILL could not reach them; `processes`: pids by service, "adopted" for
    orphans whose service is unknown). It ended as if all were done, exit 0: `could not
    delete ...` above it, or, for processes, only a line in the daemon's output."""

    def __init__(self, events: int = 0, processes: dict[str, list[int]] | None = None
                 ) -> None:
        self.events = events
        self.processes = processes or {}

    def message(self) -> str:
        said = []
        if self.processes:
            count = sum(len(pids) for pids in self.processes.values())
            named = "; ".join(f"{name}: pid {', '.join(map(str, pids))}"
                              for name, pids in sorted(self.processes.items()))
            said.append(
                f"{count} process(es) of this stack outlived its daemon and still run "
                f"({named}): SIGKILL could not reach them (frozen by a cgroup freezer or "
                "`docker pause`, or stuck in the kernel: `ps -o pid,stat,cmd -p PID`), or "
                "they fork successors faster than /proc can be read. A frozen one ends by "
                "itself once thawed (its SIGKILL waits); end any other with `kill -9 PID`; "
                "the next `hd down` names what is left")
        if self.events:
            what, it = ("1 resource", "it stays") if self.events == 1 else \
                (f"{self.events} resources", "they stay")
            said.append(
                f"the stack is stopped, but {what} made by --enable-events could not be "
                f"deleted (said above): {it} recorded in .hippodrome/registry.json, and "
                "the next `hd down` or `hd up` tries again")
        return "; and ".join(said)


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
