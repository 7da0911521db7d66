"""`.env.e2e`: written by the platform's seed job, read by `invoke e2e` (DESIGN section 3).

Each line is `export NAME='value'`, so both `source .env.e2e` in a shell and dotenv
parsers read it; `read_env_file` is the one parser, so the writer's quoting and the
reader's can never drift apart.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

from hippo_contract.flock_wait import flock_within

ENV_FILE = Path(".env.e2e")
SEED_FILE = Path(".hippodrome") / "seed.json"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
SEED_LOCK_HELD = "HIPPODROME_SEED_LOCK_HELD"
"""Set by `hd seed` for the seed program it runs while holding the lock itself."""


@contextlib.contextmanager
def seeding(root: Path, say: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """One seed at a time per project (an exclusive lock on `.hippodrome/seed.lock`):
    two at once each wrote both files, and seed.json could end up with one seed and
    .env.e2e with the other, each whole but naming different accounts. `hd seed` takes
    it around the stack's `[commands.seed]` (any program), and the bundled seed program
    takes it too, unless `hd seed` holds it for it (SEED_LOCK_HELD). `say` hears once
    that this seed waits. Where the lock cannot be made (a read-only folder), the files
    could not be written either."""
    if os.environ.get(SEED_LOCK_HELD) == "1":
        yield
        return
    lock = (root / SEED_FILE).with_name("seed.lock")
    fd = _open_lock(lock)
    try:
        flock_within(fd, math.inf, lambda: say("waiting for another seed of this project to "
                                               "finish"))
        yield
    finally:
        os.close(fd)  # closing lets go of the lock


class SeedLockError(OSError):
    """seed.lock can be neither made nor opened: the folder cannot be written, so the
    seed's files could not be either. Callers say it as they say an unwritable file."""


def _open_lock(lock: Path) -> int:
    """The lock's descriptor. One that exists but cannot be opened for writing (an
    immutable file, a read-only project) is locked read-only, which flock allows: its
    open was a traceback, before the seed could say which file it cannot write (q/7)."""
    try:
        lock.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        try:
            return os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            raise SeedLockError(exc.errno, exc.strerror, str(exc.filename or lock)) from None


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines, with an optional `export `, quotes as a shell would read them.

    Comments and blank lines are skipped; a line that is not an assignment is a
    ValueError naming its line number, since silently ignoring it could hide a typo.
    """
    values: dict[str, str] = {}
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # said as the codec's words alone, no file (adv59)
        number = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}:{number}: not UTF-8 text (byte {data[exc.start]:#04x}); "
                         "seeding writes it as UTF-8: `hd seed` writes it again") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        name, sep, rest = line.partition("=")
        if not sep or not NAME.match(name.strip()):
            raise ValueError(f"{path}:{number}: expected NAME=value, got {raw.strip()!r}")
        try:
            words = shlex.split(rest, comments=True)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
        values[name.strip()] = " ".join(words)
    return values
