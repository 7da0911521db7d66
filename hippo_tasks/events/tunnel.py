"""A public HTTPS URL for the daemon's webhook: a cloudflared or ngrok tunnel process.

EventBridge can only call public HTTPS endpoints, so `up --enable-events` needs a
tunnel to `http://127.0.0.1:PORT`. cloudflared's quick tunnels need no account, so
they are preferred; ngrok (which needs an account token) is the fallback. Neither tool
offers an API to ask for the URL of a quick tunnel, so the URL is read from the tool's
own output:

- cloudflared prints it in a box on stderr:
  `... INF |  https://<words>.trycloudflare.com   |`
- ngrok runs as `ngrok http --log stdout --log-format json 127.0.0.1:PORT` and reports
  `{"msg": "started tunnel", "url": "https://..."}`. Its local API (127.0.0.1:4040)
  would work too, but that port moves to 4041 when another ngrok runs, and a second
  ngrok's API would answer with the first one's tunnels; the log is unambiguous.

The tool's output goes to a log file, not a pipe: the tunnel is handed from `up` to
the detached daemon, and a pipe nobody drains would block it. It runs in its own
session, so it is ended by process group, and only while its PID and start time still
match what was recorded.

A tunnel is never left serving a dead port. Before it starts, `launch` starts an
orphan guard for its mark (`supervision/orphans.py`), held by the process that
launched it: a `kill -9` of `hd up` while it waits for the URL or makes the AWS
resources ends the tunnel within a second. Once the daemon, whose own guard ends
everything of its run (the tunnel carries that run's mark), has it, `release_guard`
lets the first guard go. The registry's entry remains for the AWS resources, which the
next `up` or `down` deletes.

This module does not import boto3: it is the local half of `--enable-events`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from hippo_tasks.errors import HippoError
from hippo_tasks.registry.store import identity, is_same_process
from hippo_tasks.supervision.orphans import OrphanGuard
from hippo_tasks.supervision.ownership import RUN_TOKEN_ENV
from hippo_tasks.supervision.scope import RUN_ENV, TUNNEL_MARK, Scope, end_scopes
from hippo_tasks.terminal_text import for_terminal

TOOLS = ("cloudflared", "ngrok")
URL_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
LAST_LINES = 12
_POLL_S = 0.02
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_CLOUDFLARED_URL = re.compile(r"https://[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.trycloudflare\.com\b")
# Never handed to the tunnel tool: it has no use for AWS credentials or the webhook token.
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "HIPPODROME_WEBHOOK_TOKEN",
)

INSTALL_HELP = (
    "install cloudflared (recommended: free, no account needed) from Cloudflare's packages "
    "(Debian/Ubuntu: pkg.cloudflare.com; macOS: `brew install cloudflared`) or a release "
    "binary from https://github.com/cloudflare/cloudflared/releases, or install ngrok from "
    "https://ngrok.com/download (needs a free account: `ngrok config add-authtoken "
    "<token>`), and make sure it is on PATH"
)


class TunnelError(HippoError):
    """No tunnel: the tools are missing, or the one started gave no URL (with its output)."""

    def __init__(self, problem: str, tool: str | None = None, last_lines: Sequence[str] = (),
                 hint: str = "", log_path: str | None = None) -> None:
        self.problem = problem
        self.tool = tool
        self.last_lines = last_lines
        self.hint = hint
        self.log_path = log_path

    def message(self) -> str:
        text = f"--enable-events: {self.problem}"
        if self.hint:
            text += f". {self.hint}"
        if self.last_lines:
            # the tool's own bytes: no escape of theirs may reach the user's terminal
            text += f"\n--- last output of {self.tool} ---\n" + "\n".join(
                map(for_terminal, self.last_lines))
        if self.log_path:
            text += f"\n(full output: {self.log_path})"
        return text


def loopback_address(local_url: str) -> tuple[str, int]:
    """Host and port of the local URL; anything but loopback is refused.

    A tunnel publishes whatever it points at to the internet: pointing it at another
    machine's port by a typo must not be possible.
    """
    parts = urlsplit(local_url)
    host, port = parts.hostname, parts.port
    if parts.scheme != "http" or host not in _LOOPBACK_HOSTS or not port:
        raise TunnelError(
            f"the tunnel target must be http://127.0.0.1:PORT (a loopback address), "
            f"not {local_url!r}"
        )
    return ("127.0.0.1" if host == "localhost" else host), port


def find_tool(search_path: str | None = None) -> tuple[str, str]:
    """(tool name, executable) of the first tunnel tool on PATH; cloudflared first."""
    for name in TOOLS:
        found = shutil.which(name, path=search_path)
        if found:
            return name, found
    raise TunnelError(
        "neither cloudflared nor ngrok is on PATH, and one of them is needed to expose "
        "the webhook to EventBridge; nothing was started",
        hint=f"To fix: {INSTALL_HELP}",
    )


def tunnel_command(tool: str, executable: str, local_url: str) -> list[str]:
    host, port = loopback_address(local_url)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if tool == "cloudflared":
        return [executable, "tunnel", "--no-autoupdate", "--url", f"http://{target}"]
    if tool == "ngrok":
        # flags before the address: ngrok 2's flag parser stops at the first argument
        return [executable, "http", "--log", "stdout", "--log-format", "json", target]
    raise ValueError(f"unknown tunnel tool {tool!r}")


def parse_public_url(tool: str, line: str) -> str | None:
    """The public https URL if this output line announces it, else None."""
    if tool == "cloudflared":
        found = _CLOUDFLARED_URL.search(line)
        return found.group(0) if found else None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("msg") != "started tunnel":
        return None
    url = record.get("url")
    return url if isinstance(url, str) and url.startswith("https://") else None


@dataclass
class Tunnel:
    """A running tunnel process, and what is needed to end it from another process."""

    tool: str
    command: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None
    pid: int
    pgid: int
    create_time: float | None
    public_url: str | None = None
    guard: OrphanGuard | None = field(default=None, repr=False, compare=False)
    """Ends the tunnel if the launching process dies before `stop` or `release_guard`."""

    def record(self) -> dict[str, object]:
        """The registry's view of this process (PID, group, start time, tool, log)."""
        return {
            "tool": self.tool,
            "pid": self.pid,
            "pgid": self.pgid,
            "create_time": self.create_time,
            "log": str(self.log_path),
        }

    def last_lines(self, count: int = LAST_LINES) -> list[str]:
        return tail(self.log_path, count)

    def wait_for_url(self, timeout: float = URL_TIMEOUT_S) -> str:
        """Read the log until the tool announces its URL; end the process if it never does."""
        deadline = time.monotonic() + timeout
        offset, pending = 0, b""
        while True:
            exited = self.popen is not None and self.popen.poll() is not None
            with contextlib.suppress(OSError), self.log_path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
                offset += len(chunk)
                pending += chunk
            *lines, pending = pending.split(b"\n")
            if exited:  # the last line may have no newline
                lines.append(pending)
            for raw in lines:
                url = parse_public_url(self.tool, raw.decode("utf-8", "replace"))
                if url:
                    self.public_url = url
                    return url
            if exited:
                assert self.popen is not None
                self.stop()  # whatever it left in its group
                raise self._failure(f"{self.tool} exited with code {self.popen.returncode}")
            if time.monotonic() >= deadline:
                self.stop()
                raise self._failure(f"{self.tool} printed no public URL within {timeout:g}s")
            time.sleep(_POLL_S)

    def _failure(self, problem: str) -> TunnelError:
        lines = self.last_lines()
        return TunnelError(
            f"{problem}, so the webhook could not be exposed to EventBridge",
            tool=self.tool,
            last_lines=lines,
            hint=_hint(self.tool, "\n".join(lines)),
            log_path=str(self.log_path),
        )

    def stop(self, grace: float = STOP_GRACE_S) -> str:
        """SIGTERM the group, SIGKILL after `grace`; reap our child. Says what it did."""
        outcome = end_process_group(self.pid, self.pgid, self.create_time,
                                    str(self.log_path), grace)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        self.release_guard()
        return f"{self.tool} tunnel (pid {self.pid}): {outcome}"

    def release_guard(self) -> None:
        """The tunnel is someone else's to end now (the daemon's, whose guard covers its
        mark), or already ended: the launcher's guard leaves quietly."""
        if self.guard is not None:
            self.guard.close()
            self.guard = None




