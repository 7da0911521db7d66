"""A readiness probe must not take its own socket for the service: with nothing
listening on a port the kernel also hands out to outgoing connections, a probe can be
given that very port as its own end and "connect" to itself (TCP simultaneous open).
Made certain here in a network namespace of its own whose range for outgoing
connections is the probed port and the next one, and tried a few times."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import asyncio, socket, sys
sys.path.insert(0, sys.argv[2])
from hippo_tasks.supervision import probes
port = int(sys.argv[1])
opened = [probes.connect_now("127.0.0.1", port) for _ in range(60)]
tcp = [asyncio.run(probes.tcp_ok(port, 1.0)) for _ in range(60)]
service = socket.socket()  # as a service binds, without SO_REUSEADDR
try:
    service.bind(("127.0.0.1", port))
    bound = 1
except OSError:
    bound = 0
print(sum(o is not None for o in opened), sum(tcp), bound)
"""

needs = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare")
                           or not shutil.which("ip"),
                           reason="a network namespace needs root, unshare and ip")


@needs
def test_a_probe_never_counts_a_connection_to_itself() -> None:
    port = 44980
    script = (f"ip link set lo up && echo '{port} {port + 1}' > "
              f"/proc/sys/net/ipv4/ip_local_port_range && "
              f"exec {sys.executable} -c '{PROBE}' {port} {REPO}")
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    opened, ready, bound = (int(x) for x in out.stdout.split())
    assert (opened, ready) == (0, 0), f"{opened} probes met themselves, {ready} said ready"
    # and left nothing on the port: a self-connection closed the usual way stood a
    # minute in TIME_WAIT there, and the service's own bind failed meanwhile
    assert bound == 1, "the service could not bind its port after the probes"
