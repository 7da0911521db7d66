"""A configurable toy service for the orchestrator's tests.

One script, many behaviours, chosen by flags: listen late, answer /healthz, hang while
holding the port, ignore SIGTERM, exit with a code, print lines, leave marker files.
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import sys
import threading
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--delay", type=float, default=0.0, help="sleep before listening")
    p.add_argument("--exit", type=int, default=None, help="exit with this code after --delay")
    p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--hang-after", type=float, default=None,
                   help="stop answering HTTP after this many seconds (port stays open)")
    p.add_argument("--hang-if-exists", default=None,
                   help="stop answering HTTP while this file exists")
    p.add_argument("--say", default=None, help="print this line once started")
    p.add_argument("--lines", type=int, default=0, help="print this many lines at start")
    p.add_argument("--marker", default=None, help="append 'start <pid> <time>' here")
    p.add_argument("--child", action="store_true", help="also spawn a sleeping grandchild")
    a = p.parse_args()
    if a.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if a.marker:
        with open(a.marker, "a") as fh:
            fh.write(f"start {os.getpid()} {time.time()}\n")
    if a.child:
        import subprocess
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    for i in range(a.lines):
        print(f"line {i}")
    if a.delay:
        time.sleep(a.delay)
    if a.exit is not None:
        print(f"exiting with {a.exit}", flush=True)
        sys.exit(a.exit)
    if a.say:
        print(a.say, flush=True)
    if not a.port:
        while True:
            time.sleep(3600)
    started = time.monotonic()
    hang = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hung = (a.hang_after is not None and time.monotonic() - started > a.hang_after) or (
                a.hang_if_exists is not None and os.path.exists(a.hang_if_exists))
            if hung:
                hang.wait(3600)
                return
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:
            print("request", self.path, flush=True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    print(f"listening on {a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
