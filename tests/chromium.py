"""Debian's headless Chromium through playwright, for the page and webhook tests.

No browser download: the binary comes from apt (build/install-test-deps.sh). A missing
package or binary fails the test with what to install, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = os.environ.get("HIPPODROME_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def launched(extra_args: tuple[str, ...] = ()) -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("these tests need the `playwright` Python package: pip install "
                    "playwright (no browser download: they use Debian's chromium)",
                    pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium "
                    "(or set HIPPODROME_CHROMIUM to a Chromium binary)", pytrace=False)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra_args])
        try:
            yield b
        finally:
            b.close()
