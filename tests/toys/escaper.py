"""A toy service that tries every way out of its supervisor's reach.

- `--setsid`: a child that calls setsid() (a new session and group) and sleeps;
- `--double-fork`: a daemon the classic way (fork, setsid, fork, first child exits);
- `--drain S`: on SIGTERM keep serving for S seconds, then exit (a graceful server);
- `--ready-after S` / `--ready-line L`: print L only after S seconds (log readiness);
- `--partial T`: write T with no newline first;
- `--leave-cgroup`: a child that moves itself to the cgroup v2 root (as container
  runtimes and `systemd-run --scope` do) and sleeps; where it may not, it stays put;
  with `--clear-env` it also calls setsid() and execs a sleeper with an empty
  environment (no mark left), and with `--orphan` as well its parent exits first;
  `--into-run-cgroup`: the same, into the parent of its service's cgroup (the run's
  own) instead of the root; `--remark NAME` instead of `--clear-env`: setsid() and an
  exec with its mark turned to the run's mark for a service NAME the stack lacks;
- `--hop`: a child that ignores SIGTERM and re-forks itself every 20 ms (`--hop-every`) into a new
  process group (out of its cgroup too, where it may), its parent exiting each time,
  keeping its mark; it ends by itself after a minute, or when `--pids FILE.stop` exists.
Every process it makes appends `<role> <pid>` to `--pids FILE`, so a test can check
each one is gone.
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import sys
import threading
import time


def note(path: str | None, role: str) -> None:
    if path:
        with open(path, "a") as fh:
            fh.write(f"{role} {os.getpid()} {time.time()}\n")


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def leave_cgroup() -> bool:
    """Move this process to the root of the cgroup v2 hierarchy, out of its service's."""
    try:
        with open("/proc/self/mounts") as fh:
            root = next(line.split()[1] for line in fh if line.split()[2] == "cgroup2")
        with open(os.path.join(root, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    except (OSError, StopIteration):
        return False
    return True


def enter_parent_cgroup() -> bool:
    """Move this process to the parent of its own cgroup (a service's: the run's)."""
    try:
        with open("/proc/self/mounts") as fh:
            root = next(line.split()[1] for line in fh if line.split()[2] == "cgroup2")
        with open("/proc/self/cgroup") as fh:
            own = next(line.strip().split(":", 2)[2] for line in fh if line.startswith("0::"))
        parent = os.path.dirname(os.path.join(root, own.lstrip("/")))
        with open(os.path.join(parent, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    except (OSError, StopIteration):
        return False
    return True


def hop(pids: str | None, every: float = 0.02) -> None:
    """Re-fork every `every` s into a new group, the parent exiting: never the same pid."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    leave_cgroup()
    for _ in range(3000):
        if pids and os.path.exists(pids + ".stop"):
            os._exit(0)
        note(pids, "hop")
        time.sleep(every)
        if os.fork() == 0:
            os.setpgid(0, 0)
            continue
        os._exit(0)
    os._exit(0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--pids", default=None)
    p.add_argument("--setsid", action="store_true")
    p.add_argument("--double-fork", action="store_true")
    p.add_argument("--drain", type=float, default=0.0)
    p.add_argument("--ready-after", type=float, default=0.0)
    p.add_argument("--ready-line", default="READY")
    p.add_argument("--partial", default=None)
    p.add_argument("--leave-cgroup", action="store_true")
    p.add_argument("--clear-env", action="store_true")
    p.add_argument("--orphan", action="store_true")
    p.add_argument("--into-run-cgroup", action="store_true")
    p.add_argument("--remark", default=None)
    p.add_argument("--hop", action="store_true")
    p.add_argument("--hop-every", type=float, default=0.02)
    a = p.parse_args()
    note(a.pids, "main")
    if a.partial:
        sys.stdout.write(a.partial)
        sys.stdout.flush()
    if a.setsid and os.fork() == 0:
        os.setsid()
        note(a.pids, "setsid")
        sleep_forever()
    if a.double_fork and os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            note(a.pids, "daemon")
            sleep_forever()
        os._exit(0)

    if a.hop and os.fork() == 0:
        hop(a.pids, a.hop_every)
    if a.leave_cgroup and os.fork() == 0:
        left = enter_parent_cgroup() if a.into_run_cgroup else leave_cgroup()
        if a.clear_env or a.remark:
            os.setsid()
            if a.orphan and os.fork() != 0:
                os._exit(0)
        note(a.pids, "left" if left else "stayed")
        if a.clear_env or a.remark:
            env = {} if a.clear_env else {
                **os.environ, "HIPPODROME_RUN":
                    os.environ["HIPPODROME_RUN"].split("/")[0] + "/" + a.remark}
            os.execve(sys.executable, [sys.executable, "-c",
                                       "import time\nwhile True: time.sleep(3600)"], env)
        sleep_forever()

    draining = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        if a.drain <= 0:
            os._exit(0)
        draining.set()
        threading.Timer(a.drain, lambda: os._exit(0)).start()

    signal.signal(signal.SIGTERM, on_term)
    if a.ready_after:
        time.sleep(a.ready_after)
    note(a.pids, "ready")
    print(a.ready_line, flush=True)
    if not a.port:
        sleep_forever()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = f'{{"pid": {os.getpid()}}}'.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
