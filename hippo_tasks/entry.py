"""The `hd` console script's and hd.pex's entry: Ctrl+C is taken from its first line
(ctrl_c.py) until `program.cli` is loaded, which then says it its own way."""

import os
import sys

from hippo_tasks.ctrl_c import give_back, take

take()

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
    give_back()
    _program_cli()
