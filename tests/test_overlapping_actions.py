"""Two terminals (or a double-clicked button) asking for the same action at once.

Requests for one service coalesce (service.py), and each answer is the service's state
when that request settled: two overlapping `hd restart -s a` used to answer with the
state when the answer was read, by which time the other restart was stopping the
service, so one of them said `a: stopping` and exited 0.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

from stackutil import free_ports, hd, registry, stack_header, toy_service, write_stack


def restart(url: str, out: list[Any]) -> None:
    req = urllib.request.Request(url + "/api/services/a/restart", method="POST", data=b"",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        out.append(json.loads(resp.read())["services"][0])


def test_overlapping_restarts_each_answer_with_their_own_outcome(project: Path) -> None:
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service(
        "a", port, "--delay", "0.3", readiness={"http": "/"}, stop_timeout=3))
    hd(project, "up", "--detach", check=True)
    url = registry(project)["daemon"]["url"]
    for _ in range(5):
        rows: list[Any] = []
        pair = [threading.Thread(target=restart, args=(url, rows)) for _ in range(2)]
        for t in pair:
            t.start()
        for t in pair:
            t.join(90)
        assert len(rows) == 2, rows
        for row in rows:
            assert (row["state"], row["ready"]) == ("running", True), row
            assert row["pid"] is not None
    hd(project, "down", check=True)
