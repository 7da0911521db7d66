"""The `hd` console script's and hd.pex's entry: Ctrl+C is taken from its first line.

`program.cli` turns a Ctrl+C into exit 130 and `hippodrome: interrupted (Ctrl+C)` once it
runs, but before that the script imports it and all it needs (20-40 ms): a Ctrl+C then
was a KeyboardInterrupt traceback through the import, and death by SIGINT (adv32 u/5).
Here a handler says the sentence and exits until `program.cli` is loaded, then Python's
own is put back for it (`signal` costs ~0.3 ms here: pip's script has loaded `re`, and
with it `enum`, already). A SIGINT ignored when `hd` started (`nohup`, a background
job of a script) stays ignored.
"""

import os
import signal
import sys


def _interrupted(_signum: int, _frame: object) -> None:
    try:
        seed = sys.modules.get("hippo_tasks.daemon.seed")
        if seed is not None:  # `up --detach`'s, which ignores Ctrl+C: not left behind
            seed.drop()
        os.write(2, b"hippodrome: interrupted (Ctrl+C)\n")
    finally:  # a closed stderr: the exit status says it
        os._exit(130)


_OURS = signal.getsignal(signal.SIGINT) is signal.default_int_handler
if _OURS:
    signal.signal(signal.SIGINT, _interrupted)

from hippo_tasks.daemon.seed import plant  # noqa: E402

plant(sys.argv)  # `up --detach` only (daemon/seed.py says why)

from hippo_tasks.out_of_memory import OUT_OF_MEMORY, is_out_of_memory  # noqa: E402

try:
    from hippo_tasks.tasks.program import cli as _program_cli
except (MemoryError, OSError, ImportError) as _exc:
    # A low `ulimit -v` met by this very import: program.cli, which says it as a
    # sentence, is not loaded yet (adv47 G/4).
    if not is_out_of_memory(_exc):
        raise
    try:
        os.write(2, f"hippodrome: {OUT_OF_MEMORY}\n".encode())
    finally:
        os._exit(1)


def cli() -> None:
    if _OURS:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _program_cli()
