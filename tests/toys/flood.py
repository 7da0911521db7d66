"""Writes N numbered lines of a fixed width as fast as it can, then waits or exits."""

import sys
import time

n = int(sys.argv[1])
width = int(sys.argv[2]) if len(sys.argv) > 2 else 100
stay = len(sys.argv) > 3 and sys.argv[3] == "stay"
out = sys.stdout.buffer
pad = b"x" * (width - 12)
began = time.perf_counter()
chunk = []
for i in range(n):
    chunk.append(b"%010d " % i + pad + b"\n")
    if len(chunk) == 1000:
        out.write(b"".join(chunk))
        chunk = []
out.write(b"".join(chunk))
out.flush()
sys.stderr.write(f"flood-done {n} {time.perf_counter() - began:.6f}\n")
sys.stderr.flush()
if stay:
    time.sleep(3600)
