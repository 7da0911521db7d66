"""One HTTP/1.1 exchange with the daemon over a plain socket: the CLI's whole transport.

urllib.request cost every `hd status` / `hd restart` ~30 ms of imports before the
first byte was sent (http.client pulls email.parser and ssl; measured with `python -X
importtime`, benchmarks/bench_cli.py). The daemon is always plain HTTP on a loopback
address and answers every API call with a Content-Length body, so the client needs
none of that: a request line, four headers, and the answer read by hand on the
connection the webhook and the bundled services use (hippo_contract/http_client.py).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote  # already loaded: pathlib imports it

from hippo_contract.http_client import BadAnswer, Connection, Stale, host_header, request_bytes


def split_url(url: str) -> tuple[str, int]:
    """`http://127.0.0.1:9000` -> ("127.0.0.1", 9000); `http://[::1]:9000` -> ("::1", 9000)."""
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"not an http://HOST:PORT address: {url!r}")
    return host.strip("[]"), int(port)


ANSWER_LIMIT = 1 << 30
"""Far above any answer of the daemon's (`hd logs` pages included)."""


def exchange(url: str, method: str, path: str, body: bytes | None,
             headers: dict[str, str], timeout: float,
             waiting: Callable[[], None] | None = None) -> tuple[int, bytes]:
    """(status, body) of one request. Transport failures raise OSError (refused, reset,
    TimeoutError); an answer that is not HTTP, or is cut off, raises BadAnswer.
    `waiting`: Connection.exchange's, called each second of a long wait."""
    host, port = split_url(url)
    # A name typed by the user ends up in the path: percent-encoded, a space, a newline
    # or a non-ASCII letter is a 404 naming it, never a broken or injected request line.
    path = quote(path, safe="/?=&%:+,;@!$'()*~")
    sent = {"Host": host_header(host, port, default_port=0), "Connection": "close", **headers}
    request = request_bytes(method, path, sent, body or b"")
    conn = Connection(host, port, timeout)
    try:
        # The whole answer within the timeout, and at most ANSWER_LIMIT of it: the
        # timeout bounded each read alone, and a process on the daemon's port sending a
        # byte every 0.5 s (or a body without end) held `hd status` and `hd down` for
        # ever, the latter short of its clean-up from the registry (adv27 j/4).
        answer = conn.exchange(request, waiting=waiting, within=timeout, limit=ANSWER_LIMIT)
    except Stale as exc:
        if exc.__cause__ is not None:
            raise  # reset: an OSError, as before
        raise BadAnswer("the daemon closed the connection without answering") from None
    finally:
        conn.close()
    return answer.status, answer.body
