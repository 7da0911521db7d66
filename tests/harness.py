"""Run a StackSupervisor in-process on a real event loop, with real child processes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hippo_tasks.model.loader import load_stack_text
from hippo_tasks.model.plan import Options, build_plan
from hippo_tasks.supervision.backoff import Clock, LoopClock
from hippo_tasks.supervision.child_env import child_env
from hippo_tasks.supervision.logs import LogHub
from hippo_tasks.supervision.orphans import OrphanGuard
from hippo_tasks.supervision.ownership import become_subreaper, establish
from hippo_tasks.supervision.run import SupervisorContext
from hippo_tasks.supervision.run_files import RunFiles
from hippo_tasks.supervision.stack import StackSupervisor
from hippo_tasks.supervision.states import Transition


class Harness:
    def __init__(self, root: Path, text: str, clock: Clock | None = None) -> None:
        spec = load_stack_text(text)
        self.plan = build_plan(spec, Options(project_root=root))
        self.runs = RunFiles(root / ".logs", 5)
        self.hub = LogHub(spec.settings.log_buffer_lines, [self.runs])
        self.transitions: list[Transition] = []
        self.ownership = establish(secrets.token_hex(8))
        self.guard = OrphanGuard(self.ownership.token, self.ownership.base)
        ctx = SupervisorContext(self.hub, clock or LoopClock(), self.ownership, spec.settings,
                                child_env(), self._on)
        self.stack = StackSupervisor(self.plan, ctx, lambda n: str(self.runs.path(n)))

    def _on(self, t: Transition) -> None:
        self.transitions.append(t)
        self.stack.on_transition(t)

    def states(self, name: str) -> list[str]:
        return [t.new.value for t in self.transitions if t.service == name]

    def lines(self, name: str) -> list[str]:
        return [r.text for r in self.hub.tail(name, 100000) if not r.system]


def run(root: Path, text: str, scenario: Callable[[Harness], Awaitable[Any]],
        clock: Clock | None = None, timeout: float = 60) -> Any:
    async def main() -> Any:
        h = Harness(root, text, clock)
        try:
            return await asyncio.wait_for(scenario(h), timeout)
        finally:
            await asyncio.wait_for(h.stack.shutdown("test over"), 30)
            h.guard.close()
            h.ownership.close()
            h.runs.close()
            if h.ownership.base is None:
                # establish() made this pytest worker a subreaper, and nothing here
                # collects what it adopts: a later test's chain of orphans (a link a
                # millisecond) left 30,000 zombies, the pid table full (CI, stop 50).
                become_subreaper(False)

    return asyncio.run(main())
