"""A port the stack needs, held by another process: who holds it and what to do.

Apart from the other errors for their size: what holds a port has many cases (a
stranger, this stack's leftover or adopted orphan, another Hippodrome stack's service
or daemon, no process at all), each with its own remedy."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from hippo_tasks.errors import PORT_TAKEN, HippoError


class PortBusyError(HippoError):
    """A port the stack needs is held by another process; nothing was started."""

    outcome = "Nothing was started."

    def __init__(self, port: int, service: str, holder_pid: int | None = None,
                 holder_cmdline: str | None = None, ours: bool = False,
                 unlisted: str = "", held_by_nobody: bool = False,
                 stack: tuple[str | None, str | None] | None = None,
                 sharers: tuple[int, ...] = (), adopted: bool = False) -> None:
        """`unlisted`: what holds the port when no listener is seen, and whether that is
        no process at all (supervision/ports.without_listener); `stack`: (service,
        folder) when the holder is another Hippodrome stack's service (ports.stack_of)."""
        self.stack = stack
        self.sharers = sharers
        """Other processes holding the same socket (supervision/ports.sharers)."""
        self.port = port
        self.service = service
        self.holder_pid = holder_pid
        self.holder_cmdline = holder_cmdline
        self.ours = ours
        self.unlisted = unlisted
        self.held_by_nobody = held_by_nobody
        self.adopted = adopted
        """The holder is an orphan of this stack the daemon adopted (ports.adopted)."""

    def message(self) -> str:
        text = f"port {self.port} (service '{self.service}') is already in use"
        if self.holder_pid is not None:
            text += f" by pid {self.holder_pid}"
            if self.holder_cmdline:
                text += f" ({self.holder_cmdline})"
            if self.sharers:  # stopping the one named frees nothing while these hold it
                text += (f" and pid{'s' if len(self.sharers) > 1 else ''} "
                         f"{', '.join(map(str, self.sharers))}, which hold the same socket")
        else:
            text += self.unlisted or " (holder unknown: it may belong to another user)"
        if self.adopted:
            text += (f", an orphan of this stack's services that the daemon adopted: it left "
                     "its service's process group and cleared its environment, so it is "
                     f"ended at `hd down`, not with its service. End it (`kill "
                     f"{self.holder_pid}`), then `hd start --service "
                     f"{shlex.quote(self.service)}`")
            return f"{text}. {self.outcome}"
        if self.ours:
            text += (
                ". It is a leftover of this project's stack: run `hd down --force`"
                " to clean it up"
            )
        elif self.stack is not None:
            name, folder = self.stack
            if name is None:
                text += (f", the daemon of the Hippodrome stack in {folder}: stop that "
                         f"stack (`hd down --project-root {shlex.quote(str(folder))}`), or "
                         "move this stack with --port-offset N")
            elif folder is not None:
                text += (f", service '{name}' of the Hippodrome stack in {folder}, whose "
                         "daemon may restart it: stop it there (`hd stop --service "
                         f"{shlex.quote(name)} --project-root {shlex.quote(folder)}`, or "
                         f"`hd down --project-root {shlex.quote(folder)}`), or move this "
                         "stack with --port-offset N")
            else:
                text += (f", service '{name}' of another Hippodrome stack: stop it with "
                         "`hd stop` or `hd down` in that stack's folder, or move this "
                         "stack with --port-offset N")
        elif self.held_by_nobody:
            text += ". Try again in a minute, or move this stack with --port-offset N"
        else:
            text += (". Stop those processes" if self.sharers else ". Stop that process") \
                + ", or move this stack with --port-offset N"
        return f"{text}. {self.outcome}"


class PortTakenError(PortBusyError):
    """A service's port taken between the start's port check and the service's own
    start (another stack's service, a program started meanwhile): a stranger answered
    its readiness probe, `up` said ready, and the service crash-looped on EADDRINUSE."""

    outcome = PORT_TAKEN


class PortsBusyError(HippoError):
    """Several busy ports, reported together so one run shows them all."""

    def __init__(self, busy: Sequence[PortBusyError]) -> None:
        self.busy = busy

    def message(self) -> str:
        return "\n".join(b.message() for b in self.busy)


class PortsBusyAtStartError(PortsBusyError):
    """A detached daemon's PortsBusyError, as its sentence came back to `up --detach`
    (a port taken between the pre-flight and the daemon's bind: two projects started at
    once). Exit 4 as at the pre-flight: it was 2, "bad arguments", with the same words."""

    def __init__(self, text: str) -> None:
        super().__init__(())
        self.text = text

    def message(self) -> str:
        return self.text
