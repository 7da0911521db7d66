"""What tasks print, and the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hippo_tasks import errors as E
from hippo_tasks.ctrl_c import give_back

# Every error family up front, not when a failure comes: a failure for want of file
# descriptors (`ulimit -n`) could not import one, and ended in a traceback.
from hippo_tasks.errors.daemon import (
    EXIT_ALREADY_RUNNING,
    DaemonAlreadyRunningError,
    DaemonNotRunningError,
    DaemonUnreachableError,
)
from hippo_tasks.errors.ports import PortBusyError, PortsBusyError
from hippo_tasks.errors.state_dir import EXIT_STATE_DIR, StateDirError

EXIT_CODES: list[tuple[type[E.HippoError], int]] = [
    (E.ServiceStartError, 1),
    (E.DownLeftError, 1),
    (E.UsageError, 2),
    (E.UnknownServiceError, 2),
    (E.ProductionGuardError, 2),
    (E.StackFileError, 3),
    (PortBusyError, 4),
    (PortsBusyError, 4),
    (DaemonNotRunningError, 5),
    (E.StackShutDownError, 5),
    (DaemonUnreachableError, 6),
    (DaemonAlreadyRunningError, EXIT_ALREADY_RUNNING),
    (E.RequestTimeoutError, 8),
    (E.LifecycleBusyError, 9),
    (StateDirError, EXIT_STATE_DIR),
]


def exit_code_for(exc: E.HippoError) -> int:
    if isinstance(exc, E.ServiceStartError) and exc.port_taken:
        return 4
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


def colour_on(stream: Any = None) -> bool:
    from hippo_tasks.terminal_text import colour_wanted

    target = stream or sys.stdout
    try:
        return colour_wanted(target.fileno())
    except (AttributeError, OSError, ValueError):  # a StringIO, a closed stream
        return False


RED, GREEN, YELLOW, DIM, BOLD, RESET = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[2m", "\x1b[1m", \
    "\x1b[0m"


def paint(text: str, colour: str, stream: Any = None) -> str:
    return f"{colour}{text}{RESET}" if colour_on(stream) else text


F = TypeVar("F", bound=Callable[..., Any])


EXIT_PIPE_CLOSED = 141
"""What a shell reports for a program ended by SIGPIPE: `hd logs | head` closed early."""


def quiet_stdout() -> None:
    """After EPIPE, point stdout at /dev/null (terminal_text.to_devnull)."""
    from hippo_tasks.terminal_text import to_devnull

    to_devnull(sys.stdout)


def owner_keeps_access() -> None:
    """Take the owner's bits out of the umask, keeping the rest as the user set it.
    Under `umask 0777` (or 0377) the first `up` made a mode-000 `.hippodrome`, and every
    later command of the same user failed on it with "permission denied" until the
    folder was found and removed by hand. Services inherit the result."""
    mask = os.umask(0o022)
    os.umask(mask & 0o077)


class TaskExit(Exception):
    """A task's chosen exit status, raised without importing invoke: `handles_errors`
    turns it into invoke's `Exit`, `hd`'s fast path into the process's exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def exit_status(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Run a task body; 0, or the exit code for what it raised (the message on stderr).

    A reader that closed the pipe (`| head`) ends the task quietly with 141. stdout is
    flushed here, inside the guard, so a late EPIPE is caught too. Tasks choose their
    exit status with `TaskExit`, never invoke's `Exit`: the same body runs on `hd`'s
    fast path, where no invoke is there to catch it.
    """
    owner_keeps_access()
    give_back()  # the body says a Ctrl+C its own way (ctrl_c.py had it until now)
    try:
        fn(*args, **kwargs)
        sys.stdout.flush()
        return 0
    except BrokenPipeError:
        quiet_stdout()
        return EXIT_PIPE_CLOSED
    except E.HippoError as exc:
        from hippo_tasks.terminal_text import for_output  # messages quote others

        _say_failure(paint(f"hippodrome: {for_output(exc.message(), 2)}", RED,
                           sys.stderr))
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    except TaskExit as exc:
        return exc.code
    except PermissionError as exc:
        # A folder on the way that this user may not enter or read (`.logs` made 000
        # under `sudo hd up`, a project under another user's 0700 home): a traceback
        # from whichever stat met it first (adv24 c/13). Said as an unreadable registry.
        said = StateDirError(str(exc.filename or "a file of this project"),
                               exc.strerror or "Permission denied", reading=True)
        _say_failure(paint(f"hippodrome: {said.message()}", RED, sys.stderr))
        return EXIT_STATE_DIR


def _say_failure(text: str) -> None:
    """The failure's sentence on stderr, where it can be written: on a full device
    (`2>/dev/full`) the write's own error replaced the failure's exit code with 120,
    the code for the command's output failing (adv36 c/3)."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


def _dry_run_asked(context: Any) -> bool:
    """invoke's `--dry` (`-R`), under `hd` or the stock `invoke`: meant for shell
    commands, which these tasks do not run, so `hd --dry down` stopped the stack."""
    try:
        return bool(context.config.run.dry)
    except (AttributeError, KeyError):
        return False


