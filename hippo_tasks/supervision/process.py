"""Starting a child in its own session and scope, and ending everything in that scope.

Every child is a session leader (`start_new_session`: Ctrl+C in the terminal is ours to
handle, not the children's) and starts inside its ownership Scope (a cgroup, or the
environment mark: see ownership.py). Stopping signals the scope, so a grandchild that
called setsid() is ended too. Exit is noticed through a pidfd on the event loop, so an
idle stack costs no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hippo_tasks.errors import cut_long
from hippo_tasks.supervision.logs import LineSplitter, LogHub
from hippo_tasks.supervision.ownership import Placement
from hippo_tasks.supervision.scope import (
    POLL_S,
    Scope,
    reading_complete,
    start_ticks,
    ticks_of,
)

F_SETPIPE_SZ = 1031
PIPE_SIZE = 1024 * 1024
"""A deep pipe lets a burst of output land without the child waiting on us."""


class SpawnError(Exception):
    """A child that cannot be started at all. `transient`: the system was short of
    something that comes back (descriptors, processes, memory), so a retry may work;
    otherwise (no such program, a bad cwd) retrying will not help."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


SHORT_OF = {errno.EMFILE: "this process has too many files open",
            errno.ENFILE: "the system has too many files open",
            errno.EAGAIN: "the process limit is reached",
            errno.ENOMEM: "memory is short"}
"""Errors of fork/exec that pass: a crashed service hit by one of them was `failed` for
good after a single try, though the resource came back seconds later."""


def shortage(code: int) -> str:
    """SHORT_OF's words, with the limit for EMFILE: under a hard `ulimit -n` the daemon
    cannot lift, the shortage lasts, and the limit is what to raise."""
    text = SHORT_OF[code]
    if code == errno.EMFILE:
        with contextlib.suppress(ImportError, OSError, ValueError):
            import resource

            text += f"; ulimit -n: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
    return text


