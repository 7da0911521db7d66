"""`hd probes --full` wall time at the default example count (issue 13), and `--fuzz`'s.

A real full-profile stack on a free port range, started through the real CLI and taken
down (from its registry, by PID) even when a measurement fails. Each mode runs through
`hd probes` as a user would (the stack's probes command, the env contract, the task's
flag pass-through), with a fixed seed so runs draw the same examples; the figures are
the median of the runs' wall times, plus each property's own seconds from `--json`.

    python benchmarks/bench_probes.py [--runs 3] [--out benchmarks/results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from data_stack import free_offset, run_task  # noqa: E402
from results_file import report  # noqa: E402
from stackutil import hd  # noqa: E402

from hippo_tasks.registry.cleanup import force_down  # noqa: E402
from hippo_tasks.registry.store import Registry  # noqa: E402

TARGETS: dict[str, tuple[str, float]] = {"full_wall_s_p50": ("<=", 60)}


def timed(root: Path, *flags: str) -> tuple[float, dict[str, Any]]:
    out = root / "bench-probes.json"
    started = time.perf_counter()
    done = run_task(root, "probes", *flags, "--seed", "1", "--json", str(out), timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"probes {' '.join(flags)} failed:\n{done.stdout}\n{done.stderr}")
    return wall, json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-probes-") as tmp:
        root = Path(tmp) / "proj"
        root.mkdir()
        try:
            up = hd(root, "up", "--detach", "--profile", "full", "--port-offset",
                    str(free_offset()), timeout=240)
            if up.returncode != 0:
                raise SystemExit(f"up failed:\n{up.stdout}\n{up.stderr}")
            health = [timed(root)[0] for _ in range(args.runs)]
            full_runs = [timed(root, "--full") for _ in range(args.runs)]
            fuzz_runs = [timed(root, "--fuzz") for _ in range(args.runs)]
        finally:
            hd(root, "down", timeout=120)
            force_down(Registry(root))
    per_property: dict[str, float] = {}
    for _, result in full_runs:
        for prop in result["full"]:
            per_property.setdefault(prop["name"], 0.0)
            per_property[prop["name"]] += prop["seconds"] / len(full_runs)
    results: dict[str, Any] = {
        "examples_per_property": 25,
        "health_and_data_path_wall_s_p50": round(statistics.median(health), 2),
        "full_wall_s_p50": round(statistics.median(w for w, _ in full_runs), 2),
        "full_wall_s_max": round(max(w for w, _ in full_runs), 2),
        "fuzz_wall_s_p50": round(statistics.median(w for w, _ in fuzz_runs), 2),
        "fuzz_steps_p50": statistics.median(r["fuzz"]["steps"] for _, r in fuzz_runs),
        **{f"property_s[{name}]": round(s, 2) for name, s in per_property.items()},
        "runs": args.runs,
    }
    report(args.out, "probes", results, TARGETS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
