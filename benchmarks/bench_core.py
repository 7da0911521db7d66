"""Orchestrator benchmarks (issue 2): real stacks of toy services on loopback.

Each figure is measured from outside, the way a user would see it, through the real
CLI and the real daemon. Bounded: every wait has a deadline, every stack is taken down
(by PID, from its registry) even when a measurement fails.

    python benchmarks/bench_core.py [--quick] [--out benchmarks/results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_file import report  # noqa: E402
from stackutil import (  # noqa: E402
    FLOOD,
    PY,
    TOY,
    escaper_service,
    free_ports,
    stack_header,
    toy_service,
)

from hippo_tasks.registry.cleanup import force_down  # noqa: E402
from hippo_tasks.registry.store import Registry  # noqa: E402
from hippo_tasks.supervision.scope import marked_pids  # noqa: E402

TARGETS = {
    "ready_s_n10": ("<=", 0.7), "ready_s_n40": ("<=", 1.6),
    "daemon_rss_mb_n40": ("<=", 25.0), "daemon_idle_cpu_pct_n40": ("<=", 0.2),
    "teardown_s_n40": ("<=", 0.2), "sigkill_after_timeout_s": ("<=", 0.3),
    "peers_gone_s": ("<=", 0.3), "restart_one_s": ("<=", 0.42),
    "log_lines_per_s": (">=", 1_000_000), "producer_slowdown_pct": ("<=", 10.0),
    "log_lines_lost": ("<=", 0), "orphans_after_kill9": ("<=", 0),
    "restart_storm_extra_processes": ("<=", 0), "restart_storm_left_after_down": ("<=", 0),
    "chain_up_s_n300": ("<=", 6.0), "chain_down_s_n300": ("<=", 3.0),
}


def compile_packages() -> None:
    """Byte-compile this repo's packages, as pip does for an installed package (and for
    the peers bench_peers runs beside it). An editable install never is, and where
    PYTHONDONTWRITEBYTECODE is set (this machine, CI) every `hd` and daemon start would
    compile ~100 modules again: about 0.2 s of a launch, which no user pays twice."""
    dirs = [str(REPO / p) for p in ("hippo_tasks", "hippo_platform", "hippo_contract")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *dirs], check=True,
                   stdout=subprocess.DEVNULL)
    # The daemon's seed runs with -OO, its compiled files in a cache of its own
    # (daemon/seed.py): its modules imported once there, as its first start would.
    from hippo_tasks.daemon.seed import compiled_cache

    cache = compiled_cache()
    if cache is not None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([sys.executable, "-OO", "-X", f"pycache_prefix={cache}", "-c",
                        "import hippo_tasks.daemon.main, hippo_tasks.daemon.http, "
                        "hippo_tasks.daemon.commands"], check=True,
                       env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)


def cli(root: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "invoke", "-r", str(REPO), *args, "--project-root",
                           str(root)], cwd=root, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "NO_COLOR": "1"})


def answers(port: int, path: str = "/healthz") -> bool:
    """GET path answers 200. A bare socket, not urllib: the ready loops call this every
    5 ms for each pending port, and a refused attempt costs ~20 us of CPU this way
    against ~65 us through urllib (40 ports: 0.17 s against 0.5 s of CPU per second,
    taken from the very services being timed on a 2-core machine)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head and len(head) < 1024:
                data = sock.recv(1024)
                if not data:
                    break
                head += data
    except OSError:
        return False
    return head.split(b" ", 2)[1:2] == [b"200"]


