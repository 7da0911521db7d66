"""Hippodrome beside honcho, supervisord and circus (issue 11): one workload, one run.

Each peer is installed from PyPI into a venv of its own under .bench/peers/ (made on the
first run, reused after; peer_envs.py). Every manager runs the same toy HTTP services
(0.3 s to start before listening), driven through its own command line
(peer_managers.py), and is timed from outside. Rounds are interleaved: each scenario
runs for every manager in turn, the order rotating from round to round, so a burst of
load from elsewhere on the machine falls on all of them alike. Figures are medians over
the rounds; idle CPU is pooled (all windows' CPU over all windows' seconds).

- ready_s_n10 / ready_s_n40: launch command -> every service answers HTTP; taken
  --ready-samples times per round (default 3: 9 launches in all, the extra ones cleaned
  up by kill), since one launch moves by +-10 % with whatever else the machine does;
- restart_one_s: restart command -> the command has returned, the old process is gone
  and the port answers again (restart_back_s: the port answering, polled while the
  command still runs: hd waits for readiness, supervisorctl and circusctl do not);
- stop_s: stop command (honcho: SIGINT to its group, as Ctrl+C) -> every process gone,
  services and manager (N=10);
- manager_pss_mb / manager_rss_mb (N=40): the manager's own processes (hippodrome:
  daemon + guard; honcho: itself and its helper processes), /proc/PID/smaps_rollup;
- idle_cpu_pct_n40: the manager's CPU (per-thread schedstat, ns) over an idle window
  of 20 s: two of Hippodrome's 10 s liveness periods (an 8 s window could fall between
  two probe rounds and read 0);
- status_s: CLI round trip of `status` (hd / supervisorctl / circusctl; N=40);
- left_after_kill9: services still alive 2 s after `kill -9` of the manager (N=10);
- service_alone_s: one toy spawned by hand, no manager, to its port answering (3 a
  round): the floor under any manager's restart_one_s, which also stops the old one;
- then hippodrome's 20,000-file watch (bench_watch.py): idle CPU and change->restart.

Byte code: pip compiled each peer's modules when it installed them; an editable install
of this repo is never compiled, and where PYTHONDONTWRITEBYTECODE is set (this machine,
CI) every `hd` and daemon would compile ~100 modules on every start, about 0.2 s of a
launch. The run byte-compiles hippodrome's packages first, as pip does for the peers.

    python benchmarks/bench_peers.py [--quick] [--rounds 3] [--ready-samples 3] [--window 20]
                                     [--no-watch]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

import peer_envs  # noqa: E402
from bench_core import answers, compile_packages, wait  # noqa: E402
from peer_managers import DELAY, MANAGERS, OWN_PORTS, Manager, run  # noqa: E402
from peer_report import report  # noqa: E402
from stackutil import PY, TOY, alive, free_ports  # noqa: E402

Figures = dict[str, dict[str, list[float]]]
"""figure -> manager -> one value per round."""


@contextmanager
def project(cls: type[Manager], bindir: Path, n: int) -> Iterator[Manager]:
    with tempfile.TemporaryDirectory(prefix=f"hd-peers-{cls.name}-") as tmp:
        ports = free_ports(n + OWN_PORTS)
        manager = cls(bindir, Path(tmp), ports[OWN_PORTS:], ports[:OWN_PORTS])
        try:
            yield manager
        except BaseException:
            # The manager's own files (daemon.log, supervisord.log) are the only account
            # of what went wrong, and the folder goes with the `with`: keep a copy.
            kept = Path(tempfile.gettempdir()) / f"kept-{Path(tmp).name}"
            shutil.copytree(tmp, kept, dirs_exist_ok=True, ignore_dangling_symlinks=True)
            print(f"the failed run's folder is kept in {kept}", file=sys.stderr)
            raise
        finally:
            manager.cleanup()


def bring_up(m: Manager, timeout: float = 90) -> float:
    """Seconds from the launch command to every service answering."""
    began = time.monotonic()
    m.launch()
    pending = set(m.ports)
    while pending:
        failed = m.launcher is not None and m.launcher.poll() not in (None, 0)
        if failed or time.monotonic() - began > timeout:
            log = (m.root / "launch.log").read_text(errors="replace")[-2000:]
            why = "its launch command failed" if failed else f"not answering after {timeout}s"
            raise RuntimeError(f"{m.name}: ports {sorted(pending)}: {why}; its output ends:"
                               f"\n{log}")
        pending = {p for p in pending if not answers(p)}
        if pending:
            time.sleep(0.005)
    took = time.monotonic() - began
    m.manager_pids()  # met now, so clean-up finds them even after a kill -9
    return took


def stop(m: Manager) -> float:
    """Seconds from the stop command to every process (services and manager) gone."""
    pids = m.toy_pids() + m.manager_pids()
    began = time.monotonic()
    m.stop()
    wait(lambda: not any(alive(p) for p in pids), 60)
    return time.monotonic() - began


def restart_one(m: Manager) -> tuple[float, float] | None:
    """(seconds until the command has returned and the service answers again: the
    user's wait; seconds until it answers again, polled while the command runs)."""
    argv = m.restart_argv(m.names[0])
    if argv is None:
        return None
    old = m.toy_pids(m.names[0])[-1]
    with tempfile.TemporaryFile() as out:
        began = time.monotonic()
        proc = subprocess.Popen(argv, cwd=m.root, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "NO_COLOR": "1"})
        try:
            back = wait(lambda: not alive(old) and answers(m.ports[0]), 30)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            out.seek(0)
            raise RuntimeError(f"{argv} exited {proc.returncode}: {out.read().decode()}")
    return time.monotonic() - began, back


