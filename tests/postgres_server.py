"""A private, throwaway PostgreSQL cluster for the test session.

Tests never depend on a system PostgreSQL service: this initdb's a fresh cluster into a
temporary folder, runs the `postgres` server on a free loopback port (no Unix socket
outside that folder), and stops it by PID when the session ends, even if tests failed.
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user
the Debian package creates (through subprocess's `user=`, so the PID we hold is the
server's own). Durability settings are relaxed (`fsync=off`): the tests crash the
client service, never this server, and every commit is still acknowledged by it.

Test modules use it as a plugin (`pytest_plugins = ["postgres_server"]`) so the whole
session shares one cluster; each test takes a fresh database from `postgres_db`.
If PostgreSQL cannot be started the tests that need it FAIL, naming the reason and the
packages to install: CI installs them, so a skip would only hide a broken setup.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from service_process import free_port

PASSWORD = "hippo-test-pg-password"
START_TIMEOUT_S = 30.0
INSTALL_HINT = (
    "install PostgreSQL's server binaries (Debian/Ubuntu: apt-get install -y postgresql) "
    "and psycopg 3 (pip install 'psycopg[binary]')"
)


class ClusterError(RuntimeError):
    pass


def find_bindir() -> Path:
    """Where `initdb` and `postgres` live: HIPPODROME_PG_BINDIR, PATH, or Debian's
    versioned folders (newest first)."""
    candidates = []
    if os.environ.get("HIPPODROME_PG_BINDIR"):
        candidates.append(Path(os.environ["HIPPODROME_PG_BINDIR"]))
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    found = glob.glob("/usr/lib/postgresql/*/bin")
    found.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    candidates.extend(Path(p) for p in reversed(found))
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise ClusterError("no initdb/postgres binaries found (looked on PATH and /usr/lib/postgresql)")


@dataclass
class PostgresCluster:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def url(self, dbname: str) -> str:
        return f"postgres://postgres:{PASSWORD}@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5)

    def create_database(self, name: str) -> str:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def restart(self) -> None:
        """Stop the server (fast shutdown) and start it again on the same port."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        env, run_as = _server_env(), _run_as()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # the old socket may linger a moment
            cluster = _start_server(find_bindir(), self.root, env, run_as, self.port)
            if cluster is not None:
                self.proc, self.log_path = cluster.proc, cluster.log_path
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"port {self.port} stayed busy after the restart")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by PID, SIGKILL if it lingers; then the folder goes."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _run_as() -> dict[str, Any]:
    """subprocess arguments that drop root to the `postgres` user; nothing otherwise."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError(
            "running as root and there is no 'postgres' user to run the server as"
        ) from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _server_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}


def start_cluster() -> PostgresCluster:
    bindir = find_bindir()
    try:
        import psycopg  # noqa: F401  (checked now: the tests cannot talk to it without)
    except ImportError:
        raise ClusterError("psycopg is not installed") from None
    run_as = _run_as()
    root = Path(tempfile.mkdtemp(prefix="hippo-pg-"))
    try:
        if run_as:
            os.chown(root, run_as["user"], run_as["group"])
        pwfile = root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if run_as:
            os.chown(pwfile, run_as["user"], run_as["group"])
        env = _server_env()
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(root / "data"), "-U", "postgres",
             "--pwfile", str(pwfile), "--auth-host=scram-sha-256", "--auth-local=trust",
             "--no-sync", "--locale=C", "-E", "UTF8"],
            cwd=root, env=env, capture_output=True, timeout=120, **run_as,
        )  # fmt: skip
        if init.returncode != 0:
            output = (init.stdout + init.stderr).decode(errors="replace")[-2000:]
            raise ClusterError(f"initdb exited {init.returncode}:\n{output}")
        for _attempt in range(3):
            cluster = _start_server(bindir, root, env, run_as, free_port())
            if cluster is not None:
                return cluster
        raise ClusterError("no free port for the server after 3 attempts")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _start_server(
    bindir: Path, root: Path, env: dict[str, str], run_as: dict[str, Any], port: int
) -> PostgresCluster | None:
    """A ready server, or None when the port was taken meanwhile (try another)."""
    log_path = root / f"server-{port}.log"
    with open(log_path, "ab") as log:
        if run_as:
            os.chown(log_path, run_as["user"], run_as["group"])
        proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
             "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"],
            cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            **run_as,
        )  # fmt: skip
    cluster = PostgresCluster(root, port, proc, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    import psycopg

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if "already in use" in cluster.log():
                return None
            raise ClusterError(f"postgres exited {proc.returncode}:\n{cluster.log()}")
        try:
            cluster.connect().close()
            return cluster
        except psycopg.OperationalError:
            time.sleep(0.05)
    cluster.proc.kill()
    cluster.proc.wait(timeout=10)
    raise ClusterError(f"postgres not accepting connections in {START_TIMEOUT_S:g}s")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One private cluster for the session; stopped in the finalizer."""
    try:
        cluster = start_cluster()
    except (ClusterError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"PostgreSQL could not be started: {exc}\nTo fix: {INSTALL_HINT}.", False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_db(postgres_cluster: PostgresCluster) -> str:
    """The URL of a database name no other test uses, not yet created (ecom_ingest
    creates the database it is pointed at when the server lacks it)."""
    return postgres_cluster.url("ingest_" + uuid.uuid4().hex[:12])
