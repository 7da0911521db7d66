"""Hot-reload watcher benchmark (issue 11, item 4): what watching 20,000 files costs.

A real daemon (`invoke up --detach`) runs one toy service whose `watch = ["src/**/*.py"]`
covers a generated tree of 20,000 files. Measured from outside:

- the daemon's idle CPU (percent of one core) over a window while nothing changes;
- the daemon's RSS;
- reaction: from writing one watched file to the restart beginning (the daemon's
  "change detected" line in the service's log file), median of several changes.

    python benchmarks/bench_watch.py [--files 20000] [--key watch] [--window 10]
"""

from __future__ import annotations

import argparse
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

from bench_core import cli, wait  # noqa: E402
from results_file import report  # noqa: E402
from stackutil import PY, free_ports, registry, stack_header, toy_service  # noqa: E402

from hippo_tasks.registry.cleanup import force_down  # noqa: E402
from hippo_tasks.registry.store import Registry  # noqa: E402

TARGETS = {"watch_idle_cpu_pct_20k": ("<=", 1.0), "watch_reaction_s": ("<=", 0.5)}


def make_tree(root: Path, files: int, per_dir: int = 100) -> list[Path]:
    """`files` small Python files, `per_dir` to a folder, two levels deep."""
    out = []
    for i in range(files):
        d = root / "src" / f"pkg{i // (per_dir * 20):03d}" / f"mod{(i // per_dir) % 20:02d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        path = d / f"m{i % per_dir:03d}.py"
        path.write_text(f"VALUE = {i}\n")
        out.append(path)
    return out


def change_detected_count(log: Path) -> int:
    try:
        return log.read_bytes().count(b"change detected")
    except FileNotFoundError:
        return 0


def more_changes(log: Path, seen: int) -> Callable[[], bool]:
    """True once the log has more 'change detected' lines than `seen`."""
    return lambda: change_detected_count(log) > seen


def measure(files: int, window: float, changes: int) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix="hd-bench-watch-") as tmp:
        root = Path(tmp)
        dash, port = free_ports(2)
        began = time.monotonic()
        tree = make_tree(root, files)
        print(f"generated {len(tree)} files in {time.monotonic() - began:.1f}s", flush=True)
        (root / "hippodrome.toml").write_text(
            stack_header(dash) + toy_service("web", port, readiness={"http": "/healthz"},
                                             watch=["src/**/*.py"]))
        try:
            up = cli(root, "up", "--detach")
            assert up.returncode == 0, up.stdout + up.stderr
            daemon = psutil.Process(registry(root)["daemon"]["pid"])
            log = root / ".logs" / "latest" / "web.log"
            time.sleep(3.0)  # past the watcher's set-up (a first scan, or adding watches)
            cpu0 = sum(daemon.cpu_times()[:2])
            time.sleep(window)
            idle = (sum(daemon.cpu_times()[:2]) - cpu0) / window * 100
            rss = daemon.memory_info().rss / 2**20
            reactions = []
            for n in range(changes):
                seen = change_detected_count(log)
                target = tree[(n * 7919) % len(tree)]
                target.write_text(f"VALUE = 'changed {n}'\n")
                reactions.append(wait(more_changes(log, seen), 30, 0.002))
                # Let the restart finish and the watcher settle before the next change.
                wait(lambda: registry(root)["services"]["web"]["state"] == "running", 30, 0.02)
                time.sleep(1.0)
            down = cli(root, "down")
            assert down.returncode == 0, down.stdout + down.stderr
        finally:
            force_down(Registry(root))
    return {"watched_files": files, "watch_idle_cpu_pct_20k": round(idle, 2),
            "watch_reaction_s": round(statistics.median(reactions), 3),
            "watch_reaction_max_s": round(max(reactions), 3),
            "daemon_rss_mb_watching_20k": round(rss, 1)}


def watchfiles_cost() -> dict[str, float | str]:
    """watchfiles' own price inside a daemon that already has asyncio loaded: import
    time (median of 5 fresh interpreters) and the RSS it adds once imported."""
    code = ("import asyncio, os, time\n"
            "def rss():\n"
            "    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf("
            "'SC_PAGE_SIZE')\n"
            "before = rss(); t = time.perf_counter()\n"
            "import watchfiles\n"
            "took = time.perf_counter() - t\n"
            "print(took, (rss() - before) / 2**20)\n")
    runs = []
    for _ in range(5):
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            return {"watchfiles": "not installed"}
        took, mb = (float(x) for x in out.stdout.split())
        runs.append((took, mb))
    return {"watchfiles_import_ms": round(statistics.median(r[0] for r in runs) * 1000, 1),
            "watchfiles_added_rss_mb": round(statistics.median(r[1] for r in runs), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--window", type=float, default=10.0, help="idle CPU window, s")
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--key", default="watch", help="results.json key (e.g. watch_before)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.json")
    args = parser.parse_args()
    results: dict[str, float | str] = {
        "watch_backend": os.environ.get("HIPPODROME_WATCH_POLL") and "poll" or "default"}
    results.update(measure(args.files, args.window, args.changes))
    results.update(watchfiles_cost())
    report(args.out, args.key, results, TARGETS)


if __name__ == "__main__":
    main()
