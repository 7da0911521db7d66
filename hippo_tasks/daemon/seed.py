"""The detached daemon's process, started at the first line of `hd up --detach`.

`up --detach` reads and checks the stack, then forks the daemon (forked.py), which
then imports asyncio, the engine and the HTTP server, ~50 ms before it can spawn the
first service, and keeps for the stack's life every module the CLI had loaded (the
stack file's parser, the task runner): ~1 MB more than the daemon needs.

The seed is a new interpreter, `python -OO -S -X pycache_prefix=... -c BOOT N PATH...`,
started before `hd` imports anything, that loads the daemon's modules on the other core
while `up` reads the stack. `-OO` leaves out docstrings (0.8 MB of a daemon with this
many; its compiled files in a cache of its own, `compiled_cache`), `-S` the
site-packages' .pth files (5 ms of its start; it is given `hd`'s search path instead).
`up` primes it with the run's token as soon as it has one, so it makes the run's
cgroup meanwhile (the ~20 ms a first service waited for), then hands it what it would
give a fork: the checked plan, the environment, the log and the lifecycle lock, over a
socket pair. The seed becomes the daemon by the same
`forked.become_daemon`.

The seed is only an optimisation. Anything that makes it unusable (no fork, the seed
gone or stopped, a stack needing TLS, which the seed kept out) leaves `up` to fork as
before. An `up` that ends without handing it over (a bad stack file, a busy port,
Ctrl+C) ends it on the way out (`drop`); an `up` killed outright leaves it the end of
its socket, on which it removes the cgroup it made and exits.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import socket
    from pathlib import Path

    from hippo_tasks.daemon.forked import ForkedDaemon
    from hippo_tasks.model.plan import StackPlan
    from hippo_tasks.supervision.ownership import OwnershipSoon

EXEC_ENV = "HIPPODROME_DAEMON_EXEC"
"""Set to 1: the daemon is a new interpreter, never a fork (forked.fork_wanted), so never
a seed either. Here, not in forked.py, whose imports (subprocess, threading) would cost
8 ms before the seed's fork."""
TAKEN_WITHIN_S = 2.0
"""How long the seed may take to say it has the hand-over. A seed stopped (SIGSTOP)
before it took it held the lifecycle lock only in its socket's queue, where `hd down`
could not see who held it (and waited on it): it is ended, and `up` forks instead."""
GONE_WITHIN_S = 1.0
"""How long `drop` waits for a seed to remove its cgroup and exit before it kills it."""
FEW_DESCRIPTORS = 64
"""Below this open-files limit, no seed: `up` itself needs every descriptor it has."""
HEADER = 9
"""A frame's kind (PRIME, HAND_OVER) and its length, before its payload."""
PRIME, HAND_OVER = b"P", b"H"
PACKAGES = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
"""The folder holding hippo_tasks and hippo_contract, added to the seed's path where
`hd`'s has it through an import hook (an editable install)."""


class Seed:
    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.token: str | None = None
        """The run token it was primed with: its cgroup's name, if it made one."""


_planted: Seed | None = None


def wanted(argv: list[str]) -> bool:
    """`hd up --detach` (or `-d`, or `-d` among other short flags): a guess from the
    words alone, before any parsing. A wrong yes costs one seed that exits at once; a
    wrong no, the old path."""
    if len(argv) < 3 or argv[1] != "up":
        return False
    for word in argv[2:]:
        if word == "--":
            return False
        if word == "--detach" or (word.startswith("-") and not word.startswith("--")
                                  and "d" in word[1:] and word[1:].isalpha()):
            return True
    return False


def plant(argv: list[str]) -> None:
    """Start the seed where it can help and is safe: stdio open (a socket given 0-2
    would carry `up`'s own output), fork allowed."""
    global _planted
    if _planted is not None or not hasattr(os, "fork") or not wanted(argv):
        return
    if os.environ.get(EXEC_ENV, "") == "1":
        return
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
        if os.sysconf("SC_OPEN_MAX") < FEW_DESCRIPTORS:
            return  # `ulimit -n 8`: the socket's one would be the one `up` runs out of
    except (OSError, ValueError):
        return
    import socket

    try:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return
    try:
        pid = os.fork()
    except OSError:  # the process limit: `up` meets it again, and says so, at its fork
        parent.close()
        child.close()
        return
    if pid == 0:
        parent.close()
        _exec_seed(child)  # never returns
    child.close()
    _planted = Seed(pid, parent)


BOOT = ("import sys; sys.path[:] = sys.argv[2:]; from hippo_tasks.daemon import "
        "keep_openssl_out; keep_openssl_out(); from hippo_tasks.daemon.seed import grow; "
        "grow(int(sys.argv[1]))")
"""The seed's program: `hd`'s own module search path (given as arguments: `-S` reads
no site-packages, and the daemon's rarer paths import third-party modules, psutil to
name a port's holder, found where `hd` found them, a PEX's folders too), OpenSSL kept
out, then `grow`."""


