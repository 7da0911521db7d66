"""Webhook benchmark (issue 3): routed events per second, and the latency it adds;
(issue 14) what recording every delivery costs.

A real stack on loopback: the daemon and one event sink (tests/toys/event_sink.py)
behind a `[[routes]]` entry. One client on one keep-alive connection posts the
reference README's event, alternately straight to the sink and through
`POST /webhook/eventbridge`, in interleaved blocks so drift (CPU frequency, other
load) hits both paths alike. Added latency is the difference of the medians;
throughput is events over the time spent waiting for their answers. That stack
records (the default), as a user's does.

Recording's cost, side by side: a second, identical stack started with `--no-record`
runs at the same time; blocks of events go to one, then the other (which goes first
alternates), and `record_loss_pct` is the median over the pairs of 1 - (rate
recording) / (rate not recording): the two blocks of a pair run back to back, so load
from elsewhere on the machine hits both alike (`record_loss_pct_of_medians` compares
the two sides' median rates instead). Beside it, each daemon's own CPU time per event
over those rounds (all its threads, the recorder's included), which other load on the
machine disturbs far less than a rate does. The recording stack's file is then counted, so a
recorder that silently wrote nothing cannot look free.

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
from collections.abc import Callable
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_file import report, verdict  # noqa: E402
from stackutil import PY, TOYS, free_ports, stack_header  # noqa: E402

from hippo_tasks.registry.cleanup import force_down  # noqa: E402
from hippo_tasks.registry.store import Registry  # noqa: E402

TARGETS = {"events_per_s": (">=", 1500.0), "added_median_ms": ("<=", 1.0),
           "record_loss_pct": ("<=", 5.0), "stdlib_target_forward_ms": ("<=", 5.0)}
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


def daemon_cpu(root: Path) -> float:
    """CPU seconds the project's daemon has used so far (user + system, every thread)."""
    pid = Registry(root).read()["daemon"]["pid"]
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def recording_cost(on: int, off: int, rounds: int, per_round: int,
                   cpu: dict[int, Callable[[], float]]) -> dict[str, float]:
    """Paired rounds through two identical daemons, one recording and one not."""
    conns = {dash: http.client.HTTPConnection("127.0.0.1", dash, timeout=10)
             for dash in (on, off)}
    rates: dict[int, list[float]] = {on: [], off: []}
    try:
        for conn in conns.values():
            timed_posts(conn, "/webhook/eventbridge", 300)  # warm-up
        cpu_before = {dash: read() for dash, read in cpu.items()}
        for i in range(rounds):
            for dash in ((on, off) if i % 2 == 0 else (off, on)):
                block = timed_posts(conns[dash], "/webhook/eventbridge", per_round)
                rates[dash].append(len(block) / sum(block))
        cpu_used = {dash: read() - cpu_before[dash] for dash, read in cpu.items()}
    finally:
        for conn in conns.values():
            conn.close()
    per_event = {dash: cpu_used[dash] / (rounds * per_round) * 1e6 for dash in cpu_used}
    ratios = [a / b for a, b in zip(rates[on], rates[off], strict=True)]
    med_on, med_off = statistics.median(rates[on]), statistics.median(rates[off])
    quartiles = statistics.quantiles(ratios, n=4)  # the spread: how noisy the pairs were
    return {
        "record_on_events_per_s": round(med_on, 1),
        "record_off_events_per_s": round(med_off, 1),
        "record_loss_pct": round((1 - statistics.median(ratios)) * 100, 2),
        "record_loss_pct_of_medians": round((1 - med_on / med_off) * 100, 2),
        "record_loss_pct_q1": round((1 - quartiles[2]) * 100, 2),
        "record_loss_pct_q3": round((1 - quartiles[0]) * 100, 2),
        "record_on_daemon_cpu_us_per_event": round(per_event[on], 1),
        "record_off_daemon_cpu_us_per_event": round(per_event[off], 1),
        "record_rounds": rounds,
        "record_events_per_round": per_round,
    }


def recorded_lines(root: Path) -> int:
    folder = root / ".hippodrome" / "events"
    return sum(len(p.read_bytes().splitlines()) for p in folder.glob("*.jsonl")) \
        if folder.exists() else 0


def stack(root: Path, dash: int, sink: int) -> None:
    argv = [PY, str(TOYS / "event_sink.py"), "--port", str(sink)]
    root.mkdir()
    (root / "hippodrome.toml").write_text(
        stack_header(dash)
        + f"[services.sink]\ncommand = {json.dumps(argv)}\nport = {sink}\n\n"
        + '[[routes]]\ndetail_type_prefix = "EcomIndexSettings."\nservice = "sink"\n')


def stdlib_target(n: int = 200) -> float:
    """Median ms of one forward (the webhook's pool, kept alive) to a target built on
    Python's http.server, which sends an answer's head and body in two writes: 44 ms
    each before TCP_QUICKACK (hippo_contract/http_client.py), 0.2 ms after."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from hippo_tasks.daemon.webhook.forward import TargetPool

    class Answer(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body = b'{"status": "success"}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()  # the head: one write
            self.wfile.write(body)  # the body: another

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        pool, took = TargetPool(10.0), []
        for _ in range(n):
            began = time.perf_counter()
            pool.post(server.server_address[1], "/events", EVENT)
            took.append((time.perf_counter() - began) * 1000)
        return round(statistics.median(took), 3)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run(events: int, rounds: int, per_round: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hd-bench-webhook-") as tmp:
        on_root, off_root = Path(tmp) / "on", Path(tmp) / "off"
        dash, sink, dash_off, sink_off = free_ports(4)
        stack(on_root, dash, sink)
        stack(off_root, dash_off, sink_off)
        try:
            for root, flags in ((on_root, ()), (off_root, ("--no-record",))):
                up = cli(root, "up", "--detach", *flags)
                if up.returncode != 0:
                    raise RuntimeError(f"up failed:\n{up.stdout}\n{up.stderr}")
            results = measure(dash, sink, events)
            results["stdlib_target_forward_ms"] = stdlib_target()
            results.update(recording_cost(dash, dash_off, rounds, per_round, {
                dash: lambda: daemon_cpu(on_root), dash_off: lambda: daemon_cpu(off_root)}))
            time.sleep(0.5)  # the writer's last batch
            results["recorded_lines"] = recorded_lines(on_root)
            results["recorded_lines_no_record"] = recorded_lines(off_root)
            sent = 200 + events // 5 * 5 + 300 + rounds * per_round
            if results["recorded_lines"] != sent or results["recorded_lines_no_record"]:
                raise RuntimeError(f"recorded {results['recorded_lines']} lines of {sent} "
                                   f"sent (and {results['recorded_lines_no_record']} with "
                                   "--no-record): the recording is not what was measured")
            return results
        finally:
            for root in (on_root, off_root):
                cli(root, "down")
                force_down(Registry(root))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000, help="events through the webhook")
    parser.add_argument("--rounds", type=int, default=60,
                        help="paired rounds (recording on/off) for the recording's cost")
    parser.add_argument("--per-round", type=int, default=250,
                        help="events in each block of a paired round")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results.json"))
    args = parser.parse_args()
    results = run(args.events, args.rounds, args.per_round)
    report(Path(args.out), "webhook", results, TARGETS)
    met = all(verdict(float(results[k]), TARGETS[k]).endswith(" met") for k in TARGETS)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
