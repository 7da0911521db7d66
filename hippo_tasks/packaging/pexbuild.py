"""Build `dist/pex/hd.pex` and `dist/pex/services.pex` from the lock in `build/`.

One dependency set, two files: `services.pex` has no entry point, so it behaves like a
CPython interpreter (3.11 by default; 3.12 or 3.13 with `--python-version`, or
`nox -s pex --force-python 3.13`) with the bundled platform (hippo_platform) and every
service dependency importable (`services.pex -m moto.server ...`), which is what `${python}`
renders to in Docker mode; `hd.pex` is the same set with the `hd` entry point, so that
file alone can also run every profile on a host without Docker (`${python}` is then its
own venv's python).

Choices, measured (docs/packaging.md has the figures):

- The lock is `build/requirements.txt`: every pin with its sha256 hashes, compiled by
  `uv pip compile` (about 1 s, against 17-40 s for `pex3 lock create`), and holding no
  download addresses. pex builds from it with pip's hash checking and no resolution.
- `--venv --sh-boot`: a zipapp PEX activates ~60 distributions on every start (about
  2.5 s here, for each service); a venv PEX re-execs into a cached venv, and with
  `--sh-boot` a /bin/sh preamble does that without starting Python twice (~0.05 s).
- `--non-hermetic-venv-scripts`: hermetic venv scripts pass `-I` to Python, which would
  ignore the `PYTHONUNBUFFERED=1` the orchestrator gives every service (logs would
  arrive in 8 KiB blocks).
- cfn-lint is overridden out of the lock (`build/overrides.txt`): `moto[server]` pulls
  it in only for CloudFormation template validation, which the stack never calls; with
  sympy, networkx and mpmath it was 16 MB of each PEX and 75 MB unpacked.
- The project is built into a wheel with a pinned setuptools and no build isolation
  (so no unpinned build backend is fetched); `hd.pex` is cut from `services.pex`
  (`--pex-repository`) in seconds instead of a second pip run: same inputs, same bytes.

Run `python -m hippo_tasks.packaging.pexbuild build|lock|digest` (nox runs it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

# Everything that decides the bytes of the PEX files, pinned in one place.
TOOLS = ("pex==2.105.2", "setuptools==84.2.1", "uv==0.13.9")
PIP_VERSION = "25.2"
FLOOR = "3.11"
"""The oldest supported CPython: the default target, and the lock's resolution floor."""
SUPPORTED = ("3.11", "3.12", "3.13")
"""As noxfile.SUPPORTED and requires-python."""
ENTRY_POINT = "hippo_tasks.entry:cli"
# The extras needed at run time: moto and boto3; psycopg for ecom_ingest's store; the MCP
# SDK for `hd mcp` and the daemon's /mcp; hypothesis for `hd probes --full/--fuzz`.
LOCK_EXTRAS = ("aws", "postgres", "mcp", "probes")
COMMON_PEX_ARGS = (
    "--venv",
    "--sh-boot",
    "--non-hermetic-venv-scripts",
)
LOCK_ARGS = (
    # One lock for every supported CPython: markers where pins differ, and every
    # wheel's hash (so the same file builds a PEX for 3.11, 3.12 or 3.13).
    "--universal",
    "--python-version",
    FLOOR,
    "--generate-hashes",
    "--no-header",
    "--no-annotate",
    "--quiet",
)

BUILD_DIR = Path("build")
LOCK_IN = BUILD_DIR / "requirements.in"
LOCK_PATH = BUILD_DIR / "requirements.txt"
OVERRIDES = BUILD_DIR / "overrides.txt"
OUT_DIR = Path("dist") / "pex"
STAMP = "inputs.sha256"
PEX_FILES = ("hd.pex", "services.pex")
PACKAGES = ("hippo_tasks", "hippo_platform", "hippo_contract")
"""The project wheel's packages: the orchestrator, the bundled platform, their contract.
Both PEX files hold all three: hd.pex alone still runs every profile on a host."""
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip can hold


