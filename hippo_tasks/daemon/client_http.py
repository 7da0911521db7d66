"""One HTTP/1.1 exchange with the daemon over a plain socket: the CLI's whole transport.

urllib.request cost every `hd status` / `hd restart` ~30 ms of imports before the
first byte was sent (http.client pulls email.parser and ssl; measured with `python -X
importtime`, benchmarks/bench_cli.py). The daemon is always plain HTTP on a loopback
address and answers every API call with a Content-Length body, so the client needs
none of that: a request line, four headers, and the answer read by hand
(daemon/http_answer.py, which the webhook's forwarding reads its targets' answers with).
"""

from __future__ import annotations

import socket
from urllib.parse import quote  # already loaded: pathlib imports it

from hippo_tasks.daemon.http_answer import BadAnswer, read_answer, read_line


def split_url(url: str) -> tuple[str, int]:
    """`http://127.0.0.1:9000` -> ("127.0.0.1", 9000); `http://[::1]:9000` -> ("::1", 9000)."""
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"not an http://HOST:PORT address: {url!r}")
    return host.strip("[]"), int(port)


def exchange(url: str, method: str, path: str, body: bytes | None,
             headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """(status, body) of one request. Transport failures raise OSError (refused, reset,
    TimeoutError); an answer that is not HTTP, or is cut off, raises BadAnswer."""
    host, port = split_url(url)
    # A name typed by the user ends up in the path: percent-encoded, a space, a newline
    # or a non-ASCII letter is a 404 naming it, never a broken or injected request line.
    path = quote(path, safe="/?=&%:+,;@!$'()*~")
    head = [f"{method} {path} HTTP/1.1", f"Host: {_host_header(host, port)}",
            "Connection: close", f"Content-Length: {len(body or b'')}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
    with socket.create_connection((host, port), timeout=timeout) as sock, \
            sock.makefile("rb") as rfile:
        sock.sendall(request)
        line = read_line(rfile)
        if not line:
            raise BadAnswer("the daemon closed the connection without answering")
        # No size limit: `hd logs` may ask for a large page, and it is our own daemon.
        answer = read_answer(rfile, line, None)
        return answer.status, answer.body


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
