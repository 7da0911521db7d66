"""`hd doctor`: what would stop `hd up`, found before it is run."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.tasks import task

from hippo_tasks.errors import HippoError, UsageError
from hippo_tasks.errors.daemon import DaemonUnreachableError, StrandedDaemonError
from hippo_tasks.registry.store import (
    Registry,
    daemon_alive,
    live_services,
    stranded_daemons,
    stranger_daemon,
)
from hippo_tasks.tasks.context import build_options, daemon_offset, resolve_root
from hippo_tasks.tasks.output import GREEN, RED, YELLOW, TaskExit, handles_errors, paint
from hippo_tasks.terminal_text import for_output

TOOLS = {
    "node": "console development builds (optional)",
    "npm": "setup steps such as `npm ci` (optional)",
    "cloudflared": "`up --enable-events` tunnel (preferred)",
    "ngrok": "`up --enable-events` tunnel (fallback)",
    "podman": "`nox -s docker` image build",
    "docker": "`nox -s docker` image build",
    "psql": "ecom_ingest postgres store (optional)",
    "git": "default table prefix from the branch",
}
MODULES = {"invoke": True, "psutil": True, "colorama": True, "requests": True,
           "watchfiles": True, "boto3": False, "moto": False}


def _unimportable(module: str) -> str | None:
    """Why `module` cannot be imported, or None. Imported, not looked up: a package
    half-removed, or a C extension built for another Python, was "found" (adv24 c/7)."""
    if importlib.util.find_spec(module) is None:
        return "missing"
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - whatever the module raises is the answer
        return f"cannot be imported ({type(exc).__name__}: {exc})"[:300]
    return None


@task(help={"profile": "profile whose ports to check (default: the running daemon's, else core)",
            "cell": "cell (default: the running daemon's, else local)",
            "port-offset": "port offset to check with (default: the running daemon's, else "
                           "HIPPODROME_PORT_OFFSET, else 0)"})
@handles_errors
def doctor(c: Context, profile: str | None = None, cell: str | None = None,
           project_root: str | None = None, port_offset: str | None = None) -> None:
    """Prerequisites, ports in use (and by whom), stale registry, tools found."""
    # Imported here, not at the top: every other command loads this module too.
    from hippo_tasks.model.loader import load_stack
    from hippo_tasks.model.plan import build_plan, cell_url_variable
    from hippo_tasks.supervision.ownership import Ownership, probe_mode
    from hippo_tasks.supervision.ports import port_free, who_holds
    from hippo_tasks.supervision.scope import is_stopped

    problems = 0

    def line(ok: bool | None, text: str) -> None:
        nonlocal problems
        tag = {True: paint("[OK]  ", GREEN), False: paint("[FAIL]", RED),
               None: paint("[WARN]", YELLOW)}[ok]
        problems += ok is False
        print(f"{tag} {for_output(text, 1)}")  # a port holder's command line, say

    py = sys.version_info
    line(py[:2] >= (3, 11), f"Python {py.major}.{py.minor}.{py.micro} (3.11 or newer needed)")
    for mod, required in MODULES.items():
        broken = _unimportable(mod)
        found = broken is None
        line(True if found else (False if required else None),
             f"python module {mod}: {'found' if found else broken}"
             + ("" if found or required else " (needed for the ecom profile and events)"))
    root = resolve_root(project_root)
    line(True, f"project root {root}")
    state = root / ".hippodrome"
    looked: set[Path] = set()
    for folder, what in ((state, "the stack's state"), (root / ".logs", "its log files")):
        target = folder if folder.is_dir() else root
        if target in looked:
            continue
        looked.add(target)
        if not os.access(target, os.W_OK | os.X_OK):  # `chattr +i`, read-only mount, modes
            # Every check said OK and `up` then failed with exit 10 (adv56 7); `.logs`
            # was not looked at, nor a full disk (adv58 F4).
            line(False, f"{target} cannot be written by this user: `hd up` keeps {what} "
                        f"in {folder}; check its owner and mode, `lsattr -d` (immutable), "
                        "or a read-only mount")
            continue
        with contextlib.suppress(OSError):
            disk = os.statvfs(target)
            free = disk.f_bavail * disk.f_frsize
            if free < 1024 * 1024:
                line(False if free == 0 else None,
                     f"{target} is on a disk with {free // 1024} KiB free: `hd up` keeps "
                     f"{what} in {folder}" + (" and cannot start there" if free == 0 else
                                              ", which may soon fill it") + "; free space")
    registry = Registry(root)
    data = registry.read()
    stranger = stranger_daemon(data, root)
    running = daemon_alive(data) and not stranger
    try:
        stack = load_stack(root)
        # Unless told otherwise, check what the running daemon runs (its profile, cell
        # and offset, from the registry), not the defaults.
        daemon = data["daemon"] if running else {}
        given = profile, cell, port_offset
        # An empty --profile '' is a bad name, as `hd up` says (x/13: a script's unset
        # variable ran every check on the defaults and passed, exit 0).
        profile = daemon.get("profile") or "core" if profile is None else profile
        cell = daemon.get("cell") or "local" if cell is None else cell
        if port_offset is None:
            port_offset = daemon_offset(daemon, stack.settings.dashboard_port)
        cell_url = daemon.get("cell_url")
        if cell == daemon.get("cell") and isinstance(cell_url, str) and cell_url:
            os.environ.setdefault(cell_url_variable(cell), cell_url)  # as the daemon had it
        plan = build_plan(stack, build_options(
            root=root, profile=profile, cell=cell, table_prefix="", only=None,
            offset=port_offset))
    except UsageError:
        # doctor's own arguments (an unknown profile or cell, an offset that is not a
        # number or pushes a port out of range): exit 2 with the sentence `hd up` gives,
        # not a failed check of a stack file that is fine.
        raise
    except HippoError as exc:
        line(False, f"stack file: {exc.message()}")
        raise TaskExit(1) from None
    taken = [what for what, mine, asked in zip(("profile", "cell", "port offset"),
                                               (profile, cell, port_offset), given, strict=True)
             if running and mine != asked and not (what == "cell" and mine == "local")]
    source = f" ({', '.join(taken)}: the running daemon's)" if taken else ""
    line(True, f"stack: {len(plan.services)} services in profile {profile}, cell {cell}, "
               f"port offset {plan.options.port_offset}{source}")
    for svc in plan.services:  # a typo in `cwd` passed, and failed only `up` (adv28 l/8)
        if not svc.spec.external and not svc.cwd.is_dir():
            line(False, f"service {svc.name}: cwd '{svc.cwd}' is not a folder: create it, "
                        "or fix `cwd` in the stack file")
    for warning in registry.warnings:  # ("[WARN] warning: ..." said it twice)
        line(None, warning.removeprefix("warning: "))
    if running:
        daemon_pid = int(data["daemon"]["pid"])
        if is_stopped(daemon_pid):  # it said OK for a daemon no command could reach (r/9)
            line(False, f"daemon pid {daemon_pid} is stopped (SIGSTOP, Ctrl+Z or a "
                        f"debugger): nothing it runs is supervised; `kill -CONT "
                        f"{daemon_pid}` resumes it")
        elif (silent := _no_answer(data["daemon"])) is not None:
            # It said OK for a recorded pid that was a `sleep` (adv53 F4): a hung daemon,
            # or a registry naming a process that is not one.
            line(False, f"daemon pid {daemon_pid} runs but does not answer at "
                        f"{data['daemon']['url']} ({silent}): a hung daemon, or a process "
                        "that is not one; `hd down --force` ends it if it is this stack's "
                        "and signals nothing else")
        else:
            line(True, f"daemon running: pid {daemon_pid} at {data['daemon']['url']}")
    elif stranger:  # "from a dead daemon", of one that runs (adv53 F4)
        line(None, f"stale registry: pid {data['daemon']['pid']}, recorded as the daemon, "
                   "runs but is not this project's daemon (it writes no "
                   ".hippodrome/daemon.log here and runs elsewhere: a registry from another "
                   "boot, or a copy); `hd down` forgets it and signals nothing")
    elif data.get("daemon") or data.get("services"):
        from hippo_tasks.registry.cleanup import leftovers

        # What `down --force` ends, by the same proof (the run's mark, its cgroups): a
        # recorded pid and start time alone were called leftovers it cleans, and it then
        # said no recorded process ran (adv58 F4).
        proven = leftovers(data)[1]
        left = ", ".join(sorted(proven)) or "none still running"
        others = [name for name in live_services(data) if name not in proven]
        line(None, f"stale registry from a dead daemon (leftovers: {left}); "
                   "`hd down --force` cleans it" + (
                       f"; the recorded pids of {', '.join(others)} run but carry none of "
                       "this stack's marks and are in none of its cgroups (their numbers "
                       "may be another program's now): nothing signals them"
                       if others else ""))
    if stranded := stranded_daemons(root):  # a stack started beside it hid it (u/1)
        line(False, StrandedDaemonError(str(root), stranded).message())
    if running and data["daemon"].get("mode"):
        mode = data["daemon"]["mode"]
        # Its own mode's words: this shell's (a cgroup it could make) described the other
        # mode's promise for a process-group daemon (adv26 f/4).
        why = str(data["daemon"].get("mode_why") or "as it was started")
        line(True if mode == "cgroup" else None, "supervision: the running daemon uses "
             + ("cgroup v2, one per service: every descendant is caught, setsid or not"
                if mode == "cgroup" else Ownership("doctor", None, why).describe()))
    else:
        own = probe_mode()
        line(True if own.mode == "cgroup" else None, f"supervision: {own.describe()}")
    ours = {e.get("port") for e in (data.get("services") or {}).values()} | (
        {data["daemon"]["port"]} if running else set())
    stack_pids: set[int] = set()
    if running:  # a port is the stack's only when its holder is: a stranger on the port
        from hippo_tasks.registry.cleanup import leftovers  # of a stopped service was "OK"

        stack_pids = {p for pids in leftovers(data)[1].values() for p in pids}
        stack_pids.add(int(data["daemon"]["pid"]))
    dashboard = plan.dashboard_port
    if running and daemon_offset(daemon, stack.settings.dashboard_port) == \
            str(plan.options.port_offset):
        # The port the daemon listens on: a `dashboard_port` edited since `up` is used
        # by no one until the next `up`, and checking it passed over the daemon's.
        dashboard = int(daemon["port"])
    ports = [("dashboard", dashboard)] + [
        (s.name, s.port) for s in plan.services if s.port and not s.spec.external]
    for name, port in ports:
        if port_free(port):
            line(True, f"port {port} ({name}) free")
            continue
        pid, cmd, unlisted, _ = who_holds(port)
        who = f" by pid {pid} ({cmd})" if pid else unlisted
        if running and (pid in stack_pids if pid else port in ours):
            line(True, f"port {port} ({name}) held by this stack:{who}")
        else:
            line(False, f"port {port} ({name}) in use{who}")
    for tool, why in TOOLS.items():
        path = shutil.which(tool)
        line(True if path else None, f"{tool}: {path or 'not found'} — {why}")
    if problems:
        raise TaskExit(1)


def _no_answer(daemon: dict[str, Any]) -> str | None:
    """Why the recorded daemon does not answer its /healthz (5 s, half what `status`
    gives it), or None if it does."""
    from hippo_tasks.daemon.client import DaemonClient

    try:
        DaemonClient(str(daemon["url"]), int(daemon["pid"])).call("GET", "/healthz", timeout=5)
    except DaemonUnreachableError as exc:
        return exc.reason
    except HippoError as exc:  # it answered, with an error: something listens there
        return exc.message()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None

