"""Port pre-flight: find every busy port before anything starts, and who holds it.

A bind test is the truth about whether a service will be able to listen; psutil then
names the holder (PID and command line), which beats parsing lsof output and works
where lsof is not installed.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable
from typing import Any

from hippo_tasks.errors.ports import PortBusyError, PortsBusyError, PortTakenError
from hippo_tasks.supervision.scope import all_pids, daemon_log_folder, run_mark, stat_fields
from hippo_tasks.terminal_text import one_line


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def taken(service: str, port: int, again: bool = False) -> str | None:
    """Why `service` must not start now: its port has a holder (named), else None.
    `again`: a restart of a running stack, which no port check of the user's preceded."""
    if port_free(port):
        return None
    pid, cmd, unlisted, nobody = who_holds(port)
    if again:
        holder = f"pid {pid}" + (f" ({cmd})" if cmd else "") if pid is not None else \
            (unlisted.strip(" ()") or "a process it cannot see")
        return f"port {port} is held by {holder}, so it cannot start again yet"
    return PortTakenError(port, service, pid, cmd, False, unlisted, nobody,
                          None if pid is None else stack_of(pid),
                          adopted=pid is not None and adopted(pid)).message()


def adopted(pid: int) -> bool:
    """An orphan of this daemon's services that it adopted as their subreaper (process
    group mode): its child with no mark, as no service's own process is. Blamed on
    "that process", to be stopped by hand, the stack's own orphan read as a stranger's
    (adv44 L/4)."""
    fields = stat_fields(pid)
    return fields is not None and int(fields[1]) == os.getpid() and run_mark(pid) is None


def _inet_connections() -> list[Any]:
    """The kernel's whole connection table: a scan costs milliseconds per thousand
    sockets, so one busy port is looked up with one scan (`who_holds`).
    psutil is imported here, for a busy port only: 20 ms of every `up` otherwise."""
    import psutil

    try:
        return list(psutil.net_connections(kind="inet"))
    except (psutil.AccessDenied, OSError):
        return []


def who_holds(port: int) -> tuple[int | None, str | None, str, bool]:
    """(pid, command line) of the listener, or else `without_listener`'s words and flag."""
    conns = _inet_connections()
    pid, cmd = holder_of(port, conns)
    unlisted, nobody = without_listener(port, conns) if pid is None else ("", False)
    return pid, cmd, unlisted, nobody


def holder_of(port: int, conns: list[Any] | None = None) -> tuple[int | None, str | None]:
    """(pid, command line) of the process listening on the port, when we may see it.
    Of several sharing the listening socket (a pre-fork server: gunicorn, nginx, uvicorn
    --workers), the one the others descend from: a worker was named, and stopping it
    freed nothing, since its master forked another."""
    import psutil

    for conn in _inet_connections() if conns is None else conns:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                return None, None
            pid = _master_of(conn.pid, conn.fd)
            try:
                cmd = command_line(pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                cmd = None
            return pid, cmd
    return None, None


def command_line(pid: int) -> str:
    """A process's command line as one line of text to quote. From /proc as it is
    where there is one: psutil reads it as text, and a `\r\n` in an argument came out
    as `\n` (adv54 F2)."""
    import psutil

    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().rstrip(b"\0").split(b"\0")
        text = " ".join(a.decode("utf-8", "replace") for a in argv)
    except FileNotFoundError:  # no /proc (macOS), or the process is gone
        text = " ".join(psutil.Process(pid).cmdline())
    except OSError as exc:
        raise psutil.AccessDenied(pid) from exc
    return one_line(text)


def sharers(port: int, named: int) -> list[int]:
    """The other processes holding the port's listening socket that `named` is not the
    parent (or grandparent...) of: workers whose master closed its copy, or exited
    (r/3). Stopping the one named freed nothing while they held it. Read from /proc on
    the busy-port path only."""
    import psutil

    link = None
    for conn in _inet_connections():
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN \
                and conn.pid is not None:
            with contextlib.suppress(OSError, ValueError):
                link = os.readlink(f"/proc/{conn.pid}/fd/{conn.fd}")
            break
    if link is None:
        return []
    found = []
    for pid in all_pids():
        if pid == named:
            continue
        with contextlib.suppress(OSError, ValueError):
            if any(_links_to(pid, fd, link) for fd in os.listdir(f"/proc/{pid}/fd")) \
                    and not _descends(pid, named):
                found.append(pid)
    return sorted(found)


def _descends(pid: int, ancestor: int) -> bool:
    for _ in range(64):
        fields = stat_fields(pid)
        if fields is None:
            return False
        pid = int(fields[1])
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


def _master_of(pid: int, fd: int) -> int:
    """Of the processes sharing a listening socket, the eldest: up the parents while
    each holds the same socket. The kernel's table names one holder, and for a pre-fork
    server (gunicorn, nginx, uvicorn --workers) it was a worker: stopping it freed
    nothing, since its master forked another (z/2)."""
    try:
        sock = os.readlink(f"/proc/{pid}/fd/{fd}")
    except (OSError, ValueError):
        return pid
    while True:
        fields = stat_fields(pid)
        try:
            parent = int(fields[1]) if fields else 0
            fds = os.listdir(f"/proc/{parent}/fd") if parent > 1 else []
        except (OSError, ValueError):
            return pid
        if not any(_links_to(parent, other, sock) for other in fds):
            return pid
        pid = parent


def stack_of(pid: int) -> tuple[str | None, str | None] | None:
    """(service, project folder) when the process is a service of a Hippodrome stack:
    its run mark names the service, and its daemon (the ancestor writing a daemon.log)
    the folder, None when no ancestor is found (a double fork); (None, folder) for
    such a daemon itself. "Stop that process" was futile for a service: its daemon
    restarted it within a second (z/8)."""
    mark = run_mark(pid)
    if not mark or "/" not in mark:
        folder = daemon_log_folder(pid)
        return None if folder is None else (None, folder)
    service = mark.rsplit("/", 1)[1]
    ancestor = pid
    for _ in range(64):
        fields = stat_fields(ancestor)
        if fields is None or int(fields[1]) <= 1:
            break
        ancestor = int(fields[1])
        folder = daemon_log_folder(ancestor)
        if folder is not None:
            return service, folder
    return service, None


def _links_to(pid: int, fd: str, target: str) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}") == target
    except OSError:
        return False