def interpreter_problem(path: str, search: str = os.defpath) -> str:
    """Why a script's `#!` line cannot run it, or "". The kernel says only "No such file
    or directory" for a script whose interpreter is missing (or saved with Windows line
    endings, `#!/bin/sh\r`), and that reached the user through our cgroup wrapper as
    `.../cgroup.procs: exec: ./run.sh: not found`, of a file that exists."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return ""
    if not head.startswith(b"#!"):
        return ""
    line = head[2:].split(b"\n", 1)[0]
    words = line.strip(b" \t").split(None, 1)
    if not words:
        return "starts with `#!` but names no interpreter"
    if line.endswith(b"\r"):
        return (f"has Windows line endings: its first line asks for "
                f"{os.fsdecode(line.strip(b' ')[:80])!r}; convert it (`dos2unix FILE`, or "
                "`sed -i 's/\\r$//' FILE`)")
    name = os.fsdecode(words[0])
    if not os.path.isabs(name) or not os.path.exists(name):
        return f"asks for the interpreter '{name}' (its `#!` line), which does not exist"
    if os.path.isdir(name) or not os.access(name, os.X_OK):
        what = "a directory" if os.path.isdir(name) else "not executable"
        return f"asks for the interpreter '{name}' (its `#!` line), which is {what}"
    program = _env_program(os.fsdecode(words[1])) if len(words) > 1 else ""
    if os.path.basename(name) == "env" and program and which(program, search) is None:
        return (f"asks for '{program}' on PATH (its `#!` line, through env), which is "
                "not there: install it, or put its folder on the service's PATH")
    return ""


def which(program: str, search: str) -> str | None:
    """`shutil.which(program, path=search)`, as POSIX has it, without shutil: it imports
    bz2 and lzma, ~0.2 MB of the daemon's PSS for the stack's whole life, and most
    commands are named without a folder (`python3`, `npm`, `node`)."""
    if os.path.dirname(program):
        return program if _runnable(program) else None
    seen = set()
    for folder in search.split(os.pathsep) if search else ():
        if folder not in seen:
            seen.add(folder)
            candidate = os.path.join(folder, program)
            if _runnable(candidate):
                return candidate
    return None


def _runnable(path: str) -> bool:
    return os.path.exists(path) and os.access(path, os.X_OK) and not os.path.isdir(path)


def _env_program(rest: str) -> str:
    """The program `#!/usr/bin/env REST` runs, as env reads REST; "" when it cannot be
    told. The kernel hands REST to env as one word, so without `-S` only a plain program
    name is one (`env NAME=value prog` and options are not split); with `-S` (the usual
    way to give an interpreter flags) env splits it and reads its options again:
    `-S node --flag`, `-S -u NAME prog`, `-S NAME=1 prog`."""
    words = rest.split()
    if not words:
        return ""
    first = words[0]
    if first.startswith("--split-string="):
        words = [first.split("=", 1)[1], *words[1:]]
    elif first.startswith("-S"):
        words = [first[2:], *words[1:]] if first != "-S" else words[1:]
    else:
        return "" if first.startswith("-") or "=" in first else first
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
        elif word in ("-u", "--unset", "-C", "--chdir"):
            skip_next = True  # its value is the next word
        elif word and not word.startswith("-") and "=" not in word:
            return word
    return ""


def resolve_command(service: str, argv: tuple[str, ...], cwd: Path,
                    env: Mapping[str, str], field: str = "command") -> str:
    """The program to exec, or a SpawnError naming the stack-file `field` it came from
    (`setup`'s program was reported as a problem with `command`)."""
    what_cmd = "command" if field == "command" else f"{field} command"
    if not argv:
        raise SpawnError(f"service {service}: empty command")
    try:
        folder = cwd.is_dir()
        there = folder or cwd.exists()
    except OSError as exc:  # a name over NAME_MAX: "internal error" (adv27 i/10)
        raise SpawnError(f"service {service}: cwd '{cut_long(str(cwd))}': "
                         f"{exc.strerror or exc} (fix `cwd` in the stack file)") from None
    if not folder:
        # A cwd that vanished after `up` is most often the project folder moved or renamed
        # under a running stack: a restart failed on the old path with no word of why.
        # A typo in `cwd` was told only that: "if it did when the stack started, the folder
        # was moved ...: run `hd down`, then `hd up`", a loop that cannot help (adv28 l/8).
        what = "is a file, not a folder" if there else (
            "does not exist: create it, or fix `cwd` in the stack file (if the project "
            "folder was moved or renamed under the running stack: `hd down`, then `hd up` "
            "where it is now)")
        raise SpawnError(f"service {service}: cwd '{cut_long(str(cwd))}' {what}")
    exe = cut_long(argv[0])  # as said: a 1 MB name was quoted whole (adv27 i/11)
    if os.sep in argv[0]:
        path = argv[0] if os.path.isabs(argv[0]) else str(cwd / argv[0])
        if not os.path.exists(path):
            raise SpawnError(f"service {service}: {what_cmd} '{exe}' not found")
        if os.path.isdir(path):  # it has x bits too: exec would fail in the child
            raise SpawnError(f"service {service}: {what_cmd} '{exe}' is a directory, not "
                             f"a program (fix `{field}` in the stack file)")
        if not os.access(path, os.X_OK):
            raise SpawnError(f"service {service}: {what_cmd} '{exe}' is not executable")
        wrong = interpreter_problem(path, env.get("PATH", os.defpath))
        if wrong:
            raise SpawnError(f"service {service}: {what_cmd} '{exe}' {wrong}")
        return path
    found = which(argv[0], env.get("PATH", os.defpath))
    if found is None:
        raise SpawnError(
            f"service {service}: {what_cmd} '{exe}' not found on PATH (install it, or fix "
            f"`{field}` in the stack file)"
        )
    return found


UTF8_FS = sys.getfilesystemencoding().lower().replace("-", "") == "utf8"
"""Under a locale that is not UTF-8 (`LC_ALL=C` with Python's coercion off, an
ISO-8859-1 one), Popen encodes arguments in the locale's encoding."""


def as_exec_bytes(text: str) -> bytes:
    """An argument or variable as exec takes it: in the locale's encoding when it can
    carry the text, else UTF-8, the stack file's own. `echo 'café ready'` could not
    start under LC_ALL=C: "'ascii' codec can't encode character '\\xe9'"."""
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def spawn(service: str, argv: tuple[str, ...], cwd: Path, env: Mapping[str, str],
          place: Placement, field: str = "command") -> subprocess.Popen[bytes]:
    exe = resolve_command(service, argv, cwd, env, field)
    args: list[Any] = place.wrap([exe, *argv[1:]])
    full: dict[Any, Any] = {**env, **place.env}
    if not UTF8_FS:  # the stack file is UTF-8 whatever the locale (adv24 c/15)
        args = [as_exec_bytes(a) for a in args]
        full = {as_exec_bytes(k): as_exec_bytes(v) for k, v in full.items()}
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            bufsize=0,  # read by the loop's transport from the descriptor: no 8 KB buffer
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        code = exc.errno if isinstance(exc, OSError) else None
        if code == errno.E2BIG:  # it named /bin/sh, our cgroup wrapper
            raise SpawnError(f"service {service}: cannot start {argv[0]!r}: its command "
                             "line and environment are too long for the system (E2BIG; "
                             "`getconf ARG_MAX` bytes): shorten them, or pass large values "
                             "in a file") from exc
        if code in SHORT_OF:
            raise SpawnError(f"service {service}: cannot start {argv[0]!r}: "
                             f"{os.strerror(code)} ({shortage(code)})", transient=True) from exc
        raise SpawnError(f"service {service}: cannot start {argv[0]!r}: {exc}") from exc
    assert proc.stdout is not None
    with contextlib.suppress(OSError):
        fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    return proc


PARTIAL_LINE_WAIT_S = 0.5
"""How long part of a line may wait for its line break before it is shown as it is
(LineSplitter.pass_on_partial): long enough that a line written in two pieces stays
one, short enough that a prompt is seen while it waits for an answer."""


class _PipeProtocol(asyncio.Protocol):
    def __init__(self, service: str, hub: LogHub, eof: asyncio.Future[None]) -> None:
        self._service = service
        self._hub = hub
        self._split = LineSplitter()
        self._eof = eof
        self._waiting: asyncio.TimerHandle | None = None
        self._reads = 0
        self._reads_when_armed = 0
        self._line_began = 0
        """The read that began the line now held (counted as _reads is)."""

    def data_received(self, data: bytes) -> None:
        waited = self._split.waiting
        lines = self._split.feed(data)
        self._hub.publish(self._service, data, lines, self._split.completed,
                          self._split.continued)
        if lines or not waited:
            self._line_began = self._reads
        self._reads += 1
        if self._waiting is None and self._split.waiting:
            self._arm()

    def _arm(self) -> None:
        """One timer at a time, checked when it fires: re-arming it on every read cost a
        flood of 200,000 lines a third of its speed (a read mostly ends mid-line)."""
        self._reads_when_armed = self._reads
        self._waiting = asyncio.get_running_loop().call_later(PARTIAL_LINE_WAIT_S,
                                                              self._check_partial)

    def _check_partial(self) -> None:
        """Part of a line has waited a whole PARTIAL_LINE_WAIT_S with no read since, or
        redraws itself (`\r`) and has been under way since before the timer was set:
        pass it on (its bytes are in the log file already, hence raw b""). Reads since,
        each ending a line, mean output is flowing: look again later. A `\r` progress
        bar, whose line never ends, was shown only at the stop (adv45 R/10)."""
        self._waiting = None
        if not self._split.waiting:
            return
        if self._reads != self._reads_when_armed and (
                self._line_began >= self._reads_when_armed or not self._split.redrawn):
            # (a line under way for 0.5 s is shown while more comes only when it redraws
            # itself: a flood's line written in two reads 0.5 s apart on a loaded machine
            # was cut in two in the API, a CI failure of this change's first form)
            self._arm()
            return
        rest = self._split.pass_on_partial()
        if rest:
            self._hub.publish(self._service, b"", rest)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        rest = self._split.flush()
        if rest:
            self._hub.publish(self._service, b"", rest)
            # The raw bytes of the partial line were written with their chunk already;
            # write the newline the file lacks so the next run's notes start cleanly.
        if not self._eof.done():
            self._eof.set_result(None)


class Child:
    """A running child: its output flows to the hub, its exit resolves `exited`."""

    def __init__(self, service: str, proc: subprocess.Popen[bytes], hub: LogHub,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.proc = proc
        self.pid = proc.pid
        self.pgid = proc.pid
        self.exited: asyncio.Future[int] = loop.create_future()
        self.output_closed: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._transport: asyncio.BaseTransport | None = None
        self._pidfd = -1
        try:
            self._pidfd = os.pidfd_open(proc.pid)
            loop.add_reader(self._pidfd, self._on_exit)
        except OSError:
            self._poll_later()
        assert proc.stdout is not None
        self._pipe = proc.stdout

    async def attach_output(self, hub: LogHub) -> None:
        transport, _ = await self._loop.connect_read_pipe(
            lambda: _PipeProtocol(self.service, hub, self.output_closed), self._pipe)
        self._transport = transport

    def ended(self) -> bool:
        """Exited, as of now, from any thread: `exited` waits for the loop to read the
        pidfd, and a status read in between would show a zombie's pid as running. A
        pidfd polls readable once the process has exited (~1 us); a closed one means it
        was handled already."""
        if self.exited.done():
            return True
        fd = self._pidfd
        if fd < 0:
            return False
        poller = select.poll()  # not select(): a daemon may hold descriptors past 1024
        poller.register(fd, select.POLLIN)
        try:
            events = poller.poll(0)
        except OSError:
            return True
        return bool(events)

    def _poll_later(self) -> None:
        # No pidfd (old kernel): fall back to a cheap poll.
        if self.proc.poll() is None:
            self._loop.call_later(0.05, self._poll_later)
        else:
            self._finish()

    def _on_exit(self) -> None:
        if self.proc.poll() is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
            self._finish()

    def _finish(self) -> None:
        if not self.exited.done():
            self.exited.set_result(self.proc.returncode)

    def close_output(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def end_scope(
    child: Child | None,
    scope: Scope,
    stop_timeout: float,
    note: Callable[[str], None],
    stop_signal: int = signal.SIGTERM,
) -> None:
    """`stop_signal` (SIGTERM) to every process of the scope, SIGKILL at the stop
    timeout, return once the scope is empty: the nox-style escalation (wait, terminate,
    wait, kill).

    "Empty" is the scope's word, not the main process's: a service whose main process
    already exited may still have a daemonized grandchild holding its port."""
    loop = asyncio.get_running_loop()
    # The scope first: it reads its members before any of them ends, so a child that
    # left the cgroup and its mark is found while the parent that links it still lives.
    # The main process only when the scope did not have it (it left both): one stop
    # signal each. It got two, and a program that takes a second SIGTERM or SIGINT as
    # "force quit" (Ctrl+C twice) dropped its graceful shutdown on every stop.
    signalled = scope.signal(stop_signal, signal.SIGCONT)
    if child is not None and not child.exited.done() and child.pid not in signalled:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child.pid, stop_signal)
            os.kill(child.pid, signal.SIGCONT)
    deadline = loop.time() + stop_timeout
    name = signal.Signals(stop_signal).name
    while not _gone(child, scope):
        if loop.time() >= deadline:
            note(f"did not stop within stop_timeout={stop_timeout:g}s after {name}: "
                 "sending SIGKILL")
            await kill_scope(child, scope, note=note)
            return
        await _pause(child, min(POLL_S * 2, max(0.0, deadline - loop.time())))


async def kill_scope(child: Child | None, scope: Scope, limit: float = 5.0,
                     note: Callable[[str], None] | None = None) -> None:
    """SIGKILL everything now and wait (bounded) until the scope is empty. Still not
    empty at `limit` (a process that re-forks itself faster than a heavily loaded
    machine reads /proc, out of its cgroup: adv61 F1), the stop ends anyway and `note`
    says what is left: it said "stopped" with a chain still running, and no word."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    # What outlived the first round of SIGKILL: what still runs at the deadline and was
    # among them is beyond signals (given_up); a chain's newest link, born since, is not.
    survivors: dict[int, int] | None = None
    while True:
        scope.kill()  # first, as in end_scope
        if child is not None and not child.exited.done():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child.pid, signal.SIGKILL)
        if _gone(child, scope):
            return
        if loop.time() >= deadline:
            _left_at_deadline(scope, limit, note, survivors or {})
            return
        if survivors is None:
            survivors = ticks_of(scope.members())
        await _pause(child, POLL_S * 2)


_OUTLIVED: dict[int, tuple[int, str]] = {}
"""pid -> (start ticks, service) of what a stop gave up on, which the daemon writes down
as it exits for `hd down` to name (registry/outlived.py)."""
_GIVEN_UP: dict[int, int] = {}
"""pid -> start ticks of those of _OUTLIVED that outlived every SIGKILL of the bound,
the first round's included (given_up)."""


def outlived() -> dict[int, tuple[int, str]]:
    return dict(_OUTLIVED)


def given_up(pids: Iterable[int]) -> set[int]:
    """Those of `pids` that a stop already gave up on and that are still the same
    process: they had SIGKILL and outlived the bound, so they are frozen (a cgroup
    freezer, `docker pause`) or stuck in the kernel, and another round of signals only
    waits its whole bound again. The sweeps after the stops pass them over: `hd down` of
    a stack with one frozen process took 20 s, 7 s of it twice over for one process the
    stop had already named."""
    return {pid for pid in pids
            if pid in _GIVEN_UP and start_ticks(pid) == _GIVEN_UP[pid]}


def _left_at_deadline(scope: Scope, limit: float, note: Callable[[str], None] | None,
                      survivors: Mapping[int, int]) -> None:
    """What a stop that gave up on SIGKILL leaves is kept, and named; or it is said that
    the stop could not tell. A scope with no service's mark holds orphans the daemon
    adopted, whose service is unknown. `survivors`: what outlived the first round."""
    left = scope.members()
    service = scope.mark.partition("/")[2] or "adopted"
    for pid in left:
        ticks = start_ticks(pid)
        if ticks is not None and _OUTLIVED.get(pid, (None,))[0] != ticks:
            _OUTLIVED[pid] = (ticks, service)  # its service's stop knew it best
        if ticks is not None and survivors.get(pid) == ticks:
            _GIVEN_UP[pid] = ticks
    if note is None:
        return
    if left:
        note(f"{len(left)} process(es) still ran {limit:g}s after SIGKILL, pid "
             f"{', '.join(map(str, left))}: they fork successors faster than /proc can "
             "be read, or SIGKILL cannot reach them (frozen, or stuck in the kernel: "
             "`ps -o pid,stat,cmd -p PID`)")
    elif not reading_complete():
        note(f"could not make sure every process ended within {limit:g}s after SIGKILL: "
             "processes were born faster than /proc could be read")


def _gone(child: Child | None, scope: Scope) -> bool:
    return (child is None or child.exited.done()) and scope.empty()


async def _pause(child: Child | None, seconds: float) -> None:
    if child is not None and not child.exited.done():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(child.exited), seconds)
    else:
        await asyncio.sleep(seconds)
