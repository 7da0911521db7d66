"""A toy stand-in for the daemon's webhook: records what is posted, fails on demand.

`POST <any path>` appends `{"path", "token", "body", "at"}` as one JSON line to
`--record FILE` and answers like the real webhook (`{"webhook_status": "forwarded",
...}`). `--fail-first N` answers 503 to the first N posts (a target that is down, then
back), `--status N` answers N to every post, `--token T` answers 401 to posts without
`x-hippodrome-webhook-token: T`. Rejected posts are recorded too, so a test can count
attempts. `GET /healthz` answers 200.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--status", type=int, default=200)
    p.add_argument("--token", default="")
    a = p.parse_args()
    lock = threading.Lock()
    posts = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:
            return

        def _answer(self, status: int, payload: object) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(200 if self.path == "/healthz" else 404, {"status": "ok"})

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            token = self.headers.get("x-hippodrome-webhook-token")
            with lock:
                posts[0] += 1
                n = posts[0]
                with open(a.record, "a", encoding="utf-8") as fh:
                    entry = {"path": self.path, "token": token, "at": time.time(),
                             "body": json.loads(raw or b"null")}
                    fh.write(json.dumps(entry) + "\n")
            if a.token and token != a.token:
                self._answer(401, {"error": "missing or wrong x-hippodrome-webhook-token"})
            elif n <= a.fail_first:
                self._answer(503, {"error": "Service unavailable: toy is failing on purpose"})
            elif a.status != 200:
                self._answer(a.status, {"error": f"toy answers {a.status}"})
            else:
                self._answer(200, {"webhook_status": "forwarded", "target": "toy",
                                   "service_response": {"status": "success"}})

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    print(f"webhook receiver listening on {a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
