"""Assembling a running fake_cell: state folder, recovery, app, watchdog.

Kept apart from `__main__` so tests and benchmarks can build the same thing the
command line does.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from hippo_platform.services.common import App, env_flag
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import EXIT_CANNOT_LISTEN
from hippo_platform.services.common.state import FolderLockedError, lock_folder
from hippo_platform.services.common.watchdog import Watchdog
from hippo_platform.services.fake_cell.api import build_app
from hippo_platform.services.fake_cell.journal import Journal
from hippo_platform.services.fake_cell.store import Cell

NAME = "fake_cell"
DEFAULT_PORT = 9001


def default_state_dir() -> Path:
    """`$HIPPODROME_STATE_DIR/fake_cell` (the stack's shared state root), else
    `.hippodrome/state/fake_cell` under the working directory (the project root)."""
    root = os.environ.get("HIPPODROME_STATE_DIR")
    return Path(root) / NAME if root else Path(".hippodrome") / "state" / NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=None, help="where state persists")
    parser.add_argument(
        "--fsync",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fsync each journal write (kill -9 is survived either way; this adds power loss)",
    )
    parser.add_argument(
        "--watchdog-interval",
        type=float,
        default=5.0,
        help="seconds between self-probes of /healthz; 0 turns the watchdog off",
    )


def make_app(args: argparse.Namespace) -> App:
    folder: Path = args.state_dir or default_state_dir()
    try:
        lock = lock_folder(folder)
    except FolderLockedError as exc:
        log_error(f"fake_cell: {exc}; two cells must not share one state folder")
        raise SystemExit(EXIT_CANNOT_LISTEN) from None
    started = time.perf_counter()
    journal = Journal(folder, fsync=args.fsync)
    snapshot, ops = journal.load()
    cell = Cell(journal)
    cell.restore(snapshot, ops)
    docs = sum(len(ix.docs) for ix in cell.indexes.values())
    log_line(
        f"fake_cell state {folder.resolve()}: {len(cell.accounts)} accounts, "
        f"{len(cell.indexes)} indexes, {docs} documents, {len(ops)} journal ops replayed "
        f"in {(time.perf_counter() - started) * 1000:.0f}ms (fsync {'on' if args.fsync else 'off'})"
    )
    app = build_app(cell, debug=env_flag("DEBUG"))
    app.close_hooks.append(lock.close)
    app.close_hooks.append(cell.close)  # hooks run newest first: state, then the lock
    if args.watchdog_interval > 0:
        interval = float(args.watchdog_interval)

        def start_watchdog(base_url: str) -> None:
            dog = Watchdog(f"{base_url}/healthz", interval=interval, timeout=3.0, failures=2)
            app.close_hooks.append(dog.stop)
            dog.start()

        app.start_hooks.append(start_watchdog)
    return app
