"""`python -m hippo_platform.services.fake_cell [--port 9001] [--state-dir DIR]`."""

from __future__ import annotations

import sys

from hippo_platform.services.common.runner import main
from hippo_platform.services.fake_cell.service import DEFAULT_PORT, NAME, add_arguments, make_app

if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:], add_arguments))
