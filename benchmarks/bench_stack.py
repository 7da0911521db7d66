"""The bundled stack (issue 4; full profile: issue 13): time to ready, memory per
service, and the two data paths users wait on. Real `invoke up --profile P --detach` on
a free port block.

    python benchmarks/bench_stack.py [--runs 3] [--profile ecom|full] [--key NAME]

`--profile full` writes under `stack_full` (figures `full_*`), with a target of at most
25 MB RSS for each stand-in issue 13 added. To measure an older commit, copy this file
into a `git worktree` of it and run it there with `--key stack_full_before`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_core import compile_packages  # noqa: E402
from results_file import report  # noqa: E402
from stackutil import free_offset, hd  # noqa: E402

from hippo_tasks.registry.cleanup import force_down  # noqa: E402
from hippo_tasks.registry.store import Registry  # noqa: E402

TARGETS = {"ecom_ready_s": ("<=", 6.0), "ecom_rss_mb": ("<=", 350.0), "ecom_pss_mb": ("<=", 350.0),
           "ecom_services_rss_mb": ("<=", 300.0),
           "upload_to_searchable_s": ("<=", 1.5), "settings_to_export_s": ("<=", 1.5)}
"""ecom_rss_mb and ecom_pss_mb (issue 4) count the daemon and its guard; issue 11's
ecom_services_rss_mb is the services alone, moto included."""
NEW_IN_13 = ("agentic_search", "admin_lambda", "admin_worker", "ecom_indexer",
             "ecom_indexer_trigger")
"""Stand-ins issue 13 added: each at most 25 MB RSS."""


def call(url: str, method: str = "GET", body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def group_memory(pgid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process group. RSS counts every shared page (libpython, libc) in
    every process; PSS divides shared pages among their sharers, so PSS adds up to what
    the stack really occupies."""
    rss = pss = 0
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                full = proc.memory_full_info()
                rss += full.rss
                pss += full.pss
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return rss, pss


def one_run(seed: bool, profile: str = "ecom", disable: tuple[str, ...] = ()) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hd-bench-stack-") as tmp:
        root = Path(tmp)
        (root / "hippodrome.toml").write_text(
            "".join(f"[services.{name}]\nenabled = false\n" for name in disable))
        offset = free_offset()
        args = ["up", "--profile", profile, "--detach", "--port-offset", str(offset),
                "--table-prefix", "bench-"] + ([] if seed else ["--no-seed"])
        try:
            began = time.monotonic()
            res = hd(root, *args, timeout=180)
            ready = time.monotonic() - began
            if res.returncode != 0:
                raise RuntimeError(res.stdout + res.stderr)
            time.sleep(2.0)  # let start-up allocations settle before measuring memory
            reg = json.loads((root / ".hippodrome" / "registry.json").read_text())
            mem = {name: group_memory(e["pgid"])
                   for name, e in reg["services"].items() if e.get("pgid")}
            rss = {name: round(m[0] / 2**20, 1) for name, m in mem.items()}
            pss = {name: round(m[1] / 2**20, 1) for name, m in mem.items()}
            own = [psutil.Process(reg["daemon"][k]).memory_full_info()
                   for k in ("pid", "guard_pid")]
            out: dict[str, Any] = {"ready_s": ready, "rss": rss, "pss": pss,
                                   "daemon_mb": sum(m.rss for m in own) / 2**20,
                                   "daemon_pss_mb": sum(m.pss for m in own) / 2**20}
            out.update(paths(offset))
            return out
        finally:
            hd(root, "down", timeout=120)
            force_down(Registry(root))


def paths(offset: int) -> dict[str, float]:
    def url(port: int) -> str:
        return f"http://127.0.0.1:{port + offset}"

    code, acct = call(url(9002) + "/api/v2/accounts", "POST", {"name": "bench"})
    key = acct["apiKey"]
    call(url(9002) + "/api/v2/indexes", "POST", {"indexName": "bench", "settings": {}},
         {"x-api-key": key})
    uploads = []
    for i in range(5):
        began = time.monotonic()
        call(url(9004) + "/api/v1/indexes/bench/documents", "POST",
             {"documents": [{"_id": f"d{i}", "title": f"benchword{i} thing"}]},
             {"Authorization": f"Bearer {key}"})
        while time.monotonic() - began < 10:
            c, res = call(url(9001) + "/indexes/bench/search", "POST", {"q": f"benchword{i}"},
                          {"x-api-key": key})
            if c == 200 and res["hits"]:
                break
            time.sleep(0.005)
        uploads.append(time.monotonic() - began)
    exports = []
    for i in range(5):
        began = time.monotonic()
        call(url(9004) + f"/api/v1/indexes/idx{i}/settings", "PUT",
             {"settings": {"n": i}}, {"Authorization": f"Bearer {key}"})
        while time.monotonic() - began < 10:
            c, res = call(url(9010) + "/exports")
            if c == 200 and any(f"idx{i}" in e["key"] for e in res["exports"]):
                break
            time.sleep(0.005)
        exports.append(time.monotonic() - began)
    return {"upload_to_searchable_s": statistics.median(uploads),
            "settings_to_export_s": statistics.median(exports)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results.json"))
    parser.add_argument("--profile", choices=("ecom", "full"), default="ecom")
    parser.add_argument("--disable", default="", help="services to switch off (a,b): "
                        "to see what one service adds")
    parser.add_argument("--key", default=None, help="results.json key (default: stack, "
                        "or stack_full for --profile full)")
    args = parser.parse_args()
    compile_packages()
    hd(REPO, "--list")  # warm the install (imports, .pyc) before timing
    disable = tuple(n for n in args.disable.split(",") if n)
    runs = [one_run(seed=True, profile=args.profile, disable=disable) for _ in range(args.runs)]
    rss_by_service = {name: statistics.median(r["rss"][name] for r in runs)
                      for name in runs[0]["rss"]}
    results = {
        "ecom_ready_s": round(statistics.median(r["ready_s"] for r in runs), 2),
        "ecom_rss_mb": round(sum(rss_by_service.values())
                             + statistics.median(r["daemon_mb"] for r in runs), 1),
        "ecom_pss_mb": round(sum(statistics.median(r["pss"][n] for r in runs)
                                 for n in runs[0]["pss"])
                             + statistics.median(r["daemon_pss_mb"] for r in runs), 1),
        "ecom_services_rss_mb": round(sum(rss_by_service.values()), 1),
        "daemon_and_guard_mb": round(statistics.median(r["daemon_mb"] for r in runs), 1),
        "upload_to_searchable_s": round(statistics.median(
            r["upload_to_searchable_s"] for r in runs), 3),
        "settings_to_export_s": round(statistics.median(
            r["settings_to_export_s"] for r in runs), 3),
        "rss_mb_by_service": rss_by_service,
        "load_average": os.getloadavg()[0],
    }
    targets = dict(TARGETS)
    if args.profile != "ecom":
        p = args.profile
        results = {(f"{p}_{k[5:]}" if k.startswith("ecom_") else k): v
                   for k, v in results.items()}
        targets = {(f"{p}_{k[5:]}" if k.startswith("ecom_") else k): t
                   for k, t in TARGETS.items() if not k.startswith("ecom_")}
        for name in NEW_IN_13:
            if name in rss_by_service:
                results[f"{name}_rss_mb"] = rss_by_service[name]
                targets[f"{name}_rss_mb"] = ("<=", 25.0)
    key = args.key or ("stack" if args.profile == "ecom" else f"stack_{args.profile}")
    report(Path(args.out), key, results, targets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