def wait(cond: Callable[[], bool], timeout: float, every: float = 0.005) -> float:
    """Seconds until cond() holds, polled every `every` s; TimeoutError past `timeout`
    (every benchmark waits through this one, so no wait is ever unbounded)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if cond():
            return time.monotonic() - began
        time.sleep(every)
    raise TimeoutError(f"not met within {timeout}s")


@contextmanager
def stack(text_for: Callable[[list[int]], str], n_ports: int) -> Iterator[tuple[Path, list[int]]]:
    with tempfile.TemporaryDirectory(prefix="hd-bench-") as tmp:
        root = Path(tmp)
        ports = free_ports(n_ports + 1)
        (root / "hippodrome.toml").write_text(text_for(ports))
        try:
            yield root, ports
        finally:
            force_down(Registry(root))


def n_services(n: int, extra: str = "") -> Callable[[list[int]], str]:
    def text(ports: list[int]) -> str:
        body = stack_header(ports[0]) + extra
        for i, port in enumerate(ports[1:]):
            body += toy_service(f"svc{i:02d}", port, "--delay", "0.3",
                                readiness={"http": "/healthz"})
        return body
    return text


def registry(root: Path) -> dict[str, Any]:
    return json.loads((root / ".hippodrome" / "registry.json").read_text())


def bench_ready(n: int) -> tuple[float, float]:
    """(seconds from launching `invoke up --detach` until every service answers its
    /healthz, seconds the daemon itself took from its start to all-ready)."""
    with stack(n_services(n), n) as (root, ports):
        began = time.monotonic()
        proc = subprocess.Popen([PY, "-m", "invoke", "-r", str(REPO), "up", "--detach",
                                 "--project-root", str(root)], cwd=root,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        pending = set(ports[1:])
        while pending and time.monotonic() - began < 60:
            pending = {p for p in pending if not answers(p)}
            time.sleep(0.005)
        took = time.monotonic() - began
        proc.wait(60)
        daemon_log = (root / ".hippodrome" / "daemon.log").read_text()
        inside = float(daemon_log.split("services ready in ")[1].split("s")[0])
        cli(root, "down")
        return took, inside


def ready_figures(n: int, runs: int) -> dict[str, float]:
    pairs = [bench_ready(n) for _ in range(runs)]
    return {f"ready_s_n{n}": round(statistics.median(p[0] for p in pairs), 3),
            f"ready_in_daemon_s_n{n}": round(statistics.median(p[1] for p in pairs), 3)}


def bench_n40_daemon_and_teardown() -> dict[str, float]:
    out: dict[str, float] = {}
    with stack(n_services(40), 40) as (root, ports):
        assert cli(root, "up", "--detach").returncode == 0
        reg = registry(root)
        daemon = psutil.Process(reg["daemon"]["pid"])
        guard = psutil.Process(reg["daemon"]["guard_pid"])
        time.sleep(1.0)
        out["daemon_rss_mb_n40"] = round(daemon.memory_info().rss / 2**20, 1)
        out["guard_rss_mb"] = round(guard.memory_info().rss / 2**20, 1)
        cpu0 = sum(daemon.cpu_times()[:2])
        window = 10.0
        time.sleep(window)
        out["daemon_idle_cpu_pct_n40"] = round((sum(daemon.cpu_times()[:2]) - cpu0)
                                               / window * 100, 3)
        pids = [e["pid"] for e in reg["services"].values()]
        began = time.monotonic()
        urllib.request.urlopen(urllib.request.Request(
            reg["daemon"]["url"] + "/api/shutdown", method="POST"), timeout=10).read()
        wait(lambda: not any(_alive(p) for p in pids), 30)
        out["teardown_s_n40"] = round(time.monotonic() - began, 3)
    return out


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def bench_sigkill() -> dict[str, float]:
    def text(ports: list[int]) -> str:
        body = stack_header(ports[0]) + toy_service("stubborn", ports[1], "--ignore-term",
                                                    stop_timeout=1.0)
        for i, port in enumerate(ports[2:]):
            body += toy_service(f"peer{i}", port)
        return body

    with stack(text, 6) as (root, _):
        assert cli(root, "up", "--detach").returncode == 0
        reg = registry(root)
        stubborn = reg["services"]["stubborn"]["pid"]
        peers = [e["pid"] for n, e in reg["services"].items() if n != "stubborn"]
        began = time.monotonic()
        urllib.request.urlopen(urllib.request.Request(
            reg["daemon"]["url"] + "/api/stack/stop", method="POST"), timeout=30).read()
        peers_gone = wait(lambda: not any(_alive(p) for p in peers), 10)
        wait(lambda: not _alive(stubborn), 10)
        killed = time.monotonic() - began
        cli(root, "down")
        return {"sigkill_after_timeout_s": round(killed - 1.0, 3),
                "peers_gone_s": round(peers_gone, 3)}


def bench_restart_one() -> dict[str, float]:
    with stack(n_services(5), 5) as (root, ports):
        assert cli(root, "up", "--detach").returncode == 0
        url = registry(root)["daemon"]["url"]
        times = []
        for _ in range(5):
            began = time.monotonic()
            urllib.request.urlopen(urllib.request.Request(
                url + "/api/services/svc00/restart", method="POST"), timeout=30).read()
            wait(lambda: answers(ports[1]), 10)
            times.append(time.monotonic() - began)
        cli(root, "down")
        # Each toy sleeps 0.3 s before listening (the workload).
        return {"restart_one_s": round(statistics.median(times), 3)}


def bench_restart_chain_cpu() -> dict[str, float]:
    """Daemon CPU while the whole stack restarts along a dependency chain: waiting
    dependants must sleep until a transition, not spin."""
    def text(ports: list[int]) -> str:
        body, prev = stack_header(ports[0]), None
        for i, port in enumerate(ports[1:]):
            body += toy_service(f"c{i}", port, "--delay", "0.3",
                                **({"depends_on": [prev]} if prev else {}))
            prev = f"c{i}"
        return body

    with stack(text, 4) as (root, _):
        assert cli(root, "up", "--detach").returncode == 0
        reg = registry(root)
        daemon = psutil.Process(reg["daemon"]["pid"])
        cpu0 = sum(daemon.cpu_times()[:2])
        began = time.monotonic()
        urllib.request.urlopen(urllib.request.Request(
            reg["daemon"]["url"] + "/api/stack/restart", method="POST"), timeout=60).read()
        wall = time.monotonic() - began
        cpu = sum(daemon.cpu_times()[:2]) - cpu0
        cli(root, "down")
        return {"restart_chain4_s": round(wall, 3), "restart_chain4_daemon_cpu_s": round(cpu, 3)}


def bench_long_chain(n: int = 300) -> dict[str, float]:
    """`up --detach` and `down` of a chain of n `sleep` services (each depends on the one
    before): the daemon's own cost per link, with nothing to wait for. Each transition's
    registry write holds every service, so writing one per transition made the chain
    quadratic (n=300: 7.1-7.6 s up, 19.5 s down; 1200 links took 84 s to come up)."""
    def text(ports: list[int]) -> str:
        body = stack_header(ports[0])
        for i in range(1, n + 1):
            # Ready at its first line: readiness `none` waits 0.5 s a link (NONE_SETTLE_S),
            # which made this 150 s of waiting, not the daemon's cost (adv49 B/4).
            body += (f'[services.c{i}]\nshell = "echo up; exec sleep 1000"\n'
                     'readiness = { log = "up" }\n')
            if i > 1:
                body += f'depends_on = ["c{i - 1}"]\n'
        return body

    with stack(text, 0) as (root, _):
        began = time.monotonic()
        assert cli(root, "up", "--detach", timeout=600).returncode == 0
        up = time.monotonic() - began
        began = time.monotonic()
        cli(root, "down", timeout=600)
        return {f"chain_up_s_n{n}": round(up, 3),
                f"chain_down_s_n{n}": round(time.monotonic() - began, 3)}


def bench_load(n: int = 8000) -> dict[str, float]:
    """Loading and checking a stack file of n jobs in a chain, in process (what every
    `up`, `doctor` and `export` pays first). The graph check rebuilt a name->kind map per
    service: 8000 services took 7.7 s, 40,000 did not finish in 120 s."""
    from hippo_tasks.model.loader import load_stack_text

    text = "[stack]\ndefaults = false\n" + "".join(
        f'[services.j{i}]\nkind = "job"\ncommand = ["true"]\n'
        + (f'depends_on = ["j{i - 1}"]\n' if i else "") for i in range(n))
    began = time.perf_counter()
    load_stack_text(text)
    return {f"load_s_n{n}": round(time.perf_counter() - began, 3)}


def bench_logs(lines: int = 200_000) -> dict[str, float]:
    expected = lines * 100

    def producer(shell_tail: str) -> float:
        res = subprocess.run(f"{PY} {FLOOD} {lines} 100 {shell_tail}", shell=True,
                             stderr=subprocess.PIPE, text=True, timeout=60)
        return float(res.stderr.split()[2])

    # The fair baseline is the cheapest reader a pipe can have: cat into /dev/null.
    alone = statistics.median(producer("| cat > /dev/null") for _ in range(5))
    to_file = statistics.median(producer("> /dev/null") for _ in range(5))

    def text(ports: list[int]) -> str:
        return stack_header(ports[0]) + (
            f'[services.flood]\ncommand = ["{PY}", "{FLOOD}", "{lines}", "100", "stay"]\n'
            'readiness = "none"\n')

    unders, lost = [], 0
    for _ in range(3):
        with stack(text, 0) as (root, _):
            assert cli(root, "up", "--detach").returncode == 0
            log = root / ".logs" / "latest" / "flood.log"
            wait(lambda f=log: f.exists() and f.stat().st_size >= expected,  # type: ignore[misc]
                 60, 0.001)
            data = log.read_bytes()
            body = [ln for ln in data.split(b"\n") if ln[:1].isdigit()]
            ordered = all(int(ln[:10]) == i for i, ln in enumerate(body))
            lost += (lines - len(body)) if ordered else lines
            done_line = next(ln for ln in data.split(b"\n") if ln.startswith(b"flood-done"))
            unders.append(float(done_line.split()[2]))
            cli(root, "down")
    under = statistics.median(unders)
    return {
        "log_lines_per_s": round(lines / under),
        "producer_to_dev_null_s": round(to_file, 4),
        "producer_to_pipe_cat_s": round(alone, 4),
        "producer_under_daemon_s": round(under, 4),
        "producer_slowdown_pct": round((under - alone) / alone * 100, 1),
        "log_lines_lost": lost,
    }


def bench_orphans() -> dict[str, float]:
    def text(ports: list[int]) -> str:
        body = stack_header(ports[0])
        for i, port in enumerate(ports[1:]):
            body += (f"[services.sh{i}]\n"
                     f'command = ["sh", "-c", "{PY} {TOY} --port {port} --child; echo done"]\n'
                     f"port = {port}\n\n")
        return body

    with stack(text, 10) as (root, _):
        assert cli(root, "up", "--detach").returncode == 0
        reg = registry(root)
        members = [p.pid for p in psutil.process_iter()
                   if _pgid(p.pid) in {e["pgid"] for e in reg["services"].values()}]
        os.kill(reg["daemon"]["pid"], signal.SIGKILL)
        began = time.monotonic()
        with suppress(TimeoutError):
            wait(lambda: not any(_alive(p) for p in members), 2.0, 0.01)
        left = sum(_alive(p) for p in members)
        return {"orphans_after_kill9": left, "orphan_processes_checked": len(members),
                "orphans_gone_s": round(time.monotonic() - began, 3)}


def bench_restart_storm() -> dict[str, float]:
    """Twenty restarts of one service spread over 1.5 s (a double-clicked button, a
    reload during a restart): wall time until every request has its answer, and the
    service's processes beyond the one that should run (0), then after `down` (0)."""
    def text(ports: list[int]) -> str:
        return stack_header(ports[0]) + escaper_service("web", ports[1], "--drain", "0.1",
                                                        readiness={"http": "/"})

    with stack(text, 1) as (root, ports):
        assert cli(root, "up", "--detach").returncode == 0
        reg = registry(root)
        url, token = reg["daemon"]["url"], reg["daemon"]["token"]

        def hit(delay: float) -> None:
            time.sleep(delay)
            urllib.request.urlopen(urllib.request.Request(
                url + "/api/services/web/restart", method="POST"), timeout=120).read()

        began = time.monotonic()
        threads = [threading.Thread(target=hit, args=(i * 0.075,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - began
        left = len(marked_pids(f"{token}/web")) - 1
        cli(root, "down")
        after_down = len(marked_pids(token))
        return {"restart_storm_s": round(wall, 3), "restart_storm_extra_processes": left,
                "restart_storm_left_after_down": after_down}


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results.json"))
    parser.add_argument("--quick", action="store_true", help="one run of each, N=10 only")
    args = parser.parse_args()
    compile_packages()
    results: dict[str, Any] = {}
    runs = 1 if args.quick else 3
    results.update(ready_figures(10, runs))
    if not args.quick:
        results.update(ready_figures(40, runs))
        results.update(bench_n40_daemon_and_teardown())
    results.update(bench_load())
    results.update(bench_sigkill())
    results.update(bench_restart_one())
    results.update(bench_restart_chain_cpu())
    if not args.quick:
        results.update(bench_long_chain())
    results.update(bench_logs())
    results.update(bench_orphans())
    results.update(bench_restart_storm())
    report(Path(args.out), "core", results, TARGETS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
