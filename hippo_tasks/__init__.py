"""Hippodrome: a local-stack orchestrator driven by Invoke tasks.

Layers (DESIGN section 9), each importable alone: `model` (pure stack model),
`supervision` (processes, probes, logs), `registry` (the shared process registry),
`daemon` (command API and HTTP), `events` (AWS), `services` (the bundled stack),
`tasks` (thin Invoke task modules).
"""

import sys

__version__ = "0.1.0"

MIN_PYTHON = (3, 11)
"""The floor (requires-python in pyproject.toml); 3.11, 3.12 and 3.13 are tested."""

if sys.version_info < MIN_PYTHON:  # refused here, before any module needing 3.11 loads
    found = "{}.{}.{}".format(*sys.version_info[:3])  # plain syntax: old Pythons parse it
    raise SystemExit(
        "hippodrome: Python 3.11 or newer is needed; " + sys.executable + " is Python "
        + found + ". Make the venv with a newer one, e.g. `python3.11 -m venv .venv`.")
