"""The bundled moto command logs every request except the orchestrator's liveness probe
(hippo_platform/services/moto_quiet), on a real moto server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from stackutil import free_ports, wait_for

from hippo_tasks.supervision.probes import http_ok


def test_probe_requests_are_not_logged_and_other_requests_are(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    log = (tmp_path / "moto.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hippo_platform.services.moto_quiet", "-H", "127.0.0.1",
         "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: asyncio.run(http_ok(port, "/moto-api/", 1.0)), timeout=60,
                 what="moto answering")
        for _ in range(3):  # the orchestrator's own probe, as the daemon sends it
            assert asyncio.run(http_ok(port, "/moto-api/", 2.0))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json",
                                    timeout=10) as resp:
            assert resp.status == 200
        wait_for(lambda: "/moto-api/data.json" in Path(log.name).read_text(), timeout=10,
                 what="the data.json request in the log")
        time.sleep(0.2)  # anything still buffered for the probes would have arrived
        text = Path(log.name).read_text()
        assert '"GET /moto-api/data.json HTTP/1.1" 200' in text
        assert '"GET /moto-api/ HTTP/1.0"' not in text, text
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
