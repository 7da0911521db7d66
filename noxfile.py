"""nox sessions: tests, lint, bench. Each installs what it needs into its own venv."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint"]

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite: real processes, real moto, on loopback."""
    session.install("-e", ".[aws,postgres,test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and mypy (strict) over the package, tests and benchmarks."""
    session.install("-e", ".[aws,lint]")
    session.run("ruff", "check", "hippo_tasks", "tests", "benchmarks", "noxfile.py", "tasks.py")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks; figures printed and written to benchmarks/results.json."""
    session.install("-e", ".[aws,test]")
    session.run("python", "benchmarks/bench_core.py", *session.posargs)
    session.run("python", "benchmarks/bench_fake_cell.py")
