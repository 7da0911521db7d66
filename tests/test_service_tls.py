"""Bundled services keep OpenSSL out unless they may need TLS (hippo_platform.services):
a real service on loopback without an https:// URL maps no libssl; given one (a cell
over https) it does, and serves either way; HIPPODROME_SERVICE_TLS=1 lets it load
OpenSSL, which it then does only for an https:// peer; moto keeps it; a client asked
for https in a service started without TLS says what to set; a client given https
talks TLS for real (a loopback server with its own certificate); and the signing and
digests the services use still work on Python's own hashes."""

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
    ({"HIPPODROME_SERVICE_TLS": "1"}, False),  # allowed (below), loaded for an https peer
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


@pytest.mark.parametrize("module, says, asked", [
    ("hippo_platform.services.moto_quiet", "ssl allowed", False),
    ("hippo_platform.seed", "ssl allowed", False),
    ("hippo_platform.services.search_proxy", "ssl blocked", False),
    ("hippo_platform.services.search_proxy", "ssl allowed", True),
])
def test_who_keeps_openssl(module: str, says: str, asked: bool) -> None:
    env = {k: v for k, v in os.environ.items() if "https://" not in v}
    env.pop("HIPPODROME_SERVICE_TLS", None)
    if asked:
        env["HIPPODROME_SERVICE_TLS"] = "1"
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


TLS_EXCHANGE = """
import json, sys
from hippo_platform.services.common.client import JsonClient
client = JsonClient(sys.argv[1], peer="cell", timeout=10)
first = client.request("GET", "/api/thing")
second = client.request("POST", "/api/thing", body={"n": 1})
print(json.dumps([first.status, first.body, second.status, second.body]))
"""


def test_a_client_given_https_talks_tls_and_checks_the_certificate(tmp_path: Path) -> None:
    """The services' connection (hippo_contract/http_client.py) over TLS, for real: a
    loopback server with a certificate this test made; trusted (SSL_CERT_FILE), two
    requests on one kept-alive connection; untrusted, a 502 that names the peer."""
    import datetime
    import json
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    connections: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            connections.append(1)

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = json.loads(self.rfile.read(length)) if length else None
            body = json.dumps({"method": self.command, "sent": sent}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"https://localhost:{server.server_address[1]}"
    try:
        env = {**os.environ, "SSL_CERT_FILE": str(cert_file)}
        out = subprocess.run([PY, "-c", TLS_EXCHANGE, url], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == [200, {"method": "GET", "sent": None},
                                          200, {"method": "POST", "sent": {"n": 1}}]
        assert len(connections) == 1  # kept alive across both requests
        env.pop("SSL_CERT_FILE")
        out = subprocess.run([PY, "-c", TLS_EXCHANGE, url], cwd=REPO,
                             env={**env, "SSL_CERT_DIR": str(tmp_path / "none")},
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0
        assert "cell unreachable at " + url in out.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in out.stderr
    finally:
        server.shutdown()
        server.server_close()
