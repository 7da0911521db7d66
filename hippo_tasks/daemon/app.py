"""What the daemon's routes share: the command interface and the per-daemon state.

Typed, built once per server (`serve`), and handed to every handler in its `Request`,
instead of state kept in module globals or an untyped dict on the engine. A plain class,
not a dataclass: the daemon loads no dataclasses (tests/test_cli_imports.py).
"""

from __future__ import annotations

from hippo_tasks.daemon.commands import StackCommands
from hippo_tasks.daemon.engine import Engine
from hippo_tasks.daemon.mcp_route import McpEndpoint
from hippo_tasks.daemon.webhook.routing import Webhook


class App:
    __slots__ = ("commands", "webhook", "mcp")

    def __init__(self, commands: StackCommands, webhook: Webhook,
                 mcp: McpEndpoint | None = None) -> None:
        self.commands = commands
        self.webhook = webhook
        self.mcp = McpEndpoint() if mcp is None else mcp
        """`/mcp`'s SDK side, made on its first request (daemon/mcp_route.py)."""

    @property
    def engine(self) -> Engine:
        return self.commands.engine

    @classmethod
    def for_commands(cls, commands: StackCommands) -> App:
        return cls(commands, Webhook(commands.engine))