@dataclass
class BuildReport:
    """What one build cost and produced, for the nox session and benchmarks."""

    seconds: float
    python_version: str = FLOOR
    wheel_seconds: float = 0.0
    files: dict[str, dict[str, object]] = field(default_factory=dict)
    digest: str = ""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def lock_requirements(root: Path) -> list[str]:
    """What the lock covers: the project's dependencies and its run-time extras. Read
    from pyproject so the lock never drifts from what `pip install .[aws,postgres]`
    would ask for."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    reqs: list[str] = list(project.get("dependencies", []))
    for extra in LOCK_EXTRAS:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return sorted(set(reqs), key=str.lower)


def req_name(req: str) -> str:
    """`moto[server]>=5.0` -> `moto`: the distribution a requirement names."""
    for i, ch in enumerate(req):
        if not (ch.isalnum() or ch in "-_."):
            return req[:i].lower().replace("_", "-")
    return req.lower().replace("_", "-")


def lock_inputs_text(root: Path) -> str:
    return "".join(f"{r}\n" for r in lock_requirements(root))


def check_lock_current(root: Path) -> None:
    """Refuse to build from a lock whose inputs no longer match pyproject.toml: the PEX
    would silently lack (or pin stale) what `pip install .[aws]` gives."""
    lock_in, lock_txt = root / LOCK_IN, root / LOCK_PATH
    if not lock_txt.is_file() or not lock_in.is_file():
        raise SystemExit(f"{lock_txt}: no lock file; run `nox -s lock` first")
    if lock_in.read_text() != lock_inputs_text(root):
        raise SystemExit(
            f"{lock_in} does not match pyproject.toml's dependencies and extras "
            f"{', '.join(LOCK_EXTRAS)}; "
            "run `nox -s lock` and commit build/requirements.*"
        )


def excluded(root: Path) -> list[str]:
    """Names overridden out of the lock. pex is told too (`--exclude`), so the PEX
    runtime does not refuse to start because `moto[server]` names one of them."""
    names = []
    for line in (root / OVERRIDES).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(req_name(line))
    return sorted(names)


def input_requirements(root: Path) -> list[str]:
    """The top-level requirements, for cutting hd.pex out of services.pex."""
    lines = (root / LOCK_IN).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def running_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def interpreter_constraint(version: str) -> str:
    return f"CPython=={version}.*"


def find_python(version: str) -> str:
    """An interpreter of this X.Y: ours, else `pythonX.Y` on PATH."""
    if version == running_version():
        return sys.executable
    found = shutil.which(f"python{version}")
    check = [found or "", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    try:
        ran = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        ran = None
    if found is None or ran is None or ran.stdout.strip() != version:
        raise SystemExit(f"pex: no working python{version} on PATH to build for CPython "
                         f"{version} (install it, or run `nox -s pex --force-python {version}`)")
    return found


def tools_python(root: Path, version: str | None = None) -> str:
    """An interpreter of `version` (default: ours) that has exactly the pinned tools:
    ours when it does (the nox session installs them), else a venv under build/cache
    made once per version for the purpose (the test suite's venv has no pex). The PEX
    files are built for the version of the interpreter that builds them."""
    version = version or running_version()
    if version == running_version() and _has_tools():
        return sys.executable
    venv = root / "build" / "cache" / f"pex-tools-{version}"
    marker = venv / "tools.txt"
    python = venv / "bin" / "python"
    if not (python.exists() and marker.exists() and marker.read_text() == "\n".join(TOOLS)):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([find_python(version), "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *TOOLS],
            check=True,
        )
        marker.write_text("\n".join(TOOLS))
    return str(python)


def _has_tools() -> bool:
    for pin in TOOLS:
        name, _, version = pin.partition("==")
        try:
            if metadata.version(name) != version:
                return False
        except metadata.PackageNotFoundError:
            return False
    return True


def source_files(root: Path) -> Iterator[Path]:
    """The files that go into the project wheel, relative to root, in a stable order."""
    yield Path("pyproject.toml")
    for package in PACKAGES:
        for folder, dirs, files in os.walk(root / package):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for name in sorted(files):
                if name.endswith((".pyc", ".pyo")) or name.startswith("."):
                    continue
                yield (Path(folder) / name).relative_to(root)


def inputs_digest(root: Path, version: str = FLOOR) -> str:
    """Hash of everything that decides the bytes of the PEX files, so a fresh build can
    be reused (the test suite builds only when this changed)."""
    h = hashlib.sha256()
    for part in (*TOOLS, PIP_VERSION, *COMMON_PEX_ARGS, interpreter_constraint(version),
                 ENTRY_POINT):
        h.update(part.encode() + b"\0")
    h.update((root / LOCK_PATH).read_bytes())
    h.update((root / OVERRIDES).read_bytes())
    for rel in source_files(root):
        h.update(str(rel).encode() + b"\0")
        h.update((root / rel).read_bytes() + b"\0")
    return h.hexdigest()


def is_fresh(root: Path, out_dir: Path, version: str = FLOOR) -> bool:
    stamp = out_dir / STAMP
    if not stamp.is_file() or not all((out_dir / n).is_file() for n in PEX_FILES):
        return False
    return stamp.read_text().strip() == inputs_digest(root, version)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_info(path: Path, seconds: float) -> dict[str, object]:
    size = path.stat().st_size
    return {"bytes": size, "mb": round(size / 1e6, 1), "sha256": sha256(path),
            "seconds": round(seconds, 1)}


def snapshot(root: Path, dest: Path) -> Path:
    """Copy every input of the build (sources, lock, overrides) to dest, so one build,
    or two compared for reproducibility, sees one state of a tree others are editing."""
    for rel in (*source_files(root), LOCK_IN, LOCK_PATH, OVERRIDES):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)
    return dest


def build(root: Path, out_dir: Path, version: str = FLOOR) -> BuildReport:
    """Snapshot the inputs, then build both PEX files from the snapshot."""
    with tempfile.TemporaryDirectory(prefix="hippodrome-src-") as tmp:
        return build_snapshot(snapshot(root, Path(tmp)), out_dir, version)


def build_snapshot(src: Path, out_dir: Path, version: str = FLOOR) -> BuildReport:
    """Build the project wheel, then services.pex from the lock and hd.pex from
    services.pex, for CPython `version`."""
    check_lock_current(src)
    python = tools_python(repo_root(), version)
    digest = inputs_digest(src, version)
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    t0 = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    report = BuildReport(seconds=0.0, digest=digest, python_version=version)
    with tempfile.TemporaryDirectory(prefix="hippodrome-pex-") as tmp:
        stage, wheels = Path(tmp) / "src", Path(tmp) / "wheels"
        for rel in source_files(src):
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, stage / rel)
        subprocess.run(
            [python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
             "--disable-pip-version-check", "-w", str(wheels), str(stage)],
            check=True, env=env,
        )
        report.wheel_seconds = round(time.monotonic() - t0, 1)
        (wheel,) = wheels.glob("hippodrome-*.whl")
        # pip's hash-checking mode wants a hash for the project wheel too.
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text(
            f"-r {(src / LOCK_PATH).resolve()}\n"
            f"hippodrome @ {wheel.resolve().as_uri()} --hash=sha256:{sha256(wheel)}\n"
        )
        services, hd = out_dir / "services.pex", out_dir / "hd.pex"
        excludes = [arg for name in excluded(src) for arg in ("--exclude", name)]
        started = time.monotonic()
        _pex(python, env, version, services, "-r", str(reqs), "--no-transitive",
             "--pip-version", PIP_VERSION, *excludes)
        report.files["services.pex"] = _file_info(services, time.monotonic() - started)
        started = time.monotonic()
        _pex(python, env, version, hd, "--pex-repository", str(services), "hippodrome",
             *input_requirements(src), *excludes, "-e", ENTRY_POINT)
        report.files["hd.pex"] = _file_info(hd, time.monotonic() - started)
    (out_dir / STAMP).write_text(digest + "\n")
    report.seconds = round(time.monotonic() - t0, 1)
    return report


def _pex(python: str, env: dict[str, str], version: str, target: Path, *args: str) -> None:
    """One pex run, written beside the target and renamed: a reader (the test suite,
    a running stack) never sees half a file."""
    partial = target.with_name(f".{target.name}.partial")
    subprocess.run(
        [python, "-m", "pex", "--python", python, *COMMON_PEX_ARGS, "--interpreter-constraint",
         interpreter_constraint(version), *args, "-o", str(partial)],
        check=True, env=env,
    )
    partial.replace(target)


def lock(root: Path, python: str | None = None, upgrade: bool = True) -> float:
    """Re-resolve build/requirements.txt from pyproject; returns the seconds it took."""
    python = python or tools_python(root)
    started = time.monotonic()
    (root / LOCK_IN).write_text(lock_inputs_text(root))
    subprocess.run(
        [python, "-m", "uv", "pip", "compile", *LOCK_ARGS, *(["--upgrade"] if upgrade else []),
         "--override", str(root / OVERRIDES), "-o", str(root / LOCK_PATH), str(root / LOCK_IN)],
        check=True, cwd=root,
    )
    return round(time.monotonic() - started, 1)


def write_results(root: Path, section: str, figures: dict[str, Any]) -> None:
    """Read-modify-write benchmarks/results.json: only our key changes."""
    path = root / "benchmarks" / "results.json"
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    packaging = data.setdefault("packaging", {})
    packaging[section] = figures
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hippo_tasks.packaging.pexbuild")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build dist/pex/hd.pex and services.pex")
    b.add_argument("--out", default=str(OUT_DIR))
    b.add_argument("--python-version", default=running_version(),
                   help="the CPython X.Y the PEX files run on (default: this interpreter's); "
                        "built by pythonX.Y from PATH")
    b.add_argument("--force", action="store_true", help="build even when fresh")
    b.add_argument("--check-reproducible", action="store_true",
                   help="build a second time into a temporary folder and compare sha256")
    b.add_argument("--json", default="", help="also write the report to this file")
    b.add_argument("--record", action="store_true",
                   help='put the figures under "packaging" in benchmarks/results.json')
    lk = sub.add_parser("lock", help="refresh build/requirements.txt from pyproject.toml")
    lk.add_argument("--keep", action="store_true", help="keep current pins where possible")
    dg = sub.add_parser("digest", help="print the inputs digest")
    dg.add_argument("--python-version", default=running_version())
    sub.add_parser("tools", help="print the pinned build tools")
    args = parser.parse_args(argv)
    root = repo_root()
    if args.cmd == "tools":
        print(" ".join(TOOLS))
        return 0
    if args.cmd == "digest":
        print(inputs_digest(root, args.python_version))
        return 0
    if args.cmd == "lock":
        print(f"lock: {root / LOCK_PATH} in {lock(root, upgrade=not args.keep)} s")
        return 0
    out = Path(args.out) if Path(args.out).is_absolute() else root / args.out
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="hippodrome-src-") as tmp:
        src = snapshot(root, Path(tmp) / "src")
        version = args.python_version
        if version not in SUPPORTED:
            parser.error(f"--python-version {version}: supported are {', '.join(SUPPORTED)}")
        if not args.force and is_fresh(src, out, version):
            print(f"pex: {out} is fresh (inputs {inputs_digest(src, version)[:12]}, "
                  f"CPython {version}); --force to rebuild")
            result["fresh"] = True
        else:
            report = build_snapshot(src, out, version)
            result.update(asdict(report))
            for name, info in report.files.items():
                print(f"pex: {out / name}: {info['mb']} MB, "
                      f"sha256 {str(info['sha256'])[:16]}..., {info['seconds']} s")
            print(f"pex: built in {report.seconds} s (project wheel {report.wheel_seconds} s)")
        if args.check_reproducible:
            again = build_snapshot(src, Path(tmp) / "again", version)
            same = all(sha256(out / n) == again.files[n]["sha256"] for n in PEX_FILES)
            result["reproducible"] = same
            result["second_build_seconds"] = again.seconds
            print(f"pex: second build from the same inputs in {again.seconds} s: "
                  + ("same sha256 for both files" if same else "DIFFERENT bytes"))
            if not same:
                return 1
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.record and not result.get("fresh"):
        write_results(root, "pex", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
