"""Runs in an init container: wait until every dependency of a pod is ready.

    services.pex -m hippo_tasks.export.wait http://controller:9002/healthz \\
        tcp://moto:9003 job/aws-provision

`http://...` is ready on a 2xx or 3xx answer, `tcp://host:port` once it accepts a
connection, `job/NAME` once the Kubernetes Job NAME has succeeded (asked of the API
server with the pod's service account, which the export grants `get` on Jobs). As
Hippodrome's own readiness: a dependency is waited for, never assumed. It waits as
long as it takes (Kubernetes shows the pod as Init until then) unless --timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

ACCOUNT = Path(os.environ.get("HIPPODROME_K8S_ACCOUNT_DIR",
                              "/var/run/secrets/kubernetes.io/serviceaccount"))


def http_ready(url: str) -> str | None:
    """None when ready, else why not (for the progress line)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return None if resp.status < 400 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except (OSError, ValueError) as err:
        return str(getattr(err, "reason", err))


def tcp_ready(target: str) -> str | None:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return None
    except (OSError, ValueError) as err:
        return str(err)


def api_base() -> str:
    override = os.environ.get("HIPPODROME_K8S_API")
    if override:
        return override.rstrip("/")
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://{host}:{port}"


def job_ready(name: str) -> str | None:
    try:
        token = (ACCOUNT / "token").read_text().strip()
        namespace = (ACCOUNT / "namespace").read_text().strip()
    except OSError as err:
        return f"no service account token to ask the API server ({err})"
    ca = ACCOUNT / "ca.crt"
    context = ssl.create_default_context(cafile=str(ca)) if ca.is_file() else None
    url = f"{api_base()}/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            status = json.load(resp).get("status") or {}
    except urllib.error.HTTPError as err:
        return f"API server answered {err.code} for job {name}"
    except (OSError, ValueError) as err:
        return f"API server: {getattr(err, 'reason', err)}"
    if status.get("succeeded"):
        return None
    if status.get("failed"):
        return f"job {name} failed (kubectl logs job/{name})"
    return f"job {name} has not finished"


def check(target: str) -> str | None:
    if target.startswith(("http://", "https://")):
        return http_ready(target)
    if target.startswith("tcp://"):
        return tcp_ready(target[len("tcp://"):])
    if target.startswith("job/"):
        return job_ready(target[len("job/"):])
    raise ValueError(f"not a dependency to wait for: {target!r} (http://..., tcp://host:port "
                     "or job/NAME)")


def wait_all(targets: Sequence[str], timeout: float, say: Callable[[str], None],
             interval: float = 1.0, report_every: float = 10.0) -> bool:
    """True once every target is ready; False if `timeout` (> 0) passed first."""
    for target in targets:
        check_shape(target)
    pending = list(targets)
    started = last_report = time.monotonic()
    while True:
        reasons = {t: check(t) for t in pending}
        pending = [t for t, why in reasons.items() if why is not None]
        now = time.monotonic()
        if not pending:
            say(f"ready: {', '.join(targets)} ({now - started:.1f} s)")
            return True
        if timeout and now - started >= timeout:
            say("gave up waiting for " + "; ".join(f"{t}: {reasons[t]}" for t in pending))
            return False
        if now - last_report >= report_every:
            last_report = now
            say("waiting for " + "; ".join(f"{t}: {reasons[t]}" for t in pending))
        time.sleep(interval)


def check_shape(target: str) -> None:
    if not target.startswith(("http://", "https://", "tcp://", "job/")):
        check(target)  # raises the ValueError naming the forms


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hippo_tasks.export.wait")
    parser.add_argument("targets", nargs="+")
    parser.add_argument("--timeout", type=float, default=0.0,
                        help="seconds before giving up (default: wait as long as it takes)")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(f"hippodrome wait | {line}", flush=True)

    try:
        return 0 if wait_all(args.targets, args.timeout, say) else 1
    except ValueError as err:
        print(f"hippodrome wait: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
