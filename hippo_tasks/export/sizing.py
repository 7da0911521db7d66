"""Resource requests from measured memory, not guesses.

The figures are resident memory (RSS, MB) of each bundled service in a running ecom
stack, and of the daemon with its guard, as `nox -s bench` measured them
(benchmarks/results.json, `stack.results.rss_mb_by_service` and `daemon_and_guard_mb`;
tests/test_export_k8s.py fails when they drift apart). A service not measured there
(your own, global_worker's stand-in, the jobs) counts UNMEASURED_MB.

A request is the sum with a quarter of headroom, rounded up to 16 MiB; the limit is
twice the request (Python services grow with their data; the limit is there to stop a
leak, not to squeeze).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MEASURED_RSS_MB: dict[str, float] = {
    "admin_server": 16.7, "console": 14.5, "controller": 15.8, "ecom_indexer": 15.6,
    "ecom_indexer_service": 15.3, "ecom_ingest": 14.9, "ecom_settings_exporter": 16.1,
    "event_pipe": 16.4, "fake_cell": 16.6, "fake_cognito": 14.9, "fork_action_worker": 15.5,
    "merchandising_exporter": 16.0, "moto": 87.3, "search_proxy": 15.0,
}
DAEMON_AND_GUARD_MB = 21.7
UNMEASURED_MB = 48.0
"""A small Python service or job; about twice the bundled services' figure."""
HEADROOM = 1.25
CPU_REQUEST_STACK = "250m"
CPU_REQUEST_SERVICE = "50m"


def service_mb(name: str) -> float:
    return MEASURED_RSS_MB.get(name, UNMEASURED_MB)


def mebibytes(mb: float) -> int:
    """With headroom, rounded up to a multiple of 16."""
    return int(math.ceil(mb * HEADROOM / 16.0) * 16)


def resources(mb: float, cpu: str) -> dict[str, dict[str, str]]:
    request = mebibytes(mb)
    return {"requests": {"memory": f"{request}Mi", "cpu": cpu},
            "limits": {"memory": f"{request * 2}Mi"}}


def stack_mb(services: Iterable[str]) -> float:
    """The whole stack in one pod: the daemon and guard, plus every service."""
    return DAEMON_AND_GUARD_MB + sum(service_mb(n) for n in services)