TAKES_WORDS = frozenset({"probes", "e2e"})
"""The tasks that hand words after `--` on (to pytest). Any other ignored them: `hd
logs -- -s b` printed every service's log, exit 0 (adv36 c/5)."""


def _words_after_dashes(context: Any) -> str:
    """invoke 3's `c.remainder` (invoke 2 has none, and says nothing either)."""
    words = getattr(context, "remainder", "")
    return words if isinstance(words, str) else ""


def _refuse_words(task: str, words: str) -> None:
    raise E.UsageError(f"{task} takes no words after `--` (it was given {words!r}): put "
                       "its flags before any `--`, or leave the `--` out")


def _refuse_dry_run() -> None:
    raise E.UsageError("--dry (invoke's dry run, which echoes shell commands instead of "
                       "running them) does not apply: Hippodrome's tasks act through the "
                       "daemon, not shell commands, so they would really do it. Leave it "
                       "out; nothing was started or stopped")


def handles_errors(fn: F) -> F:
    """Turn our errors into a message on stderr and the mapped exit code (no traceback).

    invoke is imported only when there is a non-zero code to hand it.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        if args and _dry_run_asked(args[0]):
            code = exit_status(_refuse_dry_run)
        elif args and fn.__name__ not in TAKES_WORDS and \
                (words := _words_after_dashes(args[0])):
            code = exit_status(_refuse_words, fn.__name__, words)
        else:
            code = exit_status(fn, *args, **kwargs)
        if code:
            from invoke.exceptions import Exit

            raise Exit(code=code)

    return wrapper  # type: ignore[return-value]


STATE_COLOURS = {"running": GREEN, "external": GREEN, "completed": GREEN, "starting": YELLOW,
                 "backoff": YELLOW, "stopping": YELLOW, "failed": RED, "pending": DIM,
                 "stopped": DIM}


def table(headers: Sequence[str], rows: Sequence[Sequence[str]],
          colours: Sequence[str | None] | None = None) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    for n, row in enumerate(rows):
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
        colour = colours[n] if colours else None
        out.append(paint(line, colour) if colour else line)
    return "\n".join(out)


def fmt_uptime(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


EXTERNAL_DOWN = "not running (optional: see README)"
"""An external service (probed, never started) that does not answer: nothing waits for
it, so `state external, health not running` is information, not a failure."""


def status_table(status: dict[str, Any]) -> str:
    rows, colours = [], []
    for svc in status["services"]:
        health = "-" if svc["state"] not in ("running", "external") else (
            "healthy" if svc["healthy"] else EXTERNAL_DOWN if svc.get("external") else "unhealthy")
        rows.append([
            svc["name"], table_state(svc), health,
            str(svc["pid"] or "-"), str(svc["port"] or "-"), str(svc["restarts"]),
            fmt_uptime(svc["uptime_s"]), fmt_exit(svc["exit_code"]),
        ])
        colours.append(YELLOW if health == EXTERNAL_DOWN else STATE_COLOURS.get(rows[-1][1]))
    head = (f"profile {status['profile']}  cell {status['cell']}  table prefix "
            f"{status['table_prefix']}  dashboard {status.get('dashboard_url', '-')}")
    body = table(["SERVICE", "STATE", "HEALTH", "PID", "PORT", "RESTARTS", "UPTIME", "EXIT"],
                 rows, colours)
    reasons = [f"  {s['name']}: {s['reason']}" for s in status["services"]
               if s["state"] in ("failed", "backoff") and s.get("reason")]
    trouble = [f"  WARNING: {p['message']} (since {fmt_clock(p.get('since'))})"
               if isinstance(p.get("message"), str) else
               f"  WARNING: cannot write {what} at {p.get('path')}: {p.get('error')} since "
               f"{fmt_clock(p.get('since'))}" + (f"; {p['lines_dropped']} log lines dropped"
                                                  if p.get("lines_dropped") else "")
               + (" (the open-files limit: raise `ulimit -n`, then `hd down` and `hd up`)"
                  if p.get("error") in (os.strerror(errno.EMFILE), os.strerror(errno.ENFILE))
                  else "")
               for what, p in (status.get("problems") or {}).items() if isinstance(p, dict)]
    return "\n".join([head, body, *reasons, *trouble])


def table_state(svc: dict[str, Any]) -> str:
    """A job that ran to exit 0 is `completed` in the table, where `stopped` read as if
    it had been stopped before it was done (the JSON keeps the state machine's word)."""
    if svc.get("kind") == "job" and svc["state"] == "stopped" and svc.get("ready"):
        return "completed"  # not one stopped mid-run that exited 0 on SIGTERM (adv31 r/4)
    return str(svc["state"])


def fmt_exit(code: object) -> str:
    """The EXIT column: a process ended by a signal is the signal's name (`SIGTERM`), not
    the `-15` of the JSON, which read as an exit code no program returns."""
    if not isinstance(code, int):
        return "-"
    if code >= 0:
        return str(code)
    import signal

    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def fmt_clock(ts: object) -> str:
    if not isinstance(ts, int | float):
        return "?"
    return time.strftime("%H:%M:%S", time.localtime(ts))