def launch(local_url: str, log_path: Path, tool: tuple[str, str] | None = None) -> Tunnel:
    """Start the tunnel process (in its own session) without waiting for its URL.

    Separate from `wait_for_url` so the caller can record the PID before the wait:
    a crash during the (up to 30 s) wait must not leave an unrecorded process.
    """
    name, executable = tool or find_tool()
    command = tunnel_command(name, executable, local_url)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
    # The mark of the run `up` is starting (its daemon's guard ends the tunnel after a
    # kill -9 of the daemon), else a mark of its own; this process's guard, from before
    # the tunnel exists, ends it after a kill -9 of this process.
    run = env.pop(RUN_TOKEN_ENV, None) or secrets.token_hex(8)
    mark = env[RUN_ENV] = f"{run}/{TUNNEL_MARK}"
    guard = OrphanGuard(mark)
    try:
        with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                               | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644), "wb") as log:
            try:
                popen = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise TunnelError(
                    f"could not run {executable}: {exc.strerror or exc}", tool=name
                ) from None
    except BaseException:
        guard.close()
        raise
    return Tunnel(name, command, log_path, popen, popen.pid, popen.pid, identity(popen.pid),
                  guard=guard)


def start_tunnel(local_url: str, log_path: Path, timeout: float = URL_TIMEOUT_S) -> Tunnel:
    """Launch and wait for the URL: for callers that have nothing to record in between."""
    tunnel = launch(local_url, log_path)
    try:
        tunnel.wait_for_url(timeout)
    except BaseException:
        tunnel.stop()
        raise
    return tunnel


