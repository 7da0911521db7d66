"""What the MCP tools need from a stack, and the two ways to reach one.

The tools are written once, against `Stack`. `hd mcp` is a process of its own, started
by an agent client, so it reaches the daemon the way every other CLI command does:
found through the project's registry, over the HTTP API (`HttpStack`). The daemon's
`/mcp` endpoint runs the same tools in the daemon, where calling its own HTTP API would
only add a socket, a thread and a JSON round trip per call: `LocalStack` calls the
command interface (`StackCommands`) directly, the one the HTTP handlers call.

What is not in the command interface goes the same way for both: events through the
webhook (the routing and guard of a real delivery), recordings through their API, and
`seed` / `probes` by running the very `hd` command a user would (`run_hd`), so the
bundled platform's code is never imported here, nor into the daemon.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hippo_tasks.daemon.client import LOG_ANSWER_WITHIN_S, STOPPED_SHORT_S, DaemonClient
from hippo_tasks.errors.daemon import EXIT_ALREADY_RUNNING, DaemonNotRunningError

if TYPE_CHECKING:
    from hippo_tasks.daemon.commands import StackCommands

HD = ("-c", "import sys; sys.argv[0] = 'hd'; from hippo_tasks.entry import cli; cli()")
"""`python -c ...` that runs the `hd` command line with this interpreter (no PATH lookup:
the same installation, source tree or PEX, as the caller)."""


@dataclass(frozen=True)
class LogArgs:
    """The `logs` tool's window and filter, as the API's query parameters name them."""

    lines: int = 100
    after: int | None = None
    before: int | None = None
    since: float | str | None = None
    grep: str = ""
    regex: str = ""
    errors: bool = False

    def query(self) -> dict[str, str]:
        q = {"lines": str(self.lines)}
        for key in ("after", "before", "since"):
            value = getattr(self, key)
            if value is not None:
                q[key] = str(value)
        if self.grep:
            q["grep"] = self.grep
        if self.regex:
            q["regex"] = self.regex
        if self.errors:
            q["errors"] = "1"
        return q


@dataclass(frozen=True)
class Ran:
    """A finished `hd` command: its exit status and its output lines (stdout, stderr)."""

    code: int
    lines: list[str]


class Stack(Protocol):
    """The running stack of one project, as the tools see it."""

    root: Path

    def status(self) -> dict[str, Any]: ...

    def logs(self, service: str, args: LogArgs) -> dict[str, Any]: ...

    def act(self, verb: str, service: str | None, cascade: bool) -> dict[str, Any]: ...

    def why(self, service: str) -> dict[str, Any]: ...

    def client(self) -> DaemonClient:
        """The daemon's HTTP API, for what the command interface does not hold."""
        ...

    def webhook_token(self) -> str | None: ...

    def up(self, profile: str, timeout: float, only: str = "") -> Ran | None:
        """Start the daemon when none runs (`hd up --detach`, `--only` a service and
        what it depends on); None: one already runs (or this stack is the daemon)."""
        ...


class HttpStack:
    """The daemon of `root`, looked up in the registry on every call: `hd mcp` outlives
    daemons (the agent may bring the stack down and up again between calls)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def client(self) -> DaemonClient:
        return DaemonClient.for_project(self.root)

    def status(self) -> dict[str, Any]:
        return self.client().status()

    def logs(self, service: str, args: LogArgs) -> dict[str, Any]:
        path = f"/api/services/{urllib.parse.quote(service, safe='')}/logs?" + \
            urllib.parse.urlencode(args.query())
        result: dict[str, Any] = self.client().call("GET", path, timeout=LOG_ANSWER_WITHIN_S,
                                                    stopped_for=STOPPED_SHORT_S)
        return result

    def act(self, verb: str, service: str | None, cascade: bool) -> dict[str, Any]:
        return self.client().action(verb, service, cascade)

    def why(self, service: str) -> dict[str, Any]:
        return self.client().why(service)

    def webhook_token(self) -> str | None:
        from hippo_tasks.events.hooks import stack_webhook_token
        from hippo_tasks.registry.store import Registry

        return stack_webhook_token(Registry(self.root).read().get("daemon"))

    def up(self, profile: str, timeout: float, only: str = "") -> Ran | None:
        try:
            self.client()
            return None
        except DaemonNotRunningError:
            pass
        args = ["up", "--detach", "--project-root", str(self.root)]
        if profile:
            args += ["--profile", profile]
        if only:
            args += ["--only", only]
        ran = run_hd(self.root, args, timeout)
        if ran.code == EXIT_ALREADY_RUNNING:
            # Another caller's `up` won (two start calls at once: agents issue tool calls
            # in parallel): the daemon it made takes this start, as any start would. It
            # answered `ok: false`, "hd up --detach failed ... already running" (adv24 b/2).
            return None
        return ran


class LocalStack:
    """The daemon's own command interface: the stack the daemon serving `/mcp` runs."""

    def __init__(self, commands: StackCommands) -> None:
        self.commands = commands
        self.root = commands.engine.plan.options.project_root

    def client(self) -> DaemonClient:
        return DaemonClient(self.commands.engine.url, os.getpid())

    def status(self) -> dict[str, Any]:
        return self.commands.status()

    def logs(self, service: str, args: LogArgs) -> dict[str, Any]:
        return self.commands.logs(service, args.lines, args.after, before=args.before,
                                  since=args.since, grep=args.grep, regex=args.regex,
                                  errors=args.errors)

    def act(self, verb: str, service: str | None, cascade: bool) -> dict[str, Any]:
        if verb == "start":
            return self.commands.start(service)
        if verb == "stop":
            return self.commands.stop(service)
        return self.commands.restart(service, cascade=cascade)

    def why(self, service: str) -> dict[str, Any]:
        return self.commands.why(service)

    def webhook_token(self) -> str | None:
        return self.commands.engine.webhook_token

    def up(self, profile: str, timeout: float, only: str = "") -> Ran | None:
        return None


def run_hd(root: Path, args: list[str], timeout: float) -> Ran:
    """Run `hd ARGS` in `root` as a user would, output captured (no colour); a command
    that outlives `timeout` is ended (its whole process group) and says so."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, *HD, *args], cwd=root, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    chunks: list[bytes] = []
    stdout = proc.stdout
    assert stdout is not None

    def read() -> None:
        with contextlib.suppress(OSError, ValueError):
            for block in iter(lambda: os.read(stdout.fileno(), 65536), b""):
                chunks.append(block)

    # Until the command exits, not until its output closes: a probes or seed program
    # that left a child in the background (holding the pipe) read as "did not finish",
    # exit 124, though it had passed at once.
    reader = threading.Thread(target=read, name="hd-output", daemon=True)
    reader.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()
        reader.join(OUTPUT_GRACE_S)
        text = b"".join(chunks).decode("utf-8", "replace").splitlines()
        return Ran(124, [*text, f"hippodrome: `hd {' '.join(args)}` did not finish within "
                                f"{timeout:g}s and was stopped"])
    reader.join(OUTPUT_GRACE_S)  # its last lines; a child left behind may never close it
    return Ran(proc.returncode, b"".join(chunks).decode("utf-8", "replace").splitlines())


OUTPUT_GRACE_S = 0.5
"""How long after the command's exit its last output may take to arrive."""
