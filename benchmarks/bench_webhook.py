"""Webhook benchmark (issue 3): routed events per second, and the latency it adds.

A real stack on loopback: the daemon and one event sink (tests/toys/event_sink.py)
behind a `[[routes]]` entry. One client on one keep-alive connection posts the
reference README's event, alternately straight to the sink and through
`POST /webhook/eventbridge`, in interleaved blocks so drift (CPU frequency, other
load) hits both paths alike. Added latency is the difference of the medians;
throughput is events over the time spent waiting for their answers.

    python benchmarks/bench_webhook.py [--events 5000] [--out benchmarks/results.json]

Bounded: a fixed number of events, every socket with a timeout, the stack taken down
(by PID, from its registry) even when a measurement fails. The figures are merged
under "webhook" into results.json; other keys belong to other benchmarks.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_file import report, verdict  # noqa: E402
from stackutil import PY, TOYS, free_ports, stack_header  # noqa: E402

from hippo_tasks.registry.cleanup import force_down  # noqa: E402
from hippo_tasks.registry.store import Registry  # noqa: E402

TARGETS = {"events_per_s": (">=", 1500.0), "added_median_ms": ("<=", 1.0)}
EVENT = json.dumps({
    "source": "marqo.dynamodb",
    "detail-type": "EcomIndexSettings.MODIFY",
    "detail": {
        "eventName": "MODIFY",
        "tableName": "dev-main-EcomIndexSettingsTable",
        "keys": {"pk": {"S": "INDEX#test"}, "sk": {"S": "SETTINGS"}},
        "newImage": {"pk": {"S": "INDEX#test"}},
    },
}).encode()
HEADERS = {"Content-Type": "application/json"}


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "invoke", "-r", str(REPO), *args, "--project-root",
                           str(root)], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "HIPPODROME_WEBHOOK_TOKEN": ""})


def timed_posts(conn: http.client.HTTPConnection, path: str, n: int) -> list[float]:
    """Seconds per round trip, each checked: a fast wrong answer must not count."""
    out = []
    for _ in range(n):
        began = time.perf_counter()
        conn.request("POST", path, body=EVENT, headers=HEADERS)
        resp = conn.getresponse()
        body = resp.read()
        out.append(time.perf_counter() - began)
        if resp.status != 200:
            raise RuntimeError(f"POST {path} answered {resp.status}: {body[:200]!r}")
    return out


def measure(dash: int, sink: int, events: int, rounds: int = 5) -> dict[str, float]:
    """Figures over `rounds` rounds, each one block straight to the sink and one through
    the webhook. Throughput is the best round's, as timeit reports its best: other
    processes on the machine can only ever slow a round down. The worst and median
    rounds, and the load average, are reported beside it so a noisy run shows."""
    direct = http.client.HTTPConnection("127.0.0.1", sink, timeout=10)
    hook = http.client.HTTPConnection("127.0.0.1", dash, timeout=10)
    via: list[float] = []
    straight: list[float] = []
    per_round_rates: list[float] = []
    per_round = max(1, events // rounds)
    try:
        timed_posts(direct, "/events", 200)  # warm-up: connections, pool, caches
        timed_posts(hook, "/webhook/eventbridge", 200)
        for _ in range(rounds):
            straight += timed_posts(direct, "/events", per_round)
            block = timed_posts(hook, "/webhook/eventbridge", per_round)
            per_round_rates.append(len(block) / sum(block))
            via += block
    finally:
        direct.close()
        hook.close()
    via_ms = sorted(x * 1000 for x in via)
    straight_ms = sorted(x * 1000 for x in straight)

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    return {
        "events": len(via),
        "events_per_s": round(max(per_round_rates), 1),
        "events_per_s_median_round": round(statistics.median(per_round_rates), 1),
        "events_per_s_worst_round": round(min(per_round_rates), 1),
        "webhook_median_ms": round(statistics.median(via_ms), 3),
        "webhook_p99_ms": round(pct(via_ms, 0.99), 3),
        "direct_median_ms": round(statistics.median(straight_ms), 3),
        "direct_p99_ms": round(pct(straight_ms, 0.99), 3),
        "added_median_ms": round(statistics.median(via_ms) - statistics.median(straight_ms), 3),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def run(events: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hd-bench-webhook-") as tmp:
        root = Path(tmp)
        dash, sink = free_ports(2)
        argv = [PY, str(TOYS / "event_sink.py"), "--port", str(sink)]
        (root / "hippodrome.toml").write_text(
            stack_header(dash)
            + f"[services.sink]\ncommand = {json.dumps(argv)}\nport = {sink}\n\n"
            + '[[routes]]\ndetail_type_prefix = "EcomIndexSettings."\nservice = "sink"\n')
        try:
            up = cli(root, "up", "--detach")
            if up.returncode != 0:
                raise RuntimeError(f"up failed:\n{up.stdout}\n{up.stderr}")
            return measure(dash, sink, events)
        finally:
            cli(root, "down")
            force_down(Registry(root))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000, help="events through the webhook")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results.json"))
    args = parser.parse_args()
    results = run(args.events)
    report(Path(args.out), "webhook", results, TARGETS)
    met = all(verdict(float(results[k]), TARGETS[k]).endswith(" met") for k in TARGETS)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
