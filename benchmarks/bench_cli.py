"""Command-line start-up benchmark (issue 11, item 1): what a repeated command costs.

Wall time (median of N runs, each a fresh interpreter) and import time (`python -X
importtime`, summed over top-level imports) of `hd --version`, `hd status` against a
running small stack, and `invoke status` (the root tasks.py), plus `hd status` with the
fast path switched off (`HIPPODROME_FAST_CLI=0`: every line through invoke).

    python benchmarks/bench_cli.py [--runs 20] [--key cli]
"""

from __future__ import annotations

import argparse
import os
import re
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

from bench_core import compile_packages  # noqa: E402
from results_file import report  # noqa: E402
from stackutil import PY, free_ports, stack_header, toy_service  # noqa: E402

from hippo_tasks.registry.cleanup import force_down  # noqa: E402
from hippo_tasks.registry.store import Registry  # noqa: E402

TARGETS = {"hd_version_s": ("<=", 0.1), "hd_status_s": ("<=", 0.12),
           "invoke_status_s": ("<=", 0.3)}
HD = [PY, "-c", "from hippo_tasks.tasks.program import cli; cli()"]


def commands(root: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    flag = ["--project-root", str(root)]
    return {
        "hd_version": ([*HD, "--version"], {}),
        "hd_status": ([*HD, "status", *flag], {}),
        "hd_status_via_invoke": ([*HD, "status", *flag], {"HIPPODROME_FAST_CLI": "0"}),
        "invoke_status": ([PY, "-m", "invoke", "-r", str(REPO), "status", *flag], {}),
    }


def wall(argv: list[str], env: dict[str, str], runs: int, cwd: Path) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - began)
        assert out.returncode == 0, out.stderr.decode()
    return statistics.median(times)


def import_seconds(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Cumulative import time of the top-level imports (-X importtime, in µs)."""
    out = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], cwd=cwd, env=env,
                         capture_output=True, text=True, check=False)
    total = 0
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if m and not m.group(2).startswith(" "):
            total += int(m.group(1))
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--key", default="cli", help="results.json key")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.json")
    args = parser.parse_args()
    compile_packages()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hd-bench-cli-") as tmp:
        root = Path(tmp)
        dash, *ports = free_ports(4)
        (root / "hippodrome.toml").write_text(stack_header(dash) + "".join(
            toy_service(f"svc{i}", p, readiness={"http": "/healthz"})
            for i, p in enumerate(ports)))
        env = {**os.environ, "NO_COLOR": "1"}
        try:
            up = subprocess.run([PY, "-m", "invoke", "-r", str(REPO), "up", "--detach",
                                 "--project-root", str(root)], cwd=root, env=env,
                                capture_output=True, text=True, timeout=120, check=False)
            assert up.returncode == 0, up.stdout + up.stderr
            for name, (argv, extra) in commands(root).items():
                results[f"{name}_s"] = round(wall(argv, {**env, **extra}, args.runs, root), 3)
                results[f"{name}_imports_s"] = round(
                    import_seconds(argv, {**env, **extra}, root), 3)
            results["python_bare_s"] = round(wall([PY, "-c", "pass"], env, args.runs, root), 3)
        finally:
            force_down(Registry(root))
    report(args.out, args.key, results, TARGETS)


if __name__ == "__main__":
    main()