def end_process_group(
    pid: int, pgid: int, create_time: float | None, log: str | None,
    grace: float = STOP_GRACE_S
) -> str:
    """End a recorded tunnel's process group, but only while it is provably ours: the
    leader still has the recorded start time, leads the recorded group, and writes to
    the recorded log file (its stdout, opened by `launch`). A leader that is gone proves
    nothing about whoever holds its group number now; a pid and start time can be copied
    into a registry from anyone's process; a stranger is never signalled."""
    if not is_same_process(pid, create_time):
        if identity(pid) is None:
            return "already gone"
        return "not signalled: its PID now belongs to another process"
    if not _leads_group_writing_to(pid, pgid, log):
        return (f"not signalled: pid {pid} is not the leader of group {pgid} writing to "
                f"{log or 'a recorded log'}, so not provably the tunnel this stack started")
    killed: list[str] = []
    end_scopes([Scope("", pgid=pgid)], grace, lambda s, m: killed.append(m))
    return f"ignored SIGTERM for {grace:g}s: killed" if killed else "ended"


def _leads_group_writing_to(pid: int, pgid: int, log: str | None) -> bool:
    try:
        if pid != pgid or os.getpgid(pid) != pgid or not log:
            return False
        out = os.readlink(f"/proc/{pid}/fd/1")
    except OSError:
        return False
    log = os.path.abspath(log)
    return out == log or out == f"{log} (deleted)"


def process_gone(pid: int, create_time: float | None) -> bool:
    """True once the recorded process no longer runs (a zombie counts as gone)."""
    return not is_same_process(pid, create_time)


def tail(path: Path, count: int = LAST_LINES) -> list[str]:
    """The last non-empty lines of a log, each cut to a readable length."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            data = fh.read()
    except OSError:
        return []
    lines = [ln.rstrip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return [ln if len(ln) <= 300 else ln[:297] + "..." for ln in lines[-count:]]


def _hint(tool: str, output: str) -> str:
    """What to do about the failures these tools are known for."""
    if tool == "ngrok":
        if "ERR_NGROK_4018" in output or "authtoken" in output.lower():
            return (
                "ngrok needs an account token: sign up at https://dashboard.ngrok.com/signup, "
                "run `ngrok config add-authtoken <token>`, or install cloudflared instead "
                "(no account needed)"
            )
        if "ERR_NGROK_108" in output:
            return (
                "your ngrok account allows one agent session at a time: stop the other ngrok, "
                "or install cloudflared"
            )
        return "check that `ngrok http 8080` works on its own"
    if "429" in output or "Too Many Requests" in output:
        return "Cloudflare is rate-limiting quick tunnels from this address: wait a minute"
    if "failed to request quick Tunnel" in output or "failed to unmarshal" in output:
        return (
            "cloudflared could not reach Cloudflare's quick-tunnel service "
            "(https://api.trycloudflare.com): check the network or proxy, and try again"
        )
    return (
        "check that `cloudflared tunnel --url http://127.0.0.1:8080` works on its own; a "
        "~/.cloudflared/config.yml can stop quick tunnels in older cloudflared versions"
    )
