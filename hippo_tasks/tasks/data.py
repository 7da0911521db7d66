"""`hd seed`, `hd probes`, `hd e2e PATH [-- pytest args]`: data and checks
against a running stack.

Seeding and probing are the platform's programs: the stack file names them
(`[commands.seed]`, `[commands.probes]`) and these tasks run them with the stack's env
contract (tasks/stack_commands.py). All three find the stack through the project's
daemon (`/api/status`), so they work with any profile, cell and `--port-offset` the
stack was started with.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from hippo_contract.e2e_env import ENV_FILE, read_env_file
from hippo_tasks.errors import UsageError
from hippo_tasks.errors.daemon import DaemonNotRunningError
from hippo_tasks.errors.state_dir import StateDirError
from hippo_tasks.tasks.context import random_seed, resolve_root
from hippo_tasks.tasks.flags import no_empty
from hippo_tasks.tasks.output import TaskExit, handles_errors

ROOT_HELP = "project folder (default: nearest parent with hippodrome.toml or tasks.py)"
E2E_USAGE = """Usage: invoke e2e [--project-root DIR] PATH [-- PYTEST ARGS]

Runs `python -m pytest PATH PYTEST ARGS` with the project's .env.e2e loaded into the
environment (written by the seed: service URLs, dummy AWS credentials, the seed, the
seeded API key). Exits with pytest's exit code.
Example: invoke e2e tests/e2e -- -k onboarding -x"""


@task(help={"seed": "random seed (default: HIPPODROME_RANDOM_SEED, else 42)",
            "project-root": ROOT_HELP})
@handles_errors
def seed(c: Context, seed: str | None = None, project_root: str | None = None) -> None:
    """Seed deterministic data into the running stack; writes .hippodrome/seed.json and .env.e2e."""
    number = random_seed(seed)
    from hippo_contract.e2e_env import SEED_LOCK_HELD, SeedLockError, seeding
    from hippo_tasks.daemon.client import DaemonClient
    from hippo_tasks.tasks import stack_commands  # loads the model: only when run

    root = resolve_root(project_root)
    DaemonClient.for_project(root)  # no stack: said before a lock folder is made
    # One seed at a time, whatever program the stack's [commands.seed] runs (the bundled
    # one also locks, unless told it is held for it): two of a custom one interleaved.
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(seeding(root, lambda line: print(f"hippodrome | {line}",
                                                                flush=True)))
        except SeedLockError as exc:  # a traceback (q/7): said as an unwritable folder
            raise StateDirError.from_os(exc, exc.filename or root / ".hippodrome") from None
        os.environ[SEED_LOCK_HELD] = "1"
        try:
            code = stack_commands.run(root, "seed", "seed", number)
        finally:
            os.environ.pop(SEED_LOCK_HELD, None)
    if code:
        raise TaskExit(code)


PROBES_HELP = {
    "full": "also property-based search tests (hypothesis) against the stack",
    "fuzz": "also a state machine driving the APIs in random order (hypothesis)",
    "examples": "examples per property / fuzz runs (default 25)",
    "steps": "steps per fuzz run (default 20)",
    "deadline-s": "time budget of each mode in seconds (default 120)",
    "seed": "hypothesis seed, to replay a failing run (printed by every run)",
    "breaker": "infrastructure errors in a row that open a service's breaker (default 3)",
    "json": "also write the results as JSON to this file",
    "project-root": ROOT_HELP,
}


@task(help=PROBES_HELP)
@handles_errors
def probes(c: Context, full: bool = False, fuzz: bool = False, examples: str | None = None,
           steps: str | None = None, deadline_s: str | None = None, seed: str | None = None,
           breaker: str | None = None, json: str | None = None,
           project_root: str | None = None) -> None:
    """Health of every service and a data path; --full: search properties; --fuzz: a state
    machine. The flags, and words after `--`, are passed on to the stack's probes command."""
    from hippo_tasks.tasks import stack_commands

    no_empty("--json", json, "give a file to write the results to, or leave the flag out")
    after = pytest_args(c)
    given = [i for i, word in enumerate(after) if word == "--json" or
             word.startswith("--json=")]
    for i in given:  # after `--` the probes program took '' and overrode --json FILE (j/5)
        value = after[i].partition("=")[2] if "=" in after[i] else \
            (after[i + 1] if i + 1 < len(after) else "")
        no_empty("--json", value, "give a file to write the results to, or leave it out")
    if given and json is not None or len(given) > 1:
        raise UsageError("--json is given twice (before and after `--`): give it once")
    extra = probes_args(full=full, fuzz=fuzz, examples=examples, steps=steps,
                        deadline_s=deadline_s, seed=seed, breaker=breaker, json=json)
    code = stack_commands.run(resolve_root(project_root), "probes", "probes",
                              extra=[*extra, *after])
    if code:
        raise TaskExit(code)


