"""A busy service: writes numbered lines at a steady rate, for ever.

Unlike flood.py (as fast as it can, then done), this holds a rate the way a chatty
real service does, so the dashboard's CPU benchmark and its bounded-pane test see a
constant stream. Paced by the clock in 10 ms batches: a slow reader never lowers the
rate, and a late wake-up is caught up in the next batch.

    chatty.py [--rate 10000] [--width 80]
"""

from __future__ import annotations

import argparse
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=int, default=10_000, help="lines per second")
    p.add_argument("--width", type=int, default=80, help="bytes per line, newline included")
    a = p.parse_args()
    out = sys.stdout.buffer
    pad = b"x" * max(0, a.width - 19)
    began = time.monotonic()
    written = 0
    while True:
        due = int((time.monotonic() - began) * a.rate)
        if due > written:
            out.write(b"".join(b"chatty %010d %s\n" % (i, pad) for i in range(written, due)))
            out.flush()
            written = due
        time.sleep(0.01)


if __name__ == "__main__":
    main()
