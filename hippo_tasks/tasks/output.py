"""What tasks print, and the one place errors become exit codes."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from invoke.exceptions import Exit

from hippo_tasks import errors as E

EXIT_CODES: list[tuple[type[E.HippoError], int]] = [
    (E.ServiceStartError, 1),
    (E.UsageError, 2),
    (E.UnknownServiceError, 2),
    (E.ProductionGuardError, 2),
    (E.StackFileError, 3),
    (E.PortBusyError, 4),
    (E.PortsBusyError, 4),
    (E.DaemonNotRunningError, 5),
    (E.DaemonUnreachableError, 6),
    (E.DaemonAlreadyRunningError, 7),
    (E.RequestTimeoutError, 8),
    (E.LifecycleBusyError, 9),
    (E.StateDirError, 10),
]


def exit_code_for(exc: E.HippoError) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


def colour_on(stream: Any = None) -> bool:
    if "NO_COLOR" in os.environ:
        return False
    target = stream or sys.stdout
    return bool(getattr(target, "isatty", lambda: False)())


RED, GREEN, YELLOW, DIM, BOLD, RESET = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[2m", "\x1b[1m", \
    "\x1b[0m"


def paint(text: str, colour: str, stream: Any = None) -> str:
    return f"{colour}{text}{RESET}" if colour_on(stream) else text


F = TypeVar("F", bound=Callable[..., Any])


EXIT_PIPE_CLOSED = 141
"""What a shell reports for a program ended by SIGPIPE: `invoke logs | head` closed early."""


def quiet_stdout() -> None:
    """After EPIPE, point stdout at /dev/null (Python's documented remedy, `signal` docs).

    What is still buffered then goes nowhere, instead of failing again at exit with
    "Exception ignored ... BrokenPipeError".
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # no real stdout (closed, replaced): nothing to flush
        pass


def handles_errors(fn: F) -> F:
    """Turn our errors into a message on stderr and the mapped exit code (no traceback).

    A reader that closed the pipe (`| head`) ends the task quietly with 141. stdout is
    flushed here, inside the guard, so a late EPIPE is caught too.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()
            return result
        except BrokenPipeError:
            quiet_stdout()
            raise Exit(code=EXIT_PIPE_CLOSED) from None
        except E.HippoError as exc:
            print(paint(f"hippodrome: {exc.message()}", RED, sys.stderr), file=sys.stderr)
            raise Exit(code=exit_code_for(exc)) from None
        except KeyboardInterrupt:
            raise Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


STATE_COLOURS = {"running": GREEN, "external": GREEN, "starting": YELLOW, "backoff": YELLOW,
                 "stopping": YELLOW, "failed": RED, "pending": DIM, "stopped": DIM}


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


def status_table(status: dict[str, Any]) -> str:
    rows, colours = [], []
    for svc in status["services"]:
        health = "-" if svc["state"] not in ("running", "external") else (
            "healthy" if svc["healthy"] else "unhealthy")
        rows.append([
            svc["name"], svc["state"], health,
            str(svc["pid"] or "-"), str(svc["port"] or "-"), str(svc["restarts"]),
            fmt_uptime(svc["uptime_s"]),
            "-" if svc["exit_code"] is None else str(svc["exit_code"]),
        ])
        colours.append(STATE_COLOURS.get(svc["state"]))
    head = (f"profile {status['profile']}  cell {status['cell']}  table prefix "
            f"{status['table_prefix']}  dashboard {status.get('dashboard_url', '-')}")
    body = table(["SERVICE", "STATE", "HEALTH", "PID", "PORT", "RESTARTS", "UPTIME", "EXIT"],
                 rows, colours)
    reasons = [f"  {s['name']}: {s['reason']}" for s in status["services"]
               if s["state"] in ("failed", "backoff") and s.get("reason")]
    return head + "\n" + body + ("\n" + "\n".join(reasons) if reasons else "")
