"""Bundled services keep OpenSSL out unless they may need TLS (hippo_platform.services):
a real service on loopback without an https:// URL maps no libssl; given one (a cell
over https) or HIPPODROME_SERVICE_TLS=1 it does, and serves either way; moto keeps it;
a client asked for https in a service started without TLS says what to set, and the
signing and digests the services use still work on Python's own hashes."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from stackutil import PY, REPO, free_ports, wait_for


@contextmanager
def console(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], int]]:
    (port,) = free_ports(1)
    base = {k: v for k, v in os.environ.items() if "https://" not in v}
    base.pop("HIPPODROME_SERVICE_TLS", None)
    proc = subprocess.Popen([PY, "-m", "hippo_platform.services.console", "--port", str(port),
                             "--host", "127.0.0.1"], cwd=REPO, env={**base, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(10)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def maps_ssl(pid: int) -> bool:
    """OpenSSL mapped, through ssl (libssl) or hashlib (libcrypto)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "libssl" in maps or "libcrypto" in maps


@pytest.mark.parametrize("env, tls", [
    ({}, False),
    ({"CONTROLLER_URL": "https://127.0.0.1:9"}, True),
    ({"HIPPODROME_SERVICE_TLS": "1"}, True),
], ids=["local cell", "https cell", "asked for"])
def test_openssl_only_where_tls_may_be_needed(env: dict[str, str], tls: bool) -> None:
    with console(env) as (proc, port):
        wait_for(lambda: healthy(port) or proc.poll() is not None, 30)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert maps_ssl(proc.pid) is tls


CHECK = """
import sys
sys.orig_argv = [sys.executable, "-m", sys.argv[1]]
import hippo_platform.services
blocked = [m for m in ("ssl", "_hashlib") if sys.modules.get(m, 1) is None]
print("ssl blocked" if blocked == ["ssl", "_hashlib"] else "ssl allowed" if not blocked
      else blocked)
"""


@pytest.mark.parametrize("module, says", [
    ("hippo_platform.services.moto_quiet", "ssl allowed"),
    ("hippo_platform.seed", "ssl allowed"),
    ("hippo_platform.services.search_proxy", "ssl blocked"),
])
def test_who_keeps_openssl(module: str, says: str) -> None:
    env = {k: v for k, v in os.environ.items() if "https://" not in v}
    env.pop("HIPPODROME_SERVICE_TLS", None)
    out = subprocess.run([PY, "-c", CHECK, module], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == says


def test_https_without_tls_says_what_to_set() -> None:
    code = ("import sys; sys.modules['ssl'] = None\n"
            "from hippo_platform.services.common.client import JsonClient\n"
            "JsonClient('https://cell.example:443', peer='cell')\n")
    out = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "started without TLS" in out.stderr and "HIPPODROME_SERVICE_TLS=1" in out.stderr


def test_digests_without_openssl() -> None:
    """What the services use of hashlib, hmac, secrets and uuid, with _hashlib absent:
    the same answers as with OpenSSL (this process has it)."""
    import hashlib
    import hmac

    code = ("import sys; sys.modules['ssl'] = None; sys.modules['_hashlib'] = None\n"
            "import hashlib, hmac, secrets, uuid\n"
            "print(hashlib.sha256(b'x').hexdigest(), hashlib.sha1(b'x').hexdigest(),\n"
            "      hmac.new(b'k', b'm', hashlib.sha256).hexdigest(),\n"
            "      hmac.compare_digest('a', 'a'), len(secrets.token_hex(8)),\n"
            "      uuid.uuid4().version, 'libcrypto' in open('/proc/self/maps').read())\n")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True).stdout.split()
    assert out == [hashlib.sha256(b"x").hexdigest(), hashlib.sha1(b"x").hexdigest(),
                   hmac.new(b"k", b"m", hashlib.sha256).hexdigest(), "True", "16", "4",
                   "False"]
