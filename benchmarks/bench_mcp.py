"""MCP benchmarks (issue 14): round trips of `status` with 40 services and of a filtered
`logs` over 100,000 buffered lines, through the official SDK client, over the daemon's
HTTP endpoint and over `hd mcp` (stdio); and what the first /mcp request costs the
daemon (its resident memory before and after: the SDK is imported then, issue 11).

A real detached daemon over 39 toy services and one that printed 100,000 lines into a
buffer sized for them, started through the real CLI; taken down (from its registry,
by PID) even when a measurement fails. The plain HTTP API's figures are measured beside
the MCP ones, so the protocol's own cost can be read off, and so are tool calls posted
as plain JSON-RPC (the endpoint's cost, without the SDK client's checks of each answer).

    python benchmarks/bench_mcp.py [--quick] [--out benchmarks/results.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from mcp import Client  # noqa: E402
from mcputil import stdio  # noqa: E402
from results_file import report  # noqa: E402
from stackutil import FLOOD, PY, free_ports, hd, stack_header, toy_service  # noqa: E402

from hippo_tasks.registry.cleanup import force_down  # noqa: E402
from hippo_tasks.registry.store import Registry  # noqa: E402

N = 40
LINES = 100_000
FILTERS: dict[str, dict[str, Any]] = {
    "text_1_match": {"text": "0000012345 "},
    "regex_100_matches": {"regex": r"^00000\d\d\d45 "},
    "errors_only_0_matches": {"errors_only": True},
}
TARGETS: dict[str, tuple[str, float]] = {
    "status_jsonrpc_p50_ms": ("<=", 20), "status_jsonrpc_p99_ms": ("<=", 60),
    "logs_jsonrpc_text_1_match_p50_ms": ("<=", 250),
    "daemon_rss_added_by_mcp_mb": ("<=", 60),
}
AGENT = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def stack_text(dash: int) -> str:
    ports = free_ports(N - 1)
    flood = [PY, FLOOD, str(LINES), "100", "stay"]
    return (stack_header(dash, log_buffer_lines=LINES)
            + "".join(toy_service(f"svc{i:02d}", p) for i, p in enumerate(ports))
            + f"[services.flood]\ncommand = {json.dumps(flood)}\n")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (round(statistics.median(ordered) * 1000, 2),
            round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2))


def api_times(dash: int, path: str, runs: int, body: str | None = None) -> list[float]:
    """Plain HTTP round trips on one keep-alive connection: GET, or POST of a JSON body."""
    conn = http.client.HTTPConnection("127.0.0.1", dash, timeout=30)
    out = []
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            if body is None:
                conn.request("GET", path)
            else:
                conn.request("POST", path, body, AGENT)
            resp = conn.getresponse()
            raw = resp.read()
            assert resp.status == 200 and b'"isError":true' not in raw, raw[:300]
            out.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return out


def jsonrpc(tool: str, args: dict[str, Any]) -> str:
    """One stateless tools/call, as a client that knows the protocol sends it (no SDK):
    what the endpoint itself costs, without the SDK client's validation of the answer."""
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": tool, "arguments": args}})


def mcp_times(target: Any, calls: list[tuple[str, dict[str, Any]]], runs: int,
              first: Callable[[float], None] | None = None) -> dict[str, list[float]]:
    """Each call `runs` times in one session; `first` gets the very first call's time."""
    async def main() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        async with Client(target, read_timeout_seconds=120) as client:
            for n, (tool, args) in enumerate(calls):
                times = out.setdefault(tool + json.dumps(args, sort_keys=True), [])
                for i in range(runs):
                    t0 = time.perf_counter()
                    result = await client.call_tool(tool, args)
                    took = time.perf_counter() - t0
                    assert not result.is_error, result.content
                    if n == 0 and i == 0 and first is not None:
                        first(took)
                    times.append(took)
        return out

    return anyio.run(main)


