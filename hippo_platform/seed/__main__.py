"""`python -m hippo_platform.seed --project-root DIR [--seed N]`: the stack's seed job
(seed_job), imported only under command_exit's guard."""

import sys

from hippo_platform.seed.command_exit import run_module

if __name__ == "__main__":
    sys.exit(run_module("hippo_platform.seed.seed_job", "seed", ": `hd seed` again finishes it"))
