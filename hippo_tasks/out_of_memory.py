"""Out of memory, said as a sentence: its own module, with nothing imported, because the
`hd` script's first import may be what runs out (entry.py reads it before that).

A low `ulimit -v` shows up as a MemoryError, and as well as an OSError ENOMEM (an
import's listing of a folder) and an ImportError "failed to map segment" (an extension
module's loading): the last two were tracebacks (adv47 G/4).
"""

OUT_OF_MEMORY = ("out of memory: this process could not get the memory it asked for (a "
                 "low `ulimit -v`, or the machine's memory used up): raise the limit "
                 "(`ulimit -v unlimited`) or free memory, then run the command again")
"""A MemoryError's sentence, where a low `ulimit -v` ended `hd up` and `hd status` in
tracebacks (adv45 R/6)."""

ENOMEM = 12  # errno.ENOMEM on Linux and macOS: `errno` would be an import more


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError):
        return exc.errno == ENOMEM
    if isinstance(exc, ImportError) and not isinstance(exc, ModuleNotFoundError):
        said = str(exc)
        return "failed to map segment" in said or "Cannot allocate memory" in said
    return False
