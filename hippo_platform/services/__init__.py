"""The bundled services, each run as `python -m hippo_platform.services.NAME`.

A service process keeps OpenSSL out unless it may need TLS. `ssl` (for an https://
peer) and hashlib's `_hashlib` each load OpenSSL: ~4 MB of resident memory per service
(the console measured 23.2 MB RSS with it, 18.5 MB without; the ecom profile runs 13
services). On the local cell every URL a service is given is http://127.0.0.1, and
every URL comes from its environment. So unless an https:// URL is there (a staging or
prod cell, real AWS), HIPPODROME_SERVICE_TLS=1 is set, or the service is moto
(botocore needs ssl), `ssl` and `_hashlib` are marked absent before anything imports
them, and a client asked for https anyway says why (`tls_context`); hashlib and hmac
use Python's own sha256, sha1 and md5 (what the services use; only pbkdf2_hmac and
scrypt would be missing).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

TLS_ENV = "HIPPODROME_SERVICE_TLS"
NEEDS_TLS = frozenset({"hippo_platform.services.moto_quiet"})


def _started_as() -> str:
    """The module after `-m` on this interpreter's command line, or ''."""
    argv = getattr(sys, "orig_argv", [])
    return argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""


def _tls_unneeded() -> bool:
    module = _started_as()
    return (module.startswith(__name__ + ".") and module not in NEEDS_TLS
            and "ssl" not in sys.modules and os.environ.get(TLS_ENV, "") != "1"
            and not any("https://" in value for value in os.environ.values()))


if _tls_unneeded():
    sys.modules["ssl"] = None  # type: ignore[assignment]
    if "_hashlib" not in sys.modules and "hashlib" not in sys.modules:
        sys.modules["_hashlib"] = None  # type: ignore[assignment]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The `ssl.SSLContext` a client of an https:// peer connects with (the system's CAs,
    hostname checked), or an error that says how to get one. One per process, shared by
    every client: making one reads the whole CA store, and a context is safe to share
    between threads."""
    try:
        import ssl
    except ImportError:
        raise RuntimeError(f"an https:// URL, but this service started without TLS (no "
                           f"https:// URL was in its environment); set {TLS_ENV}=1 for it"
                           ) from None
    return ssl.create_default_context()
