"""bench_peers.py's table, its ratios and issue 11's targets, printed and merged into
benchmarks/results.json under "peers".

Every figure is lower-is-better, so a ratio is hippodrome / the best (lowest) peer that
has the figure at all (honcho has no restart or status command): at most 1.0 means as
good as the best peer in the same run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from results_file import merge

ORDER = ["ready_s_n10", "ready_s_n40", "restart_one_s", "restart_back_s", "service_alone_s",
         "stop_s",
         "manager_pss_mb", "manager_rss_mb", "manager_processes", "idle_cpu_pct_n40",
         "status_s", "left_after_kill9"]
MANAGERS = ["hippodrome", "honcho", "supervisord", "circus", "no manager"]
HD = "hippodrome"


def ratio(value: float | None, best: float | None) -> float | None:
    """value / best; 1.0 when both are 0; None when either is missing or best alone is 0."""
    if value is None or best is None:
        return None
    if best == 0:
        return 1.0 if value == 0 else None
    return round(value / best, 2)


def ratios(figures: dict[str, dict[str, float]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, per in figures.items():
        if key in ("manager_processes", "service_alone_s"):  # they explain, not goals
            continue
        peers = [v for n, v in per.items() if n != HD]
        out[key] = ratio(per.get(HD), min(peers) if peers else None)
    return out


def checks(figures: dict[str, dict[str, float]], best: dict[str, float | None],
           watch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 11's targets: (measured, limit) each, lower is better."""
    def vs(key: str, peer: str) -> float | None:
        per = figures.get(key, {})
        return ratio(per.get(HD), per.get(peer))

    found: dict[str, tuple[float | None, float, str]] = {
        "ready_n10_to_best_peer": (best.get("ready_s_n10"), 1.0, "ready N=10 <= best peer"),
        "ready_n40_to_best_peer": (best.get("ready_s_n40"), 1.0, "ready N=40 <= best peer"),
        "restart_one_to_supervisord": (vs("restart_one_s", "supervisord"), 0.8,
                                       "restart one <= 0.8 x supervisord"),
        "stop_to_circus": (vs("stop_s", "circus"), 1.0, "stop <= circus"),
        "pss_to_supervisord": (vs("manager_pss_mb", "supervisord"), 1.0,
                               "daemon + guard PSS <= supervisord's"),
        "idle_cpu_pct_n40": (figures.get("idle_cpu_pct_n40", {}).get(HD), 0.1,
                             "idle CPU <= 0.1 % with 40 services"),
        "watch_idle_cpu_pct_20k": (watch.get("watch_idle_cpu_pct_20k"), 1.0,
                                   "watcher idle < 1 % (20,000 files)"),
        "watch_reaction_s": (watch.get("watch_reaction_s"), 0.5,
                             "change -> restart < 0.5 s"),
    }
    return {name: {"value": value, "target": f"<= {limit:g}", "says": says,
                   "met": None if value is None else value <= limit}
            for name, (value, limit, says) in found.items()}


def table(figures: dict[str, dict[str, float]], best: dict[str, float | None]) -> str:
    names = [n for n in MANAGERS if any(n in per for per in figures.values())]
    lines = ["| figure | " + " | ".join(names) + " | hippodrome / best peer |",
             "|---" * (len(names) + 2) + "|"]
    for key in [k for k in ORDER if k in figures]:
        cells = [f"{figures[key][n]:g}" if n in figures[key] else "none" for n in names]
        shown = best.get(key)
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {'—' if shown is None else shown} |")
    return "\n".join(lines)


def report(out: Path, figures: dict[str, dict[str, float]], watch: dict[str, Any],
           meta: dict[str, Any]) -> None:
    best = ratios(figures)
    found = checks(figures, best, watch)
    print(table(figures, best))
    for name, watched in watch.items():
        print(f"watch {name}: {watched}")
    for check in found.values():
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[check["met"]]
        print(f"{check['says']:40} {check['value']!s:>8}  ({check['target']}) {verdict}")
    alone = figures.get("service_alone_s", {}).get("no manager")
    restarted = figures.get("restart_one_s", {}).get("supervisord")
    if alone and restarted:
        print(f"the service alone takes {alone:g} s: {alone / restarted:.2f} x supervisord's "
              "restart, the least any manager's restart can be")
    print(f"load average before {meta['load_before']}, after {meta['load_after']}")
    merge(out, "peers", {"results": {"figures": figures, "ratio_to_best_peer": best,
                                     "watch": watch, **meta},
                         "targets": found})
    print(f"written to {out} (key 'peers')")