def measure(root: Path, dash: int, daemon: psutil.Process, runs: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{dash}"
    results: dict[str, Any] = {}
    api_times(dash, "/api/status", 20)  # warm, as a page would have
    time.sleep(1.0)
    before = daemon.memory_info().rss
    results["daemon_rss_before_mcp_mb"] = round(before / 2**20, 1)
    firsts: list[float] = []
    status = ("status", {})
    http_runs = mcp_times(url + "/mcp", [status], runs, firsts.append)
    results["first_mcp_call_ms"] = round(firsts[0] * 1000, 1)
    after_first = daemon.memory_info().rss
    results["daemon_rss_after_first_mcp_mb"] = round(after_first / 2**20, 1)
    results["daemon_rss_added_by_mcp_mb"] = round((after_first - before) / 2**20, 1)
    lat = percentiles(next(iter(http_runs.values()))[1:])
    results["status_http_p50_ms"], results["status_http_p99_ms"] = lat
    results["api_status_p50_ms"], results["api_status_p99_ms"] = percentiles(
        api_times(dash, "/api/status", runs))
    results["status_jsonrpc_p50_ms"], results["status_jsonrpc_p99_ms"] = percentiles(
        api_times(dash, "/mcp", runs, jsonrpc("status", {})))
    stdio_runs = mcp_times(stdio(root), [status], runs)
    results["status_stdio_p50_ms"], results["status_stdio_p99_ms"] = percentiles(
        next(iter(stdio_runs.values()))[1:])

    calls = [("logs", {"service": "flood", **f}) for f in FILTERS.values()]
    logs_runs = mcp_times(url + "/mcp", calls, max(5, runs // 20))
    for name, samples in zip(FILTERS, logs_runs.values(), strict=True):
        results[f"logs_http_{name}_p50_ms"], results[f"logs_http_{name}_p99_ms"] = \
            percentiles(samples)
    for name, f in FILTERS.items():
        results[f"logs_jsonrpc_{name}_p50_ms"] = percentiles(api_times(
            dash, "/mcp", max(5, runs // 20), jsonrpc("logs", {"service": "flood", **f})))[0]
        query = {"lines": "100", **{("grep" if k == "text" else "errors" if k ==
                                     "errors_only" else k): ("1" if v is True else v)
                                    for k, v in f.items()}}
        path = "/api/services/flood/logs?" + urllib.parse.urlencode(query)
        results[f"api_logs_{name}_p50_ms"] = percentiles(
            api_times(dash, path, max(5, runs // 20)))[0]
    results["daemon_rss_after_runs_mb"] = round(daemon.memory_info().rss / 2**20, 1)
    return results


def buffered(dash: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", dash, timeout=30)
    try:
        conn.request("GET", "/api/services/flood/logs?lines=1")
        return int(json.loads(conn.getresponse().read())["last_seq"])
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results.json"))
    args = parser.parse_args()
    runs = 50 if args.quick else 300
    with tempfile.TemporaryDirectory(prefix="hd-bench-mcp-") as tmp:
        root = Path(tmp)
        dash = free_ports(1)[0]
        (root / "hippodrome.toml").write_text(stack_text(dash))
        try:
            hd(root, "up", "--detach", check=True, timeout=300)
            reg = json.loads((root / ".hippodrome" / "registry.json").read_text())
            daemon = psutil.Process(reg["daemon"]["pid"])
            deadline = time.monotonic() + 120
            while buffered(dash) < LINES:
                if time.monotonic() > deadline:
                    raise TimeoutError("flood's lines did not all reach the buffer")
                time.sleep(0.2)
            results = measure(root, dash, daemon, runs)
        finally:
            with suppress(Exception):
                hd(root, "down", timeout=120)
            force_down(Registry(root))
    results.update({"services": N, "buffered_lines": LINES, "calls": runs})
    report(Path(args.out), "mcp", results, TARGETS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