def _exec_seed(sock: socket.socket) -> NoReturn:
    """In the forked child: off the terminal, then the seed's interpreter, holding the
    socket and nothing else of `up`'s."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # never `up`'s pipe: `out=$(hd up -d)` waits for its end
            os.dup2(null, fd)
        os.close(null)
        os.set_inheritable(sock.fileno(), True)
        # Ctrl+C reaches `up`'s whole process group: `up` ends its seed then, cleanly;
        # a seed killed by it as it made the run's cgroup left it (adv50 F/1, F/10).
        # Ignored across exec; `grow` sets what `up` had once it is handed over.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        paths = [*sys.path, *([] if PACKAGES in sys.path else [PACKAGES])]
        flags, env = ["-S"], dict(os.environ)
        cache = compiled_cache()
        if cache is not None:
            flags = ["-OO", "-S", "-X", f"pycache_prefix={cache}"]
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # its own cache: written once
        os.execve(sys.executable, [sys.executable, *flags, "-c", BOOT,
                                   str(sock.fileno()), *paths], env)
    finally:
        os._exit(127)


def compiled_cache() -> str | None:
    """Where the seed keeps its `-OO` compiled files: a folder of this user's cache,
    since the standard library's own folders hold none (Debian's Python ships only the
    plain ones) and are not the user's to write. The first daemon writes them, about
    half a second once; None where the folder cannot be made or written (a read-only
    home): the seed then runs without -OO, on the plain compiled files."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".cache")
    cache = os.path.join(home, "hippodrome", "pycache")
    try:
        os.makedirs(cache, mode=0o700, exist_ok=True)
    except (OSError, ValueError):
        return None
    return cache if os.path.isabs(cache) and os.access(cache, os.W_OK) else None


def grow(fd: int) -> NoReturn:
    """The seed (BOOT): loads the daemon's modules, then becomes the daemon with what
    `up` hands over, or exits at the end of the socket."""
    import socket
    import subprocess  # noqa: F401  # here, not first in the cgroup's thread (below)
    import threading

    # Imported before the listener's thread can act on the prime: two threads importing
    # the same modules at once may be handed each other's half-made module.
    from hippo_tasks.supervision.ownership import OwnershipSoon  # noqa: F401

    listener = _Listener(socket.socket(fileno=fd))
    code = 70
    try:
        # first: the prime is acted on, and the end of the socket seen, while it imports
        threading.Thread(target=listener.run, name="hd-seed", daemon=True).start()
        import hippo_tasks.daemon.main  # noqa: F401  # what the seed is for

        listener.handed.wait()
        # The C unpickler alone: pickle.py and its pure-Python pickler cost the daemon
        # 0.38 MB for its whole life, _pickle 0.16 MB.
        from _pickle import loads

        argv, cwd, env, mask, int_handler, plan = loads(listener.message)
        out, keep = listener.fds[0], (listener.fds[1] if len(listener.fds) > 1 else None)
        if keep is not None:  # the lock's number here, not the one it had in `up`
            argv[argv.index("--lock-fd") + 1] = str(keep)
        os.umask(mask)
        # as in `up`: Python's own handler, or ignored (kept so across exec)
        signal.signal(signal.SIGINT, signal.default_int_handler if int_handler
                      else signal.SIG_IGN)
        from hippo_tasks.daemon.forked import become_daemon
        from hippo_tasks.supervision.ownership import RUN_TOKEN_ENV

        soon = listener.soon
        if soon is not None and env.get(RUN_TOKEN_ENV) != soon.token:
            soon.discard()  # primed for another run than the one handed over
            soon = None
        if soon is not None:
            env = {k: v for k, v in env.items() if k != RUN_TOKEN_ENV}  # as taken
        become_daemon(argv, cwd, env, out, keep, False, plan, soon)  # closes the socket
    except BaseException:
        if listener.soon is not None:
            listener.soon.discard()
    os._exit(code)


class _Listener:
    """The seed's reader of its socket, in a thread of its own, so the prime is acted on
    while the main thread still imports, and the end of the socket whenever it comes."""

    def __init__(self, sock: socket.socket) -> None:
        import threading

        self.sock = sock
        self.handed = threading.Event()
        self.soon: OwnershipSoon | None = None
        self.message = b""
        self.fds: list[int] = []

    def run(self) -> None:
        from hippo_tasks.supervision.ownership import OwnershipSoon

        try:
            while True:
                frame = _receive(self.sock)
                if frame is None:
                    break
                kind, payload, fds = frame
                if kind == PRIME and self.soon is None:
                    self.soon = OwnershipSoon(payload.decode("utf-8", "surrogateescape"))
                elif kind == HAND_OVER:
                    self.message, self.fds = payload, fds
                    self.sock.sendall(b"\1")  # taken: the lock is where `down` sees it
                    # The number only from here: become_daemon closes it with every other,
                    # and a socket object still owning it would close a reuse of it.
                    self.sock.detach()
                    self.handed.set()
                    return
        except BaseException:  # noqa: S110  # any failure: as the end of the socket
            pass
        if self.soon is not None:  # `up` ended without handing over: nothing stays
            self.soon.discard()
        os._exit(0)


