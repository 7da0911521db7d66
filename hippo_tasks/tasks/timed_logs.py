"""`hd logs --timestamps`: lines from the running daemon's buffer, with the time the
daemon read each one.

The files under `.logs/latest/` hold the services' output byte for byte, without
times; the daemon's in-memory buffer (`log_buffer_lines` per service) keeps, for each
line, when it arrived. So timestamps need the daemon, and cover what its buffer holds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hippo_tasks.errors.daemon import (
    DaemonEndedError,
    DaemonNotRunningError,
    DaemonUnreachableError,
)
from hippo_tasks.terminal_text import for_terminal, line_without_colour

FOLLOW_EVERY_S = 0.2
MAX_LINES = 100_000
"""The most lines one call of the logs API answers (daemon/api.py): `-l 200000` got
the daemon's 400 and exit 1, though plain `hd logs -l 200000` works."""


class NoDaemonForTimestamps(DaemonNotRunningError):
    """Exit 5 as every other command with no daemon (it was 2, bad arguments), with
    what to run instead."""

    def message(self) -> str:
        return ("--timestamps reads the running daemon's log buffer, where each line's "
                "arrival time is kept; no daemon runs for this project, and the files in "
                ".logs/latest/ have no times: run `hd logs` without --timestamps")


def stamp(ts: float) -> str:
    """Local time to the millisecond: `2026-12-01 22:50:59.985`."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def render(name: str, record: dict[str, Any], width: int, colour: str | None,
           coloured: bool = True) -> bytes:
    """One line: time, then `name | line` as the terminal shows it (notes as in the files).
    Not `coloured` (NO_COLOR, a pipe): a service's own colours go too, as `hd logs`
    without --timestamps takes them out; they were kept (adv31 r/9)."""
    text = ("--- hippodrome: " if record.get("system") else "") + for_terminal(str(record["line"]))
    label = f"{name.ljust(width)} | " if width else ""
    if colour and label:
        label = f"{colour}{label}\x1b[0m"
    line = f"{stamp(float(record['ts']))} {label}{text}".encode("utf-8", "replace")
    return (line if coloured else line_without_colour(line)) + b"\n"


def _still_listed(root: Path, grace: float = 5.0) -> bool:
    """The daemon stays in the registry for as long as `grace` after its API stopped
    answering. A stopping daemon closes its API first and leaves the registry a moment
    later: a poll in between took a clean `hd down` for a hung daemon (exit 6)."""
    from hippo_tasks.registry.store import Registry, daemon_alive

    registry = Registry(root)
    deadline = time.monotonic() + grace
    while daemon_alive(registry.read()):
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.1)
    return False


def show(root: Path, services: list[str], lines: int, follow: bool,
         colours: dict[str, str] | None) -> None:
    """Print the last `lines` lines of each of `services` (none: all), merged by time,
    then follow."""
    from hippo_tasks.daemon.client import LOG_ANSWER_WITHIN_S, STOPPED_SHORT_S, DaemonClient

    try:
        client = DaemonClient.for_project(root)
    except DaemonNotRunningError:
        raise NoDaemonForTimestamps(str(root)) from None
    names = services or [s["name"] for s in client.status()["services"]]
    width = 0 if len(services) == 1 else max((len(n) for n in names), default=0)
    out = sys.stdout.buffer
    last: dict[str, int] = {}

    def fetch(query: str) -> list[tuple[float, str, int, dict[str, Any]]]:
        got = []
        for name in names:
            after = f"&after={last[name]}" if name in last else ""
            data = client.call("GET", client.service_path(name, f"logs?{query}{after}"),
                               timeout=LOG_ANSWER_WITHIN_S, stopped_for=STOPPED_SHORT_S)
            records = [(float(r["ts"]), name, int(r["seq"]), r) for r in data["lines"]]
            if name in last and records and records[0][2] > last[name] + 1:
                # The buffer moved past lines between two looks (a burst larger than
                # log_buffer_lines): said where they were, as the terminal says what it
                # dropped; they went on without a word.
                gap = records[0][2] - last[name] - 1
                got.append((records[0][0], name, records[0][2] - 1, {
                    "ts": records[0][0], "system": True,
                    "line": f"{gap} lines not shown here: the daemon's buffer "
                            f"(log_buffer_lines) moved past them before they were read; "
                            f"they are in .logs/latest/{name}.log"}))
            # On from the last line received: the answer's last_seq is read after its
            # lines were picked, and lines written in between were skipped (14,734 of
            # 400,000 at 40k lines/s).
            if records:
                last[name] = max(seq for _, _, seq, _ in records)
            elif name not in last:
                last[name] = int(data["last_seq"])
            got += records
        return sorted(got, key=lambda item: item[:3])

    def write(batch: list[tuple[float, str, int, dict[str, Any]]]) -> None:
        for _, name, _, record in batch:
            out.write(render(name, record, width, (colours or {}).get(name),
                             colours is not None))
        out.flush()

    # The daemon's buffer answers up to MAX_LINES a call (`log_buffer_lines` may be larger).
    first = fetch(f"lines={min(max(int(lines), 0), MAX_LINES)}")
    silent = [n for n in services if n not in {name for _, name, _, _ in first}]
    if silent:
        # A service not started yet printed nothing at all, where `hd logs -s` without
        # --timestamps says so (adv29 n/9).
        rows = {r.get("name"): r for r in client.status().get("services") or ()
                if isinstance(r, dict)}
        for service in silent:
            row = rows.get(service)
            if row is not None and row.get("state") in ("pending", "stopped") \
                    and not row.get("pid"):
                from hippo_tasks.tasks.logs import state_words

                print(f"hippodrome: {service} has no log yet ({state_words(row)})",
                      file=sys.stderr, flush=True)
    write(first)
    while follow:
        time.sleep(FOLLOW_EVERY_S)
        try:
            batch = fetch(f"lines={MAX_LINES}")
        except (DaemonUnreachableError, DaemonEndedError):
            if _still_listed(root):
                raise  # it runs but does not answer: the error says what to do
            print("--- hippodrome: the daemon has stopped (`hd down`, or the stack ended); "
                  "no more lines", flush=True)
            return
        write(batch)
