"""Ctrl+C before a task's body runs: a sentence and exit 130, not a traceback.

A task's body turns Ctrl+C into exit 130 (output.exit_status); before it runs, the
command is still importing what it needs (20-40 ms under `hd`, the task modules
inside the stock `invoke`'s loading of tasks.py). There a Ctrl+C was a KeyboardInterrupt
traceback through the import under `hd` (adv32 u/5), and under `invoke`, which ends
every KeyboardInterrupt with exit 1, an exit 1 with no word at all (adv54 F4). `take`
puts this handler in until `give_back` (at the body's start); a SIGINT ignored when the
command started (`nohup`, a background job of a script) stays ignored. `signal` costs
~0.3 ms here: pip's `hd` script has loaded `re`, and with it `enum`, already.
"""

import os
import signal
import sys


def interrupted(_signum: int, _frame: object) -> None:
    try:
        seed = sys.modules.get("hippo_tasks.daemon.seed")
        if seed is not None:  # `up --detach`'s, which ignores Ctrl+C: not left behind
            seed.drop()
        os.write(2, b"hippodrome: interrupted (Ctrl+C)\n")
    finally:  # a closed stderr: the exit status says it
        os._exit(130)


def take() -> bool:
    """This handler instead of Python's own (True), never instead of an ignored SIGINT
    or another program's handler; only the main thread may set one."""
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, interrupted)
            return True
    except ValueError:  # not the main thread
        pass
    return False


def give_back() -> None:
    """Python's own handler again, where this one is in: the task's body turns a
    KeyboardInterrupt into its own ending (a foreground `up` stops the stack first)."""
    try:
        if signal.getsignal(signal.SIGINT) is interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        pass
