"""`hd mcp`: the running stack as an MCP server over stdio, for agent clients.

An agent client starts `hd mcp --project-root DIR` and speaks MCP on its stdin and
stdout; the tools reach the project's daemon through its HTTP API, found in the
registry on every call, so the server outlives stacks brought down and up again.
The MCP SDK is imported only here (and in the daemon on its first `/mcp` request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hippo_tasks.errors import UsageError
from hippo_tasks.tasks.context import resolve_root
from hippo_tasks.tasks.declare import task
from hippo_tasks.tasks.output import handles_errors

if TYPE_CHECKING:
    from invoke.context import Context

INSTALL = ("hd mcp needs the MCP SDK, which is not installed for this Python: pip install "
           "'hippodrome[mcp]' (the PEX files include it)")


@task(help={"project-root": "project folder (default: nearest parent with hippodrome.toml "
                            "or tasks.py); give it in the agent client's configuration"})
@handles_errors
def mcp(c: Context, project_root: str | None = None) -> None:
    """Serve the running stack to an agent client over MCP (stdio) until it disconnects."""
    root = resolve_root(project_root)
    try:
        from hippo_tasks.mcp.server import serve_stdio
    except ImportError as exc:
        raise UsageError(f"{INSTALL} ({exc})") from None
    serve_stdio(root)
