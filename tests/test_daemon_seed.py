"""The daemon's seed (daemon/seed.py): `hd up --detach` forks it at its first line, and
hands it the stack once checked. It must become the daemon when all goes well, and
never outlive the command otherwise: not when `up` is refused, interrupted or killed,
not when the seed itself was stopped or killed first (then `up` forks as before).

`up` is held at the project's lifecycle lock (taken here, as a second terminal's `up`
would hold it), so the seed can be met, signalled and watched while `up` waits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import textwrap
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from stackutil import (
    HD_CLI,
    PY,
    alive,
    free_ports,
    hd,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)
from test_up_interrupted import finish  # `up`'s output once it ends, or killed

from hippo_tasks.daemon.seed import wanted
from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.lifecycle_lock import LifecycleLock
from hippo_tasks.registry.store import Registry


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    dash, port = free_ports(2)
    write_stack(tmp_path, stack_header(dash)
                + toy_service("web", port, readiness={"http": "/healthz"}))
    try:
        yield tmp_path
    finally:
        force_down(Registry(tmp_path))


def held_up(project: Path) -> tuple[LifecycleLock, subprocess.Popen[str], int]:
    """`hd up --detach` waiting for the lock held here, and its seed's pid."""
    lock = LifecycleLock(project)
    lock.acquire("test")
    up = subprocess.Popen([*HD_CLI, "up", "--detach", "--project-root", str(project)],
                          cwd=project, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    try:
        wait_for(lambda: len(psutil.Process(up.pid).children()) == 1, 30,
                 what="the seed forked by `up --detach`")
        (seed,) = psutil.Process(up.pid).children()
        wait_for(lambda: _waiting(up.pid, project), 30,
                 what="`up` waiting for the lifecycle lock")
    except BaseException:
        up.kill()
        up.communicate()
        lock.release()
        raise
    return lock, up, seed.pid


def _waiting(pid: int, project: Path) -> bool:
    """`up` has reached the lock: it holds the lock file open while it waits."""
    lock_file = str(project / ".hippodrome" / "lifecycle.lock")
    try:
        return any(f.path == lock_file for f in psutil.Process(pid).open_files())
    except psutil.Error:
        return False


def test_the_seed_becomes_the_daemon(project: Path) -> None:
    lock, up, seed = held_up(project)
    lock.release()
    out = finish(up)
    assert up.returncode == 0, out
    assert registry(project)["daemon"]["pid"] == seed, "the daemon is not the seed"
    assert hd(project, "status").returncode == 0
    assert hd(project, "down").returncode == 0
    wait_for(lambda: not alive(seed), 10, what="the daemon gone after down")


def test_a_seed_killed_before_the_hand_over_leaves_up_to_fork(project: Path) -> None:
    lock, up, seed = held_up(project)
    os.kill(seed, signal.SIGKILL)
    lock.release()
    out = finish(up)
    assert up.returncode == 0, out
    daemon = registry(project)["daemon"]["pid"]
    assert daemon != seed and alive(daemon)
    assert hd(project, "down").returncode == 0


def test_a_seed_stopped_before_the_hand_over_is_ended_and_up_forks(project: Path) -> None:
    """Handed the lifecycle lock while stopped, the seed held it only in its socket's
    queue, where no one could see who held it: `hd down` would have waited on it."""
    lock, up, seed = held_up(project)
    try:
        os.kill(seed, signal.SIGSTOP)
        lock.release()
        out = finish(up)
        assert up.returncode == 0, out
        assert not alive(seed), "the stopped seed outlived the hand-over"
        daemon = registry(project)["daemon"]["pid"]
        assert daemon != seed and alive(daemon)
        assert hd(project, "down", timeout=60).returncode == 0
    finally:
        if alive(seed):
            os.kill(seed, signal.SIGKILL)
            os.kill(seed, signal.SIGCONT)


def test_ctrl_c_of_up_ends_even_a_stopped_seed(project: Path) -> None:
    """A stopped seed cannot read the end of its socket: `up` ends it by its pid on the
    way out, and reaps it, so it is gone the moment `up` is."""
    lock, up, seed = held_up(project)
    try:
        os.kill(seed, signal.SIGSTOP)
        up.send_signal(signal.SIGINT)
        out = finish(up)
        assert up.returncode == 130, out
        assert not alive(seed), "the seed outlived `up`"
    finally:
        lock.release()
        if alive(seed):
            os.kill(seed, signal.SIGKILL)


def test_kill_9_of_up_ends_its_seed(project: Path) -> None:
    lock, up, seed = held_up(project)
    try:
        up.kill()
        finish(up)
        wait_for(lambda: not alive(seed), 10, what="the seed ending with its `up`")
    finally:
        lock.release()


def test_a_refused_up_leaves_no_seed(project: Path) -> None:
    (project / "hippodrome.toml").write_text("[services.web\n")
    before = {p.pid for p in psutil.process_iter()}
    done = hd(project, "up", "--detach")
    assert done.returncode == 3 and "not valid TOML" in done.stderr, done.stdout + done.stderr
    left = [p for p in psutil.process_iter(["cmdline"]) if p.pid not in before
            and str(project) in " ".join(p.info["cmdline"] or [])]
    assert left == [], left


HAND_OVER_TLS = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from hippo_tasks.daemon import seed
    from hippo_tasks.supervision.ownership import new_token, run_cgroup
    seed.plant(["hd", "up", "--detach"])
    pid = seed._planted.pid
    token = new_token(os.getcwd())
    seed.prime(token)
    base = run_cgroup(token)
    deadline = time.monotonic() + 20
    while base is not None and not base.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    made = base is not None and base.exists()
    got = seed.hand_over([], Path.cwd(), {}, Path("daemon.log"), None, True, None)
    try:
        os.kill(pid, 0)
        print("alive", got, made, base is not None and base.exists())
    except ProcessLookupError:
        print("gone", got, made, base is not None and base.exists())
""")


def test_a_stack_that_needs_tls_is_not_handed_to_the_seed(tmp_path: Path) -> None:
    """The seed kept OpenSSL out before it knew the stack: `up` ends it and forks; the
    cgroup it made for the run when primed is gone with it (or the daemon `up` forks
    then, with the same token, could not make it and ran without cgroups)."""
    out = subprocess.run([PY, "-c", HAND_OVER_TLS], cwd=tmp_path, capture_output=True,
                         stdin=subprocess.DEVNULL, text=True, timeout=60)
    gone, handed, made, left = out.stdout.split()
    assert (gone, handed, left) == ("gone", "None", "False"), out.stdout + out.stderr
    if registry_mode_is_cgroup(tmp_path):
        assert made == "True", "the primed seed made no cgroup: nothing was tested"


def registry_mode_is_cgroup(root: Path) -> bool:
    from hippo_tasks.supervision.ownership import probe_mode

    return probe_mode().mode == "cgroup"


def test_an_up_refused_after_the_prime_leaves_no_cgroup(project: Path) -> None:
    """A busy port, found after `up` primed the seed with the run's token: the seed
    removes the cgroup it made, whenever the refusal comes."""
    from hippo_tasks.supervision.ownership import cgroups_here, project_tag

    parent = cgroups_here()
    if parent is None:
        pytest.skip("no cgroup v2 hierarchy here")
    tag = project_tag(str(project))
    port = registry_port(project)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        done = hd(project, "up", "--detach")
    assert done.returncode == 4, done.stdout + done.stderr
    left = [p.name for p in parent.iterdir() if p.name.startswith(f"hippodrome-{tag}")]
    assert left == [], left


def registry_port(project: Path) -> int:
    return int(tomllib.loads((project / "hippodrome.toml").read_text())["services"]["web"]
               ["port"])


@pytest.mark.parametrize("argv, expected", [
    (["hd", "up", "--detach"], True),
    (["hd", "up", "--profile", "ecom", "-d"], True),
    (["hd", "up", "-qd"], True),
    (["hd", "up"], False),
    (["hd", "up", "--dry-run"], False),
    (["hd", "up", "--profile", "d"], False),
    (["hd", "up", "--", "-d"], False),
    (["hd", "down", "--detach"], False),
    (["hd"], False),
])
def test_which_command_lines_plant_a_seed(argv: list[str], expected: bool) -> None:
    assert wanted(argv) is expected


@pytest.mark.parametrize("cache", ["own", "none"])
def test_the_daemon_leaves_docstrings_out_where_it_can_cache_them(
        project: Path, tmp_path: Path, cache: str) -> None:
    """-OO, its compiled files in a cache folder of the seed's own (written by the first
    daemon, whatever PYTHONDONTWRITEBYTECODE says); where that folder cannot be made
    (XDG_CACHE_HOME under a file), without -OO. Either runs the stack."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = tmp_path / "cache" if cache == "own" else blocker / "cache"
    done = subprocess.run([*HD_CLI, "up", "--detach", "--project-root", str(project)],
                          cwd=project, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "XDG_CACHE_HOME": str(home),
                               "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    daemon = registry(project)["daemon"]["pid"]
    argv = Path(f"/proc/{daemon}/cmdline").read_bytes().split(b"\0")
    if cache == "own":
        assert argv[1:5] == [b"-OO", b"-S", b"-X",
                             f"pycache_prefix={home}/hippodrome/pycache".encode()], argv[:5]
        assert list((home / "hippodrome" / "pycache").rglob("engine.*.opt-2.pyc")), \
            "the daemon's compiled files were not written to its cache"
    else:
        assert argv[1:3] == [b"-S", b"-c"], argv[:4]
    status = hd(project, "status", "--json")
    assert status.returncode == 0 and '"running"' in status.stdout, status.stdout
    assert hd(project, "restart", "-s", "web").returncode == 0
    assert hd(project, "down").returncode == 0


@pytest.mark.parametrize("how", ["SIGTERM to up", "Ctrl+C to the group"])
def test_up_interrupted_at_any_moment_leaves_no_cgroup_nor_process(
        project: Path, how: str) -> None:
    """adv50 F/1, F/2: interrupted between the prime and its daemon's guard, `up` left
    the run's cgroup (the seed, or the daemon it became, ended as it made it). Several
    moments across the start, each once. A stack that came up before the signal (and
    is left running if `up` died of it after saying ready) is its own: its cgroup is
    not a leftover, and it is stopped before the next try."""
    from hippo_tasks.supervision.ownership import cgroups_here, project_tag

    parent = cgroups_here()
    if parent is None:
        pytest.skip("no cgroup v2 hierarchy here")
    tag = project_tag(str(project))
    left: list[str] = []
    for delay in (0.06, 0.09, 0.11, 0.13, 0.15, 0.18, 0.22, 0.3):
        up = subprocess.Popen([*HD_CLI, "up", "--detach", "--project-root", str(project)],
                              cwd=project, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ, "NO_COLOR": "1"})
        time.sleep(delay)
        seen: list[int] = []
        with contextlib.suppress(psutil.Error):
            seen = [c.pid for c in psutil.Process(up.pid).children()]
        if how == "SIGTERM to up":
            up.send_signal(signal.SIGTERM)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(up.pid, signal.SIGINT)
        up.wait(60)

        def daemon_now() -> tuple[int | None, str | None]:
            """The stack's daemon and token, if one runs: a seed handed the stack just
            before the signal writes its registry a moment after `up` ended."""
            written = (project / ".hippodrome" / "registry.json").exists()
            daemon = (registry(project).get("daemon") if written else None) or {}
            pid = daemon.get("pid") if isinstance(daemon.get("pid"), int) else None
            return (pid, daemon.get("token")) if pid is not None and alive(pid) \
                else (None, None)

        try:
            wait_for(lambda seen=seen: not any(alive(p) for p in seen
                                               if p != daemon_now()[0]),
                     10, what=f"the seed gone (signal at {delay}s)")
        except AssertionError:  # what it is doing, for whoever reads the failure
            info: dict[int, object] = {}
            for p in seen:
                with contextlib.suppress(psutil.Error, OSError):
                    proc = psutil.Process(p)
                    info[p] = (proc.status(), proc.ppid(), proc.cmdline()[:4],
                               Path(f"/proc/{p}/wchan").read_text(), proc.num_threads())
            raise AssertionError(f"seeds left after the signal at {delay}s: {info}") \
                from None
        pid, running = daemon_now()
        left += [f"{p.name} ({delay}s)" for p in parent.iterdir()
                 if p.name.startswith(f"hippodrome-{tag}") and p.name !=
                 f"hippodrome-{running}"]
        if running and pid is not None:  # the stack it started, ended properly (a `down`
            hd(project, "down", timeout=60)  # with none would sweep what is counted here)
            wait_for(lambda pid=pid: not alive(pid), 10, what="the daemon gone")
    assert left == [], left


def _session(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def test_a_daemon_killed_before_its_first_word_is_said_so(project: Path) -> None:
    """adv50 F/3: the seed killed the moment it took the hand-over: `up` said "killed by
    signal 9 ... (full output: daemon.log)", whose lines were an earlier run's."""
    dash, port = free_ports(2)  # a service slow to be ready: `up` is surely waiting
    write_stack(project, stack_header(dash) + toy_service("web", port, "--delay", "5",
                                                          readiness={"http": "/healthz"}))
    log = project / ".hippodrome" / "daemon.log"
    lock, up, seed = held_up(project)
    before = log.stat().st_size if log.exists() else 0
    lock.release()
    # the daemon once a session leader: past the hand-over, which it had acknowledged
    # (killed before that, `up` forks the daemon instead, and the stack comes up)
    wait_for(lambda: _session(seed) == seed or up.poll() is not None, 30,
             what="the seed becoming the daemon", every=0.001)
    os.kill(seed, signal.SIGKILL)
    out = finish(up)
    assert up.returncode == 1 and "killed by signal 9" in out, out
    if (log.stat().st_size if log.exists() else 0) == before:
        assert "(it wrote nothing to its log in this run)" in out, out
    else:
        assert "its output in this run:" in out, out
