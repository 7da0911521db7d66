"""The stack's seed job, run by `python -m hippo_platform.seed --project-root DIR [--seed N]`.

The seed comes from `--seed`, else HIPPODROME_RANDOM_SEED, else 42. Exit 0 when seeded,
1 with one line on stderr naming what was missing, 2 for bad arguments, 10 when
seed.json or .env.e2e cannot be written (both are then left as they were).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hippo_platform.seed.data import DEFAULT_SEED
from hippo_platform.seed.endpoints import view_from_env
from hippo_platform.seed.run import SeedError, seed_stack


def resolve_seed(flag: int | None, env: dict[str, str]) -> int:
    if flag is not None:
        return flag
    raw = env.get("HIPPODROME_RANDOM_SEED") or str(DEFAULT_SEED)
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"seed: HIPPODROME_RANDOM_SEED must be an integer, got {raw!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hippo_platform.seed")
    parser.add_argument("--project-root", default=".", help="where seed.json and .env.e2e go")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: HIPPODROME_RANDOM_SEED, else 42)")
    args = parser.parse_args(argv)
    root = Path(args.project_root).resolve()
    if not root.is_dir():
        parser.error(f"--project-root {args.project_root}: no such folder")
    env = dict(os.environ)
    seed = resolve_seed(args.seed, env)
    try:
        seed_stack(root, seed, view_from_env(env), say=lambda s: print(s, flush=True))
    except SeedError as exc:
        print(f"seed: {exc.message()}", file=sys.stderr, flush=True)
        return exc.code
    return 0