def probes_args(*, full: bool, fuzz: bool, **values: str | None) -> list[str]:
    """The probes task's flags as the command's words, spelled the same way (the command
    checks the values: it is the one that knows what they mean)."""
    words = (["--full"] if full else []) + (["--fuzz"] if fuzz else [])
    for name, value in values.items():
        if value is not None:
            words += ["--" + name.replace("_", "-"), str(value)]
    return words


@task(help={"path": "the test file or folder to run (any pytest selector)",
            "project-root": ROOT_HELP})
@handles_errors
def e2e(c: Context, path: str, project_root: str | None = None) -> None:
    """Run a pytest suite with .env.e2e loaded; text after `--` goes to pytest."""
    if path in ("-h", "--help"):  # invoke hands a flag to a missing positional as its value
        print(E2E_USAGE)
        return
    import importlib.util

    if importlib.util.find_spec("pytest") is None:
        raise UsageError(f"e2e runs pytest, which is not installed for {sys.executable}: "
                         f"install it there (`{sys.executable} -m pip install pytest`, or "
                         "pip install 'hippodrome[test]')")
    root = resolve_root(project_root)
    env_file = root / ENV_FILE
    if not env_file.is_file():
        try:  # a folder there was said as no file (adv59)
            from hippo_contract.small_file import kind_of

            kind = kind_of(os.stat(env_file).st_mode)
        except OSError:
            kind = None
        if kind is not None:
            raise UsageError(f"{env_file} is {kind}, where seeding writes a file: move it "
                             "away, then `hd seed`")
        raise UsageError(f"no {env_file}: it is written by seeding; start the stack without "
                         "--no-seed (`hd up`) or run `hd seed`")
    try:
        values = read_env_file(env_file)
    except OSError as exc:
        raise UsageError(f"cannot read {env_file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_env_file_is_this_runs(root, env_file, values)
    command = [sys.executable, "-m", "pytest", path, *pytest_args(c)]
    print(f"hippodrome | {shlex.join(command)}  (with {len(values)} variables from {env_file})",
          flush=True)
    env = {**os.environ, **values}
    if "AWS_ACCESS_KEY_ID" in values:  # the dummy keys must win over a profile in the shell
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            env.pop(name, None)
    from hippo_tasks.supervision.ownership import ending_with_this_process

    code = subprocess.call(command, env=env, preexec_fn=ending_with_this_process())
    if code:
        raise TaskExit(code)


def check_env_file_is_this_runs(root: Path, env_file: Path, values: dict[str, str]) -> None:
    """`.env.e2e` names the stack it was seeded for (its dashboard, table prefix and
    profile): a suite run with one from an earlier `up` (other ports, another prefix, or
    no stack at all) tested dead URLs, or whatever else listened there, without a word."""
    from hippo_tasks.registry.store import Registry, daemon_alive

    data = Registry(root).read()
    if not daemon_alive(data):
        raise DaemonNotRunningError(str(root), f"{env_file.name} names a stack at "
                                    f"{values.get('HIPPODROME_DASHBOARD_URL', '?')}")
    daemon = data["daemon"]
    running = {"HIPPODROME_DASHBOARD_URL": daemon.get("url"),
               "HIPPODROME_TABLE_PREFIX": daemon.get("table_prefix"),
               "HIPPODROME_PROFILE": daemon.get("profile")}
    differ = [f"{name} {values.get(name)!r} (running: {now!r})" for name, now in running.items()
              if now is not None and values.get(name) != now]
    # The cell too, where the file names one (a seeding program of one's own may not):
    # one seeded against the local fake_cell handed a `--cell staging` suite the fake
    # cell's URL and key (adv59 F4).
    cell = daemon.get("cell")
    if "HIPPODROME_CELL" in values and isinstance(cell, str) and values["HIPPODROME_CELL"] != cell:
        differ.append(f"HIPPODROME_CELL {values['HIPPODROME_CELL']!r} (running: {cell!r})")
    if differ:
        fix = ("Run `hd seed` to write it for the stack that runs now (or `hd up` without "
               "--no-seed)") if cell in (None, "local") else (
            f"Seeding writes it only for the local cell, and this stack runs against "
            f"'{cell}': give your suite that cell's settings yourself, or bring the stack "
            "up with --cell local")
        raise UsageError(f"{env_file} was written for another run of the stack: "
                         f"{'; '.join(differ)}. {fix}")


def pytest_args(c: Context, argv: Sequence[str] | None = None) -> list[str]:
    """The words after `--`, with their quoting intact when that can be proven.

    Invoke 3 hands a task the remainder joined by spaces (`c.remainder`), which loses
    quoting: `-- -k "a and b"` would reach pytest as four words. When the process's own
    argv ends in words that join to exactly that remainder, those words are used;
    otherwise the remainder is split as a shell would. Invoke 2 has no `c.remainder`:
    there the argv's words after `--` are all there is.
    """
    remainder = getattr(c, "remainder", None)
    words = list(sys.argv if argv is None else argv)
    tail = words[words.index("--") + 1:] if "--" in words else []
    if remainder is None:
        return tail
    if tail and " ".join(tail) == remainder:
        return tail
    return shlex.split(str(remainder))
