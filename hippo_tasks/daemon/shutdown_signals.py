"""The signals that shut a stack down as Ctrl+C does, for the daemon (engine.py) and for
`up --detach` while it waits (tasks/detached.py): one list, light enough for the command
line (no asyncio)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


def _shutdown_signals() -> dict[str, int]:
    """Every signal whose default action ends a process and that a program may send (not
    a fault of its own: SEGV, BUS, ILL, FPE, ABRT), by name: each shuts the stack down as
    Ctrl+C does. Those past SIGHUP ended the daemon by their default action, with no word
    anywhere, and its guard then ended the stack (y/5; SIGPWR, SIGSYS and the real-time
    ones too: r/1). SIGPIPE and SIGXFSZ Python ignores; SIGUSR1 is the dashboard line."""
    names = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR2", "SIGALRM", "SIGPROF",
             "SIGVTALRM", "SIGTRAP", "SIGSTKFLT", "SIGXCPU", "SIGIO", "SIGPWR", "SIGSYS"]
    found = {name: int(getattr(signal, name)) for name in names if hasattr(signal, name)}
    low, high = getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", -1)
    for number in range(int(low), int(high) + 1):
        name = "SIGRTMAX" if number == high else \
            "SIGRTMIN" + (f"+{number - int(low)}" if number != low else "")
        found.setdefault(name, number)
    return found


SHUTDOWN_SIGNALS = _shutdown_signals()
KEYBOARD = {"SIGINT": "Ctrl+C", "SIGQUIT": "Ctrl+\\"}
"""The terminal's keys: pressed again once a shutdown is under way, they kill at once."""


def left_ignored(number: int) -> bool:
    """A signal ignored when this process started stays ignored, as a shell leaves it and
    Python leaves SIGINT: `nohup hd up &` was shut down by the hangup nohup was asked to
    ignore, and a script's `hd up &` by the Ctrl+C meant for its foreground (adv45 R/8)."""
    try:
        return signal.getsignal(number) is signal.SIG_IGN
    except (ValueError, OSError):
        return False


def taken_by_up() -> list[int]:
    """The shutdown signals `up` itself turns into a said ending while it starts a
    stack (the checks, then `--detach`'s wait): all but SIGINT, which Python raises as
    KeyboardInterrupt, and those left ignored."""
    return [number for name, number in SHUTDOWN_SIGNALS.items()
            if name != "SIGINT" and not left_ignored(number)]


@contextlib.contextmanager
def signals_listed_once() -> Iterator[None]:
    """`signal.valid_signals()` answered from one call while the engine runs. asyncio's
    add_signal_handler and remove_signal_handler each call it to check their signal, and
    it builds a set of 64 enum members every time: the daemon's 45 shutdown signals cost
    3.9 ms before its first service could spawn, and as much again on its way out, inside
    the time `hd down` waits. The answer cannot change within a process; each caller
    still gets a set of its own."""
    real = signal.valid_signals
    listed = frozenset(real())
    signal.valid_signals = lambda: set(listed)
    try:
        yield
    finally:
        signal.valid_signals = real
