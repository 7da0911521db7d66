"""Process states and the only moves between them.

An impossible move raises: a supervisor bug shows up as an error, not as a service
silently stuck in a state the page cannot explain. Every accepted move becomes a
Transition, which the log, the registry and the page all show.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple


class State(enum.Enum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    BACKOFF = "backoff"
    FAILED = "failed"
    EXTERNAL = "external"


S = State

ALLOWED: dict[State, frozenset[State]] = {
    S.PENDING: frozenset({S.STARTING, S.STOPPED, S.FAILED, S.BACKOFF}),  # fork refused
    S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.BACKOFF, S.FAILED, S.STOPPED}),
    S.RUNNING: frozenset({S.STOPPING, S.BACKOFF, S.FAILED, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED, S.FAILED, S.BACKOFF}),  # BACKOFF: after a crash
    S.STOPPED: frozenset({S.PENDING, S.STARTING}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED, S.FAILED, S.BACKOFF}),
    S.FAILED: frozenset({S.PENDING, S.STARTING, S.STOPPED}),
    S.EXTERNAL: frozenset({S.EXTERNAL}),
}


class IllegalTransition(RuntimeError):
    def __init__(self, service: str, old: State, new: State) -> None:
        super().__init__(f"{service}: illegal transition {old.value} -> {new.value}")


class Transition(NamedTuple):
    service: str
    old: State
    new: State
    reason: str
    at: float


class StateMachine:
    """One service's state; `on_change` hears every accepted move."""

    def __init__(
        self,
        service: str,
        clock: Callable[[], float],
        on_change: Callable[[Transition], None],
        initial: State = State.PENDING,
    ) -> None:
        self.service = service
        self.state = initial
        self._clock = clock
        self._on_change = on_change

    def move(self, new: State, reason: str = "") -> Transition:
        old = self.state
        if new not in ALLOWED[old]:
            raise IllegalTransition(self.service, old, new)
        self.state = new
        event = Transition(self.service, old, new, reason, self._clock())
        self._on_change(event)
        return event
