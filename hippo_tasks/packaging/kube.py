"""The exported manifests run by a real engine: `podman kube play`, then the image's
own smoke test (dashboard, fake_cell, the controller through fake_cell, from outside),
then `podman kube down`.

    python -m hippo_tasks.packaging.kube [--profile ecom] [--image REF] [--layout stack]

It exports this checkout's stack exactly as `hd export k8s --layout stack` does, at a
free port offset, and plays a copy in which each container port is also published on
127.0.0.1 (hostPort: the one change, since podman has no Service to reach a pod
through). The seed job's output must be on the state volume afterwards. Run after
`nox -s docker` built the image (build/ci-docker.sh does).

`--layout services` is not played: podman (4.3 here) has no Job kind, no API server
for the init containers' Job waits, and no DNS for Service names between pods; see
README, "Kubernetes", for what that leaves untested.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hippo_tasks.export.objects import Obj
from hippo_tasks.export.pipeline import Request, build
from hippo_tasks.export.stack_layout import STATE_CLAIM
from hippo_tasks.export.yamlout import dump_all
from hippo_tasks.packaging.docker import (
    IMAGE_TAG,
    READY_TIMEOUT,
    Engine,
    SmokeError,
    all_ready,
    check_routes,
    find_engine,
    free_offset,
    get_json,
)
from hippo_tasks.packaging.pexbuild import repo_root, write_results
from hippo_tasks.tasks.context import build_options


def published(objects: Sequence[Obj]) -> list[Obj]:
    """A copy where every container port is also a hostPort on 127.0.0.1."""
    out: list[Obj] = json.loads(json.dumps(list(objects)))
    for obj in out:
        if obj["kind"] != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            for port in container.get("ports", []):
                port["hostPort"] = port["containerPort"]
                port["hostIP"] = "127.0.0.1"
    return out


def wait_ready(engine: Engine, base: int, pod: str, say: Any) -> dict[str, Any]:
    started = time.monotonic()
    doc: dict[str, Any] = {}
    while time.monotonic() - started < READY_TIMEOUT:
        try:
            status, body = get_json(f"http://127.0.0.1:{base}/api/status")
            if status == 200 and isinstance(body, dict):
                doc = body
                seed_done = all(s["state"] == "stopped" for s in doc["services"]
                                if s["name"] == "seed")
                if all_ready(doc) and seed_done:
                    return doc
        except OSError:
            pass
        state = engine.run("pod", "inspect", "--format", "{{.State}}", pod,
                           check=False).stdout.strip()
        if state not in ("Running", "Degraded"):
            raise SmokeError(f"pod {pod} is {state or 'gone'} before the stack was ready")
        time.sleep(0.5)
    bad = [s["name"] + ":" + s["state"] for s in doc.get("services", [])
           if s["blocking"] and not s["external"] and s["state"] != "running"]
    raise SmokeError(f"not ready within {READY_TIMEOUT:.0f} s ({', '.join(bad)})")


def smoke(engine: Engine, image: str, profile: str, say: Any) -> dict[str, Any]:
    root = repo_root()
    offset = free_offset()
    opts = build_options(root=root, profile=profile, cell="local", table_prefix="",
                         only=None, offset=offset)
    made = build(Request(opts, "stack", "", image), lambda line: say(f"kube: {line}"))
    base = made.image_plan.plan.dashboard_port
    pod = "hippodrome-pod-0"
    result: dict[str, Any] = {"profile": profile, "layout": "stack"}
    with tempfile.TemporaryDirectory(prefix="hd-kube-") as tmp:
        played = Path(tmp) / "stack.yaml"
        played.write_text(dump_all(published(made.objects)))
        engine.run("kube", "down", str(played), check=False)
        engine.run("volume", "rm", "-f", STATE_CLAIM, check=False)
        started = time.monotonic()
        engine.run("kube", "play", str(played), timeout=300)
        try:
            doc = wait_ready(engine, base, pod, say)
            result["ready_seconds"] = round(time.monotonic() - started, 1)
            say(f"kube: {len(doc['services'])} services, all blocking ones ready and the "
                f"seed job done {result['ready_seconds']} s after `kube play`")
            outside = {s["name"]: int(s["port"] or 0) for s in doc["services"]}
            checks = check_routes(base, outside, say, tag="kube")
            result["routes"] = checks
            if "seed" in made.image_plan.plan.names:
                seed = engine.run("exec", f"{pod}-hippodrome", "cat",
                                  "/srv/hippodrome/.hippodrome/seed.json", check=False)
                result["seed_on_volume"] = seed.returncode == 0 and '"account"' in seed.stdout
                say(f"kube: seed.json on the state volume: {result['seed_on_volume']}")
        finally:
            down = time.monotonic()
            engine.run("kube", "down", str(played), check=False, timeout=120)
            engine.run("volume", "rm", "-f", STATE_CLAIM, check=False)
            result["down_seconds"] = round(time.monotonic() - down, 1)
    failed = {k: v for k, v in checks.items() if v != 200}
    if failed:
        raise SmokeError(f"routes failed from outside the pod: {failed}")
    if result.get("seed_on_volume") is False:
        raise SmokeError("the seed job's .hippodrome/seed.json is not on the state volume")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hippo_tasks.packaging.kube")
    parser.add_argument("--profile", default="ecom")
    parser.add_argument("--image", default=IMAGE_TAG)
    parser.add_argument("--no-results", action="store_true")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        engine = find_engine(repo_root())
        if engine.name != "podman":
            raise SmokeError(f"`kube play` needs podman; the engine here is {engine.name}")
        if not engine.image_exists(args.image):
            raise SmokeError(f"no image {args.image}: run `nox -s docker` first")
        figures = smoke(engine, args.image, args.profile, say)
    except (SmokeError, subprocess.TimeoutExpired) as err:
        print(f"kube: {err}", file=sys.stderr)
        return 1
    if not args.no_results:
        write_results(repo_root(), f"kube_{args.profile}", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