def without_listener(port: int, conns: list[Any] | None = None) -> tuple[str, bool]:
    """Why `port` cannot be bound when no listener on it is visible, as the words after
    "already in use", and whether no process holds it at all. A connection can hold it
    as its own end: one closed a moment ago (TIME_WAIT, held by no process until the
    kernel frees it), or a live outgoing one.
    Both used to read "holder unknown: it may belong to another user", which sent root
    looking for a user that did not exist."""
    import psutil

    text, nobody = (" (holder unknown: no process listens on it, so a socket may be bound "
                    "to it without listening, which the kernel does not list)"
                    if os.geteuid() == 0 else
                    " (holder unknown: it may belong to another user)"), False
    conns = [c for c in (_inet_connections() if conns is None else conns)
             if c.laddr and c.laddr.port == port]
    if any(c.status == psutil.CONN_LISTEN for c in conns):
        # A listener whose process cannot be seen (another user's, another user
        # namespace's): it was read as a closed connection's TIME_WAIT beside it, "try
        # again in a minute", for a port that never frees (adv24 c/1).
        return (" (holder unknown: a process listens on it that this user cannot see; it "
                "may belong to another user)" + _ephemeral_note(port)), False
    for conn in conns:
        if conn.status != psutil.CONN_LISTEN:
            if conn.pid is None and conn.status in (psutil.CONN_TIME_WAIT,
                                                    psutil.CONN_FIN_WAIT2):
                text = (f" by a connection that ended a moment ago ({conn.status}: no process "
                        "holds it, and the kernel frees it within a minute)")
                nobody = True
            elif conn.pid is None:  # CLOSE_WAIT lasts until its unseen holder closes it
                text = (f" as its own end by a connection ({conn.status}) of a process this "
                        "user cannot see; it may belong to another user")
            else:
                try:
                    cmd = command_line(conn.pid)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    cmd = "?"
                text = (f" as its own end by a connection of pid {conn.pid} ({cmd}, "
                        f"{conn.status})")
            break
    return text + _ephemeral_note(port), nobody


def _ephemeral_note(port: int) -> str:
    """Ports in this range are also handed to outgoing connections as their own end."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            low, high = (int(x) for x in fh.read().split())
    except (OSError, ValueError):
        return ""
    if low <= port <= high:
        return (f"; ports {low}-{high} are also given to outgoing connections, so this can "
                f"happen again: choose ports below {low}")
    return ""


def process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def check_ports(wanted: Iterable[tuple[str, int]], our_groups: set[int] | None = None,
                host: str = "127.0.0.1") -> None:
    """Raise PortsBusyError naming every busy port; `our_groups` marks our leftovers."""
    busy = []
    for service, port in wanted:
        if port_free(port, host):
            continue
        pid, cmd, unlisted, nobody = who_holds(port)
        ours = False
        if pid is not None and our_groups:
            with contextlib.suppress(Exception):
                ours = process_group(pid) in our_groups or pid in our_groups
        stack = None if pid is None or ours else stack_of(pid)
        busy.append(PortBusyError(port, service, pid, cmd, ours, unlisted, nobody, stack,
                                  tuple(sharers(port, pid)) if pid is not None else ()))
    if busy:
        raise PortsBusyError(busy)
