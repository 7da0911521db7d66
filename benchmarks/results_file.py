"""benchmarks/results.json, shared by every benchmark: each owns one key.

Read-modify-write of one key, replaced atomically, so benchmarks run one after another
(or a reader) never see half a file or lose another benchmark's figures.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "load_average": round(os.getloadavg()[0], 2)}


def merge(out: Path, key: str, section: dict[str, Any]) -> None:
    existing: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    existing[key] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(),
                     **section}
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    tmp.write_text(json.dumps(existing, indent=2) + "\n")
    os.replace(tmp, out)


def report(out: Path, key: str, results: dict[str, Any],
           targets: dict[str, tuple[str, float]]) -> None:
    """Print each figure beside its target's verdict, then merge them under `key`."""
    width = max(len(k) for k in results) + 2
    print(f"{'figure':{width}} {'value':>12}  verdict")
    for name, value in results.items():
        shown = verdict(float(value), targets.get(name)) if isinstance(value, int | float) else ""
        print(f"{name:{width}} {value!s:>12}  {shown}")
    merge(out, key, {"results": results,
                     "targets": {k: f"{op} {t:g}" for k, (op, t) in targets.items()}})
    print(f"written to {out} (key '{key}')")


def verdict(value: float, target: tuple[str, float] | None) -> str:
    if target is None:
        return ""
    op, limit = target
    ok = value <= limit if op == "<=" else value >= limit
    return f"target {op} {limit:g}: {'met' if ok else 'NOT MET'}"
