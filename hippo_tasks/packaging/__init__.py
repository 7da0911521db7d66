"""Packaging helpers shared by the nox sessions (`pex`, `lock`, `docker`) and the tests.

Kept inside the package so the nox session and `tests/test_pex.py` build the PEX files
with one piece of code (same inputs, same options, same bytes); nothing here is
imported by the orchestrator itself.
"""
