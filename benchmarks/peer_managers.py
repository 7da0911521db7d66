"""Hippodrome and its peers driven through their own command lines, for bench_peers.py.

Every manager runs the same toy services (tests/toys/toy.py: sleep 0.3 s, then answer
HTTP on a loopback port) from the same interpreter, each writing its PID to a marker
file in the project folder, so a service's processes are known whoever started them.
A manager knows only its own commands; bench_peers.py times them from outside.

Clean-up never trusts the manager: every process whose command line names the project
folder (each toy names its marker there, each peer its configuration file) is killed by
PID, as is the process group the benchmark created for the launch command.
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import ClassVar

import psutil
from stackutil import PY, TOY, alive, registry, stack_header, toy_service

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

DELAY = "0.3"
"""Seconds each toy sleeps before listening (the issue's workload)."""


def run(argv: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A command the way a user types it; its output is kept for the error it may raise."""
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "NO_COLOR": "1"}, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{argv} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


class Manager:
    """One manager over one project folder with `len(ports)` toy services."""

    name: ClassVar[str]

    def __init__(self, bindir: Path, root: Path, ports: list[int], own_ports: list[int]):
        self.bin, self.root, self.ports, self.own_ports = bindir, root, ports, own_ports
        self.names = [f"svc{i:02d}" for i in range(len(ports))]
        self.launcher: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, float] = {}
        """Every manager process met so far -> its start time: killed at clean-up even
        once orphaned (a helper whose command line does not name the project folder)."""
        (root / "markers").mkdir(parents=True, exist_ok=True)
        self.write()

    def toy_argv(self, i: int) -> list[str]:
        return [PY, TOY, "--port", str(self.ports[i]), "--delay", DELAY,
                "--marker", str(self.root / "markers" / self.names[i])]

    def write(self) -> None:
        raise NotImplementedError

    def launch_argv(self) -> list[str]:
        raise NotImplementedError

    def launch(self) -> None:
        """Start the user's launch command, in a process group of its own (ours to kill)."""
        log = (self.root / "launch.log").open("ab")
        self.launcher = subprocess.Popen(self.launch_argv(), cwd=self.root, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        log.close()

    def restart_argv(self, service: str) -> list[str] | None:
        """The command that restarts one service; None when the manager has none."""
        return None

    def status_argv(self) -> list[str] | None:
        return None

    def stop(self) -> None:
        raise NotImplementedError

    def roots(self) -> list[int]:
        """The manager's own long-lived processes (what a user would call 'the manager')."""
        raise NotImplementedError

    def toy_pids(self, service: str | None = None) -> list[int]:
        """Every PID a toy (of `service`, or of all) wrote at its start, oldest first."""
        pids = []
        for name in [service] if service else self.names:
            with suppress(FileNotFoundError):
                text = (self.root / "markers" / name).read_text()
                pids += [int(line.split()[1]) for line in text.splitlines() if line]
        return pids

    def manager_pids(self) -> list[int]:
        """roots() and their descendants that are not toys (shells, helper processes)."""
        toys = set(self.toy_pids())
        found = set(self.roots())
        for pid in list(found):
            with suppress(psutil.Error):
                found.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        pids = sorted(p for p in found - toys if alive(p))
        for pid in pids:
            with suppress(psutil.Error):
                self.seen[pid] = psutil.Process(pid).create_time()
        return pids

    def kill9(self) -> None:
        os.kill(self.roots()[0], signal.SIGKILL)

    def cleanup(self) -> None:
        """SIGKILL everything this project started, whatever state the manager is in."""
        with suppress(Exception):
            self.manager_pids()
        for pid, created in self.seen.items():
            with suppress(psutil.Error):
                if psutil.Process(pid).create_time() == created:
                    os.kill(pid, signal.SIGKILL)
        if self.launcher is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.launcher.pid, signal.SIGKILL)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if str(self.root) in " ".join(proc.info["cmdline"] or []) and proc.pid != os.getpid():
                with suppress(ProcessLookupError, PermissionError):
                    os.kill(proc.pid, signal.SIGKILL)
        if self.launcher is not None:
            with suppress(subprocess.TimeoutExpired):
                self.launcher.wait(5)


class Hippodrome(Manager):
    name = "hippodrome"

    def write(self) -> None:
        text = stack_header(self.own_ports[0])
        for i, name in enumerate(self.names):
            text += toy_service(name, self.ports[i], *self.toy_argv(i)[4:],
                                readiness={"http": "/healthz"})
        (self.root / "hippodrome.toml").write_text(text)

    def hd(self) -> str:
        return str(self.bin / "hd")

    def launch_argv(self) -> list[str]:
        return [self.hd(), "up", "--detach"]

    def restart_argv(self, service: str) -> list[str]:
        return [self.hd(), "restart", "-s", service]

    def status_argv(self) -> list[str]:
        return [self.hd(), "status"]

    def stop(self) -> None:
        run([self.hd(), "down"], self.root)

    def roots(self) -> list[int]:
        daemon = registry(self.root)["daemon"]
        return [daemon["pid"], daemon["guard_pid"]]

    def cleanup(self) -> None:
        with suppress(Exception):
            force_down(Registry(self.root))
        super().cleanup()


class Honcho(Manager):
    """Foreground only: stopped the way a terminal does it, SIGINT to its process group."""

    name = "honcho"

    def write(self) -> None:
        lines = [f"{name}: {' '.join(self.toy_argv(i))}" for i, name in enumerate(self.names)]
        (self.root / "Procfile").write_text("\n".join(lines) + "\n")

    def launch_argv(self) -> list[str]:
        return [str(self.bin / "honcho"), "start", "-f", str(self.root / "Procfile")]

    def stop(self) -> None:
        assert self.launcher is not None
        os.killpg(self.launcher.pid, signal.SIGINT)

    def roots(self) -> list[int]:
        assert self.launcher is not None
        return [self.launcher.pid]


class Supervisord(Manager):
    """startsecs = 0: `supervisorctl restart` returns at the spawn, not one second later
    (the default), so the figure is supervisord's own, timed to the port answering."""

    name = "supervisord"

    def conf(self) -> Path:
        return self.root / "supervisord.conf"

    def write(self) -> None:
        r = self.root
        (r / "logs").mkdir(exist_ok=True)
        text = (f"[unix_http_server]\nfile = {r}/supervisor.sock\n\n"
                f"[supervisord]\nlogfile = {r}/supervisord.log\npidfile = {r}/supervisord.pid\n"
                f"childlogdir = {r}/logs\n\n"
                "[rpcinterface:supervisor]\n"
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:"
                "make_main_rpcinterface\n\n"
                f"[supervisorctl]\nserverurl = unix://{r}/supervisor.sock\n\n")
        for i, name in enumerate(self.names):
            text += (f"[program:{name}]\ncommand = {' '.join(self.toy_argv(i))}\n"
                     f"startsecs = 0\nredirect_stderr = true\n"
                     f"stdout_logfile = {r}/logs/{name}.log\n\n")
        self.conf().write_text(text)

    def launch_argv(self) -> list[str]:
        return [str(self.bin / "supervisord"), "-c", str(self.conf())]

    def ctl(self, *args: str) -> list[str]:
        return [str(self.bin / "supervisorctl"), "-c", str(self.conf()), *args]

    def restart_argv(self, service: str) -> list[str]:
        return self.ctl("restart", service)

    def status_argv(self) -> list[str]:
        return self.ctl("status")

    def stop(self) -> None:
        run(self.ctl("shutdown"), self.root)

    def roots(self) -> list[int]:
        return [int((self.root / "supervisord.pid").read_text())]


class Circus(Manager):
    """circusd --daemon with its ZeroMQ endpoints on loopback ports of their own, and
    circus's defaults otherwise: no stats_endpoint (naming one switches circusd-stats
    on, a second process), no multicast discovery (its default is a UDP group)."""

    name = "circus"

    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.own_ports[0]}"

    def write(self) -> None:
        text = (f"[circus]\nendpoint = {self.endpoint()}\n"
                f"pubsub_endpoint = tcp://127.0.0.1:{self.own_ports[1]}\n"
                "multicast_endpoint =\n\n")
        for i, name in enumerate(self.names):
            text += f"[watcher:{name}]\ncmd = {' '.join(self.toy_argv(i))}\nnumprocesses = 1\n\n"
        (self.root / "circus.ini").write_text(text)

    def launch_argv(self) -> list[str]:
        return [str(self.bin / "circusd"), "--daemon", "--pidfile", str(self.root / "circus.pid"),
                "--log-output", str(self.root / "circusd.log"), str(self.root / "circus.ini")]

    def ctl(self, *args: str) -> list[str]:
        return [str(self.bin / "circusctl"), "--endpoint", self.endpoint(), *args]

    def restart_argv(self, service: str) -> list[str]:
        return self.ctl("restart", service)

    def status_argv(self) -> list[str]:
        return self.ctl("status")

    def stop(self) -> None:
        run(self.ctl("quit"), self.root)

    def roots(self) -> list[int]:
        return [int((self.root / "circus.pid").read_text())]


MANAGERS: list[type[Manager]] = [Hippodrome, Honcho, Supervisord, Circus]
OWN_PORTS = 2
"""Loopback ports a manager may need for itself (dashboard; circus's two endpoints)."""
