"""The daemon: the process that supervises a stack and serves its HTTP API."""

import sys

SHUTDOWN_WORDS = "hippodrome | shutting down ("
"""The line a daemon writes to daemon.log as its shutdown begins (engine.py), by which
a client tells a graceful end from a crash (client.py)."""


def keep_openssl_out() -> None:
    """Mark `ssl` and `_hashlib` absent in a daemon that needs no TLS (no --tls).

    The daemon talks plain HTTP on loopback; OpenSSL's libcrypto cost it ~3.4 MB of
    resident memory (_hashlib, under hmac and hashlib, which the webhook's token check
    and the page's script hashes import) and ~15 ms of its start before the first
    service is spawned. Without `_hashlib`, hashlib and hmac use Python's own sha256
    and compare_digest, which is all the daemon asks of them. Only before either is
    imported: a forked daemon may inherit them from `hd`, and then keeps them.
    """
    if "ssl" not in sys.modules:
        sys.modules["ssl"] = None  # type: ignore[assignment]
    if "_hashlib" not in sys.modules and "hashlib" not in sys.modules \
            and "hmac" not in sys.modules:
        sys.modules["_hashlib"] = None  # type: ignore[assignment]