def service_alone(port: int) -> float:
    """Seconds from spawning one toy by hand, no manager at all, to its port answering:
    what a restart of it costs at the least, whoever manages it (the floor under
    restart_one_s)."""
    began = time.monotonic()
    proc = subprocess.Popen([PY, TOY, "--port", str(port), "--delay", DELAY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: answers(port), 30)
        return time.monotonic() - began
    finally:
        proc.kill()
        proc.wait()


def status_round_trip(m: Manager, runs: int) -> float | None:
    argv = m.status_argv()
    if argv is None:
        return None
    times = []
    for _ in range(runs):
        began = time.monotonic()
        run(argv, m.root)
        times.append(time.monotonic() - began)
    return statistics.median(times)


def cpu_ns(pid: int) -> int:
    """CPU time of every live thread of `pid`, in ns (schedstat: no 10 ms ticks)."""
    total = 0
    with suppress(FileNotFoundError, ProcessLookupError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with suppress(FileNotFoundError, ProcessLookupError):
                total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    return total


def smaps_kb(pid: int, field: str) -> int:
    with suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def small(m: Manager, restarts: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {"ready_s_n10": bring_up(m)}
    times = [t for t in (restart_one(m) for _ in range(restarts)) if t is not None]
    if times:
        out["restart_one_s"] = statistics.median(t[0] for t in times)
        out["restart_back_s"] = statistics.median(t[1] for t in times)
    out["stop_s"] = stop(m)
    return out


def big(m: Manager, window: float, status_runs: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {"ready_s_n40": bring_up(m)}
    time.sleep(1.0)  # past start-up work (first liveness probes, log files opened)
    pids = m.manager_pids()
    out["manager_processes"] = len(pids)
    out["manager_pss_mb"] = sum(smaps_kb(p, "Pss") for p in pids) / 1024
    out["manager_rss_mb"] = sum(smaps_kb(p, "Rss") for p in pids) / 1024
    before = {p: cpu_ns(p) for p in pids}
    time.sleep(window)
    out["idle_cpu_ns"] = sum(max(0, cpu_ns(p) - c) for p, c in before.items())
    out["idle_window_s"] = window
    out["status_s"] = status_round_trip(m, status_runs)
    # No timed stop here: supervisord takes ~20 s to stop 40 (one a tick), which
    # would blow the time budget; the stop figure is N=10's. Clean-up kills them.
    return out


def after_kill9(m: Manager) -> dict[str, float | None]:
    bring_up(m)
    services = m.toy_pids()
    m.kill9()
    time.sleep(2.0)
    return {"left_after_kill9": sum(alive(p) for p in services)}


def interleaved(bins: dict[str, Path], rounds: int, window: float,
                names: list[str], ready_samples: int = 1) -> Figures:
    figures: Figures = {}
    classes = [c for c in MANAGERS if c.name in names]
    extra = max(0, ready_samples - 1)
    scenarios: list[tuple[str, int, Callable[[Manager], dict[str, float | None]]]] = [
        ("ready, restart one, stop", 10, lambda m: small(m, 3)),
        *[("ready", 10, lambda m: {"ready_s_n10": bring_up(m)})] * extra,
        ("ready, memory, idle CPU, status, stop", 40, lambda m: big(m, window, 5)),
        *[("ready", 40, lambda m: {"ready_s_n40": bring_up(m)})] * extra]
    for r in range(rounds):
        order = classes[r % len(classes):] + classes[:r % len(classes)]
        port = free_ports(1)[0]
        figures.setdefault("service_alone_s", {}).setdefault("no manager", []).extend(
            service_alone(port) for _ in range(3))
        # A count, not a timing: once is enough.
        steps = scenarios + ([("kill -9", 10, after_kill9)] if r == 0 else [])
        for label, n, scenario in steps:
            for cls in order:
                print(f"round {r + 1}/{rounds}: {cls.name} N={n}: {label}", flush=True)
                with project(cls, bins[cls.name], n) as m:
                    for key, value in scenario(m).items():
                        if value is not None:
                            figures.setdefault(key, {}).setdefault(cls.name, []).append(value)
    return figures


def summarise(figures: Figures) -> dict[str, dict[str, float]]:
    """figure -> manager -> one number: the median, pooled for idle CPU."""
    out: dict[str, dict[str, float]] = {}
    for key, per in figures.items():
        if key in ("idle_cpu_ns", "idle_window_s"):
            continue
        for name, values in per.items():
            out.setdefault(key, {})[name] = round(statistics.median(values), 3)
    for name, cpu in figures.get("idle_cpu_ns", {}).items():
        seconds = sum(figures["idle_window_s"][name])
        out.setdefault("idle_cpu_pct_n40", {})[name] = round(sum(cpu) / 1e9 / seconds * 100, 3)
    return out


def commit() -> str:
    """HEAD's hash, '+dirty' when hippo_tasks has uncommitted changes (what was measured)."""
    try:
        head = run(["git", "rev-parse", "--short", "HEAD"], REPO).stdout.strip()
        dirty = run(["git", "status", "--porcelain", "hippo_tasks"], REPO).stdout.strip()
    except (OSError, RuntimeError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def watch_figures(quick: bool) -> dict[str, Any]:
    import bench_watch  # the daemon's own file-watch benchmark, hippodrome only
    return bench_watch.measure(20_000, 5.0 if quick else 10.0, 3 if quick else 5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, 10 s idle window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ready-samples", type=int, default=3,
                        help="launches per manager and round for the ready figures")
    parser.add_argument("--window", type=float, default=20.0,
                        help="idle CPU window, s (keep it a multiple of liveness_interval)")
    parser.add_argument("--no-watch", action="store_true", help="skip the 20,000-file watch")
    parser.add_argument("--managers", default=",".join(c.name for c in MANAGERS))
    parser.add_argument("--hd-bin", type=Path, default=Path(PY).parent,
                        help="folder holding the hd to time (default: this Python's, which "
                             "in a dev venv is an editable install)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.json")
    args = parser.parse_args()
    rounds, window = (1, 10.0) if args.quick else (args.rounds, args.window)
    samples = 1 if args.quick else args.ready_samples
    names = args.managers.split(",")
    bins = {n: peer_envs.ensure(n) for n in names if n in peer_envs.PINS}
    bins["hippodrome"] = args.hd_bin
    if "hippodrome" in names:
        compile_packages()
    load_before = os.getloadavg()
    began = time.monotonic()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        figures = summarise(interleaved(bins, rounds, window, names, samples))
        watch = {} if args.no_watch else watch_figures(args.quick)
    finally:
        signal.signal(signal.SIGTERM, previous)
    meta = {"commit": commit(), "rounds": rounds, "ready_samples": samples,
            "idle_window_s": window,
            "took_s": round(time.monotonic() - began),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "peers": {n: peer_envs.PINS[n] for n in names if n in peer_envs.PINS}}
    report(args.out, figures, watch, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
