"""A toy event consumer: the stand-in for an exporter behind the daemon's webhook.

`POST /events` answers `{"status": "success", "result": {"received": <detail-type>}}`,
the shape the real exporters answer, so tests can check that the webhook passes the
service's JSON on unchanged. Flags make it misbehave the ways a real target can:
slow (`--slow S`), answering text (`--non-json`), answering an error (`--status N`).
`--framing` answers the same JSON in the other ways HTTP allows (chunked, up to the
close) or breaks it (garbage, over 1 MiB, cut short), for the webhook's HTTP client.
`--record FILE` appends each body as one JSON line, so a test can prove what arrived;
`--result-file FILE`, while FILE exists, answers its JSON as the `result` instead (a
test changes the answer of a running sink by writing it).

Keep-alive and TCP_NODELAY as in the real services: the webhook's benchmark compares
posting here directly with posting through the daemon, and both paths must be fair.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", default=None, help="append each received body here")
    p.add_argument("--slow", type=float, default=0.0, help="wait this long before answering")
    p.add_argument("--non-json", action="store_true", help="answer plain text")
    p.add_argument("--status", type=int, default=200, help="answer with this status")
    p.add_argument("--result-file", default=None, help="answer this file's JSON as result")
    p.add_argument("--answer-file", default=None,
                   help="answer this file's bytes as they are, as application/json")
    p.add_argument("--framing", default="length",
                   choices=["length", "chunked", "close", "garbage", "huge", "cut",
                            "trickle", "overlong"])
    a = p.parse_args()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, fmt: str, *args: object) -> None:
            return  # one line per request would dominate the webhook benchmark

        def _answer(self, status: int, body: bytes, ctype: str) -> None:
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "X"
            head = f"HTTP/1.1 {status} {phrase}\r\nContent-Type: {ctype}\r\n"
            framing = a.framing if self.command == "POST" else "length"
            if framing == "chunked":
                half = len(body) // 2
                out = (f"{half:x};ext=1\r\n".encode() + body[:half] + b"\r\n"
                       + f"{len(body) - half:X}\r\n".encode() + body[half:] + b"\r\n"
                       + b"0\r\nX-Trailer: yes\r\n\r\n")
                self.wfile.write((head + "Transfer-Encoding: chunked\r\n\r\n").encode() + out)
                return
            if framing == "trickle":  # never silent for a second, never done
                self.close_connection = True
                self.wfile.write((head + "Content-Length: 1000\r\n\r\n").encode())
                with contextlib.suppress(OSError):
                    for _ in range(1000):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.3)
                return
            if framing in ("close", "garbage", "cut"):
                self.close_connection = True
            if framing == "close":
                self.wfile.write((head + "Connection: close\r\n\r\n").encode() + body)
            elif framing == "garbage":
                self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
            elif framing == "cut":
                self.wfile.write((head + "Content-Length: 100\r\n\r\n").encode() + body[:10])
            elif framing == "overlong":  # more bytes than its Content-Length says
                self.wfile.write((head + f"Content-Length: {len(body)}\r\n\r\n").encode()
                                 + body + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            else:
                if framing == "huge":
                    body = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
                self.wfile.write((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/healthz":
                self._answer(200, b'{"status": "ok"}', "application/json")
            else:
                self._answer(404, b'{"error": "not found"}', "application/json")

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/events":
                self._answer(404, b'{"error": "not found"}', "application/json")
                return
            try:
                event = json.loads(raw)
            except ValueError:
                event = {"unparsed": raw.decode("utf-8", "replace")}
            if a.record:
                with lock, open(a.record, "a") as fh:
                    fh.write(json.dumps(event) + "\n")
            if isinstance(event, dict) and event.get("exit") is True:
                os._exit(3)  # a crash while handling it (recorded, unanswered)
            if isinstance(event, dict) and event.get("reset") is True:
                # read, acted on (recorded), then reset unanswered, as a handler that
                # aborts does, or one that closes with bytes unread
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            if a.slow:
                time.sleep(a.slow)
            detail_type = event.get("detail-type") if isinstance(event, dict) else None
            if a.non_json:
                self._answer(a.status, f"received {detail_type}".encode(), "text/plain")
                return
            if a.answer_file:
                with open(a.answer_file, "rb") as fh:
                    self._answer(a.status, fh.read(), "application/json")
                return
            result = {"received": detail_type}
            if a.result_file:
                try:
                    with open(a.result_file) as fh:
                        result = json.load(fh)
                except FileNotFoundError:
                    pass
            body = json.dumps({"status": "success", "result": result})
            self._answer(a.status, body.encode(), "application/json")

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    print(f"event sink listening on {a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
