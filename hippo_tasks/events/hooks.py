"""Where `--enable-events` meets the stack's lifecycle: `up`, `down` and the daemon.

Kept apart from bridge.py so the lifecycle code asks two cheap questions ("is anything
recorded?", "is any of it mine?") without importing the AWS layer; boto3 is loaded only
when there is something to make or unmake.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hippo_contract.webhook import token_problem
from hippo_tasks.errors import UsageError
from hippo_tasks.registry.store import Registry

if TYPE_CHECKING:
    from hippo_tasks.events.bridge import EventsSession
    from hippo_tasks.model.plan import StackPlan

TOKEN_VAR = "HIPPODROME_WEBHOOK_TOKEN"


def webhook_token() -> str | None:
    """HIPPODROME_WEBHOOK_TOKEN as every command that sends or checks it reads it (`up`
    for the daemon, `events.send`, `events.replay`, the MCP server); None when unset.

    One no header can carry is a UsageError (exit 2) that never shows it: `up` took a
    token ending in \\r, and the clients then crashed with a traceback printing it."""
    token = os.environ.get(TOKEN_VAR) or None
    problem = token_problem(token) if token else ""
    if problem:
        raise UsageError(f"{TOKEN_VAR} cannot be the webhook's token: {problem}. Set it "
                         f"again without that (from a file: export {TOKEN_VAR}=\"$(tr -d "
                         "'\\r' < FILE)\"); its value is not shown here")
    return token


def stack_webhook_token(daemon: dict[str, Any] | None) -> str | None:
    """The token a client sends to its own stack's webhook: HIPPODROME_WEBHOOK_TOKEN,
    else the one the running daemon checks (its registry record, `daemon`). `up
    --enable-events` makes a random one that is never shown, and `hd events.send` and
    `hd mcp` were answered 401 by the very stack they were run for."""
    token = webhook_token()
    if token is None and daemon:
        recorded = daemon.get("webhook_token")
        token = recorded if isinstance(recorded, str) and recorded else None
    return token


def _recorded(registry: Registry) -> list[dict[str, Any]]:
    return list(registry.read().get("resources") or [])


OWNER_WAIT_S = 60.0
"""How long `down` waits for an overtaken `up --enable-events` to delete its resources."""


def wait_for_owners(registry: Registry, say: Callable[[str], None],
                    timeout: float = OWNER_WAIT_S) -> None:
    """Until the live processes that recorded AWS resources (an `up --enable-events`
    this `down` overtook while it set them up) have ended, deleting them: `down` said
    "stack stopped", exit 0, while the rule and its targets still existed, and nothing
    deleted them if that `up` was then killed."""
    if not _recorded(registry):
        return
    import time

    from hippo_tasks.events.bridge_records import live_owners

    live = live_owners(registry, os.getpid())
    if not live:
        return
    say(f"waiting for pid {', '.join(map(str, sorted(live)))} (the `up` this stopped) to "
        "delete the AWS resources it made")
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        time.sleep(0.1)
        live = live_owners(registry, os.getpid())


def recover(registry: Registry, say: Callable[[str], None], force: bool = False) -> int:
    """After a crash: delete what a dead owner left (everything, with `force`); how many
    AWS resources could not be deleted and stay recorded (the lines said say why)."""
    if not _recorded(registry):
        return 0
    from hippo_tasks.events.bridge_records import cleanup_recorded, left_behind

    for line in cleanup_recorded(registry, force=force):
        say(line)
    return left_behind(registry, force=force)


def release_own(registry: Registry, say: Callable[[str], None]) -> None:
    """At the daemon's shutdown: delete what this process owns (the role is kept)."""
    me = os.getpid()
    mine = [e for e in _recorded(registry) if (e.get("owner") or {}).get("pid") == me]
    if not mine:
        return
    from hippo_tasks.events.bridge import cleanup_recorded

    for line in cleanup_recorded(registry, owner_pid=me):
        say(line)


def prepare_token() -> str:
    """A fresh webhook token, in the environment before the daemon and services start:
    the daemon checks it, event_pipe sends it, and the EventBridge connection carries it."""
    from hippo_tasks.events.bridge import new_token

    token = new_token()
    os.environ[TOKEN_VAR] = token
    return token


def start_session(plan: StackPlan, registry: Registry, token: str,
                  say: Callable[[str], None]) -> EventsSession:
    from hippo_tasks.events.bridge import EventsSession

    return EventsSession.start(
        registry=registry,
        local_url=f"http://127.0.0.1:{plan.dashboard_port}",
        table_prefix=plan.options.table_prefix,
        say=say,
        token=token,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
    )
