"""A real moto server for the events tests, and an AWS environment they cannot leak out of.

Test modules bind the fixtures into their namespace (`moto_endpoint =
moto_server.moto_endpoint`, same for `moto_server_url`) and ask for `moto_endpoint`:
one server per module (starting one takes about half a second), a fresh, hermetic AWS
environment per test (dummy credentials, no user config files, no instance metadata),
and distinct table prefixes per test keep tests apart on the shared server. The server
is killed by PID when the module ends, even if a test or the startup itself failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from stackutil import free_ports

# Distinctive values, so tests can assert that none of them reaches any output.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "hippo-test-secret-access-key",
    "AWS_SESSION_TOKEN": "hippo-test-session-token",
}
START_TIMEOUT_S = 30.0


def free_port() -> int:
    """One free port of this worker's share (stackutil.free_ports says why)."""
    return free_ports(1)[0]


def start_moto(
    log_path: Path, extra_env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `python -m moto.server` on a free loopback port; the caller must stop it."""
    port = free_port()
    env = {**os.environ, **DUMMY_CREDENTIALS, **(extra_env or {})}
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    log.close()
    return proc, f"http://127.0.0.1:{port}"


def wait_until_answering(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    """Poll moto's own API (not an AWS action: it never counts against IAM enforcement)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"moto server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}"
            )
        try:
            with opener.open(f"{url}/moto-api/", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"moto server did not answer within {START_TIMEOUT_S:g}s at {url}")


def stop_moto(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def running_moto(log_path: Path, extra_env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Body of a fixture: start, wait, yield the URL, always stop."""
    proc, url = start_moto(log_path, extra_env)
    try:
        wait_until_answering(proc, url, log_path)
        yield url
    finally:
        stop_moto(proc)


def isolate_aws_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No AWS setting of the person running the tests may reach boto3."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="module")
def moto_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real moto server for the whole test module."""
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    yield from running_moto(log_path)


@pytest.fixture
def moto_endpoint(moto_server_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The module's moto URL, with dummy credentials set for this test only."""
    isolate_aws_env(monkeypatch, tmp_path)
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return moto_server_url