def _receive(sock: socket.socket) -> tuple[bytes, bytes, list[int]] | None:
    """One frame (kind, payload, descriptors), or None at the end of the socket."""
    import socket as socket_module

    fds: list[int] = []
    head = b""
    while len(head) < HEADER:
        data, ancillary, _flags, _addr = sock.recvmsg(
            HEADER - len(head), socket_module.CMSG_SPACE(2 * 4))
        for level, kind, raw in ancillary:
            if level == socket_module.SOL_SOCKET and kind == socket_module.SCM_RIGHTS:
                fds += [int.from_bytes(raw[i:i + 4], sys.byteorder)
                        for i in range(0, len(raw) - len(raw) % 4, 4)]
        if not data:
            return None
        head += data
    size = int.from_bytes(head[1:], "big")
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(min(1 << 20, size - len(body)))
        if not chunk:
            return None
        body += chunk
    return head[:1], bytes(body), fds


def _frame(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(HEADER - 1, "big") + payload


def prime(token: str) -> None:
    """The run's token, as soon as `up` has made it: the seed makes the run's cgroup
    while `up` goes on checking the stack. Said once; a seed gone is `hand_over`'s to
    find."""
    import contextlib

    if _planted is not None and _planted.token is None:
        _planted.token = token
        with contextlib.suppress(OSError):
            _planted.sock.sendall(_frame(PRIME, token.encode("utf-8", "surrogateescape")))


def hand_over(argv: list[str], cwd: Path, env: dict[str, str], log: Path,
              keep_fd: int | None, tls: bool, plan: StackPlan) -> ForkedDaemon | None:
    """The planted seed made the daemon with these, as `forked.fork_daemon` would; None
    where there is no usable seed (the caller forks as before). The log is opened here,
    so one that cannot be opened is the caller's OSError, as with a fork."""
    global _planted
    seed, _planted = _planted, None
    if seed is None:
        return None
    if tls:
        _end(seed, GONE_WITHIN_S)
        return None
    import pickle

    from hippo_tasks.daemon.forked import ForkedDaemon, open_daemon_log

    try:
        out = open_daemon_log(log)  # its OSError is the caller's, as with a fork
    except BaseException:
        _end(seed)
        raise
    try:
        mask = os.umask(0)
        os.umask(mask)
        ours = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        frame = _frame(HAND_OVER, pickle.dumps((argv, cwd, env, mask, ours, plan),
                                               protocol=pickle.HIGHEST_PROTOCOL))
        fds = [out] if keep_fd is None else [out, keep_fd]
        import socket

        seed.sock.settimeout(TAKEN_WITHIN_S)
        seed.sock.sendmsg([frame[:HEADER]],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                            b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))])
        seed.sock.sendall(frame[HEADER:])
        if seed.sock.recv(1) != b"\1":
            raise ConnectionResetError
    except OSError:  # the seed gone (killed, out of memory) or stopped: fork as before
        _end(seed)
        return None
    finally:
        os.close(out)
    seed.sock.close()
    return ForkedDaemon(seed.pid)


def drop() -> None:
    """End a seed that was never handed over (`up` refused, failed or was interrupted),
    so no process outlives the command: told by the end of its socket, so it removes
    the cgroup it may have made, then killed if it has not gone within GONE_WITHIN_S
    (stopped), its cgroup removed for it. Ours by PID, unreaped, so never a
    stranger's. Also from `hd`'s first Ctrl+C handler (entry.py)."""
    global _planted
    seed, _planted = _planted, None
    if seed is not None:  # not primed: it made nothing to remove, and is killed at once
        _end(seed, GONE_WITHIN_S if seed.token is not None else 0.0)


def _end(seed: Seed, grace: float = 0.0) -> None:
    seed.sock.close()
    try:
        if grace > 0:
            import time

            deadline = time.monotonic() + grace
            try:
                while time.monotonic() < deadline:
                    if os.waitpid(seed.pid, os.WNOHANG)[0]:
                        return  # gone by itself, its cgroup removed
                    time.sleep(0.002)
            except KeyboardInterrupt:  # Ctrl+C again: at once (adv50 F/6)
                pass
        os.kill(seed.pid, signal.SIGKILL)
        os.waitpid(seed.pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    if seed.token is not None:  # killed: the cgroup it may have made is ours to remove
        from hippo_tasks.supervision.ownership import remove_base

        remove_base(seed.token)
