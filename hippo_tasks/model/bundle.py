"""Where the bundled platform's stack file is.

The orchestrator finds that file and never imports the package that holds it: it knows
the platform only as the stack file and the commands it names (`nox -s lint` checks
that no module of hippo_tasks imports hippo_platform). `find_spec` of a top-level
package locates it without running it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hippo_tasks.errors import StackFileError

BUNDLED_NAME = "default_stack.toml"
BUNDLE_PACKAGE = "hippo_platform"
"""Where the bundled platform's stack file lives. The orchestrator finds that file and
never imports the package: it knows the platform only as the stack file and the
commands it names (`nox -s lint` checks that no module imports hippo_platform)."""


def bundled_path() -> Path:
    """The bundled platform's stack file, found (not imported) through its package."""
    spec = importlib.util.find_spec(BUNDLE_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / BUNDLED_NAME
        if path.is_file():
            return path
    raise StackFileError(
        f"<bundled {BUNDLED_NAME}>",
        f"the bundled platform (package {BUNDLE_PACKAGE}) is not installed next to "
        "Hippodrome: reinstall it (pip install -e . in the clone), or write [stack] "
        "defaults = false in hippodrome.toml to run only your own services")


def bundled_text() -> str:
    path = bundled_path()
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StackFileError(str(path), f"cannot be read: {exc}") from exc
