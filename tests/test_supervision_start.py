"""Start-up: dependency order, parallelism, every readiness kind, blocking failures."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from harness import Harness, run
from stackutil import PY, free_ports, stack_header, toy_service

from hippo_tasks.supervision.states import State


def starts(marker: Path) -> list[tuple[int, float]]:
    return [(int(p), float(t)) for _, p, t in
            (line.split() for line in marker.read_text().splitlines())]


def test_dependency_order_and_parallel_independents(project: Path) -> None:
    a, b, c = free_ports(3)
    ma, mb, mc = (project / f"{n}.marker" for n in "abc")
    text = (toy_service("a", a, "--delay", "0.4", "--marker", str(ma),
                        readiness={"http": "/healthz"})
            + toy_service("b", b, "--delay", "0.4", "--marker", str(mb))
            + toy_service("c", c, "--marker", str(mc), depends_on=["a", "b"]))

    async def scenario(h: Harness) -> None:
        began = time.time()
        failure = await h.stack.start_and_wait()
        assert failure is None
        ready_at = {t.service: t.at for t in h.transitions if t.new == State.RUNNING}
        # a and b start together; c only after both are ready.
        assert abs(starts(ma)[0][1] - starts(mb)[0][1]) < 0.3
        assert starts(mc)[0][1] >= max(ready_at["a"], ready_at["b"])
        assert all(h.stack.get(n).state == State.RUNNING for n in "abc")
        assert time.time() - began < 10

    run(project, text, scenario)


def test_log_and_none_and_tcp_readiness(project: Path) -> None:
    (p,) = free_ports(1)
    text = (toy_service("logger", None, "--delay", "0.2", "--say", "READY to serve",
                        readiness={"log": "READY to \\w+"})
            + toy_service("plain", None, readiness="none")
            + toy_service("tcp", p, "--delay", "0.2", readiness={"tcp": True},
                          depends_on=["logger"]))

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        for name in ("logger", "plain", "tcp"):
            assert h.stack.get(name).state == State.RUNNING, h.states(name)
        assert "READY to serve" in h.lines("logger")

    run(project, text, scenario)


def test_log_readiness_matches_a_line_written_in_two_parts_seconds_apart(
        project: Path) -> None:
    """`printf 'server on 8080: '; sleep 1; echo READY`: the first part was passed on as
    a line of its own after 0.5 s, the matcher saw only the pieces, and the service
    failed its start_timeout while its log file held the line (adv24 a/3)."""
    text = ('[services.web]\nshell = "printf \'server on 8080: \'; sleep 1; echo READY; '
            'exec sleep 600"\nreadiness = { log = "server on 8080: READY" }\n'
            'start_timeout = 5\n')

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        assert h.stack.get("web").state == State.RUNNING, h.states("web")
        assert h.lines("web")[:2] == ["server on 8080: ", "READY"], h.lines("web")

    run(project, text, scenario)


@pytest.mark.parametrize("pattern", ["READY 12345 now", "READY \\\\d+ now"])
@pytest.mark.parametrize("before", [65526, 65532, 65535, 131070])
def test_log_readiness_matches_across_a_long_lines_pieces(project: Path, before: int,
                                                          pattern: str) -> None:
    """A line over 64 KiB reaches the matcher in pieces: `READY` across the cut at 64 KiB
    was never matched, the blocking service failed its start_timeout, and the log file
    held the line (adv45 R/14). Nor, once that was fixed, by a pattern with an open-ended
    repeat: it looks at 4,096 characters of a text, and the text joined across the cut
    was the 4,096 before it and the 4,096 after (adv47 G/3)."""
    text = (f'[services.long]\nshell = "python3 -c \'print(\\"a\\" * {before} + '
            '\\"READY 12345 now\\", flush=True)\'; exec sleep 600"\n'
            f'readiness = {{ log = "{pattern}" }}\nstart_timeout = 5\n')

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        assert h.stack.get("long").state == State.RUNNING, h.states("long")

    run(project, text, scenario)


@pytest.mark.parametrize("length", [65533, 65536, 131072])
def test_log_readiness_never_joins_two_lines(project: Path, length: int) -> None:
    """A whole line as long as a cut piece (65,533 to 65,536 bytes, or a line whose last
    piece is) ending in `REA`, then a line `DY`: joined across what was taken for a cut,
    they made the service ready on READY, which is in no line (adv48 A/2)."""
    code = (f"import sys, time; sys.stdout.write('a' * {length - 3} + 'REA\\\\n'); "
            "sys.stdout.flush(); time.sleep(0.3); print('DY', flush=True); time.sleep(600)")
    text = (f'[services.two]\ncommand = ["{PY}", "-c", "{code}"]\n'
            'readiness = { log = "READY" }\nstart_timeout = 2\nblocking = false\n'
            'auto_restart = false\n')

    async def scenario(h: Harness) -> None:
        await h.stack.start_and_wait()
        assert h.stack.get("two").state == State.FAILED, h.states("two")
        assert "not ready within start_timeout" in h.stack.get("two").reason
        lines = h.lines("two")
        assert "DY" in lines and all("READY" not in ln for ln in lines), [len(x) for x in lines]

    run(project, text, scenario)


def test_log_readiness_matches_a_line_as_the_terminal_shows_it(project: Path) -> None:
    """A green READY, or READY after a `\r` progress bar: every view showed READY, and
    `^READY$` never matched the bytes (adv24 a/10)."""
    text = ('[services.green]\nshell = "printf \'\\\\033[32mREADY\\\\033[0m\\\\n\'; '
            'exec sleep 600"\nreadiness = { log = "^READY$" }\nstart_timeout = 5\n'
            '[services.bar]\nshell = "printf \'loading 10%%\\\\rloading 100%%\\\\rREADY'
            '\\\\n\'; exec sleep 600"\nreadiness = { log = "^READY$" }\nstart_timeout = 5\n'
            '[services.crlf]\nshell = "printf \'READY\\\\r\\\\n\'; exec sleep 600"\n'
            'readiness = { log = "^READY$" }\nstart_timeout = 5\n'  # CRLF (adv25 d/2)
            '[services.erase]\nshell = "printf \'50%%\\\\r\\\\033[2KREADY\\\\033[K'
            '\\\\033(B\\\\033[m\\\\n\'; exec sleep 600"\n'  # erase, tput sgr0 (d/14)
            'readiness = { log = "^READY$" }\nstart_timeout = 5\n')

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        for name in ("green", "bar", "crlf", "erase"):
            assert h.stack.get(name).state == State.RUNNING, h.states(name)
        assert "\x1b[32mREADY" in h.lines("green")[0], h.lines("green")

    run(project, text, scenario)


def test_start_timeout_fails_blocking_service_with_last_lines(project: Path) -> None:
    (p,) = free_ports(1)
    text = toy_service("slow", p, "--delay", "30", "--lines", "25",
                       readiness={"http": "/healthz"}, start_timeout=0.8)

    async def scenario(h: Harness) -> None:
        failure = await h.stack.start_and_wait()
        assert failure is not None and failure.service == "slow"
        assert "start_timeout=0.8s" in failure.reason
        assert len(failure.last_lines) == 20 and failure.last_lines[-1] == "line 24"
        assert failure.log_path and failure.log_path.endswith("slow.log")

    run(project, text, scenario)


def test_crash_before_ready_is_failed_not_retried(project: Path) -> None:
    (p,) = free_ports(1)
    text = toy_service("crash", p, "--exit", "42", readiness={"http": "/healthz"})

    async def scenario(h: Harness) -> None:
        failure = await h.stack.start_and_wait()
        assert failure is not None and "exited with code 42" in failure.reason
        assert "exiting with 42" in failure.last_lines
        assert h.stack.get("crash").restarts == 0

    run(project, text, scenario)


def test_non_blocking_failure_lets_the_rest_go_on(project: Path) -> None:
    a, b = free_ports(2)
    text = (toy_service("optional", a, "--exit", "3", blocking=False)
            + toy_service("main", b))

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        assert h.stack.get("optional").state == State.FAILED
        assert h.stack.get("main").state == State.RUNNING

    run(project, text, scenario)


def test_dependant_of_failed_dependency_fails_with_reason(project: Path) -> None:
    a, b = free_ports(2)
    text = (toy_service("dep", a, "--exit", "3", blocking=False)
            + toy_service("user", b, depends_on=["dep"], blocking=False))

    async def scenario(h: Harness) -> None:
        await h.stack.start_and_wait()
        user = h.stack.get("user")
        assert user.state == State.FAILED and "dependency 'dep'" in user.reason

    run(project, text, scenario)


def test_missing_command_and_cwd_are_clear(project: Path) -> None:
    (project / "afile").write_text("")
    text = ('[services.ghost]\ncommand = ["no-such-binary-xyz"]\n'
            '[services.lost]\ncommand = ["' + PY + '"]\ncwd = "nowhere"\nblocking = false\n'
            '[services.filed]\ncommand = ["' + PY + '"]\ncwd = "afile"\nblocking = false\n')

    async def scenario(h: Harness) -> None:
        failure = await h.stack.start_and_wait()
        assert failure is not None
        assert "service ghost: command 'no-such-binary-xyz' not found" in failure.reason
        lost = h.stack.get("lost")
        assert lost.state == State.FAILED and "cwd" in lost.reason and "nowhere" in lost.reason
        assert "cwd" in h.stack.get("filed").reason and "is a file, not a folder" in \
            h.stack.get("filed").reason

    run(project, text, scenario)


def test_a_directory_as_the_command_fails_at_once_naming_it(project: Path) -> None:
    """A directory has x bits, so it passed the executable check, and the exec failed
    in the child: a crash loop whose message named cgroup.procs as the program."""
    (project / "subdir").mkdir()
    text = f'[services.a]\ncommand = ["{project / "subdir"}"]\n'

    async def scenario(h: Harness) -> None:
        failure = await h.stack.start_and_wait()
        assert failure is not None and "is a directory, not a program" in failure.reason
        assert h.stack.get("a").restarts == 0

    run(project, text, scenario)


def test_a_missing_setup_program_is_named_as_the_setup_steps(project: Path) -> None:
    """It read `command 'npmx' not found on PATH (... or fix `command` ...)`, pointing
    at the service's command, which was fine."""
    text = (f'[services.a]\ncommand = ["{PY}", "-c", "pass"]\n'
            'setup = { command = ["npmx-no-such", "ci"], creates = "node_modules" }\n')

    async def scenario(h: Harness) -> None:
        failure = await h.stack.start_and_wait()
        assert failure is not None
        assert ("service a: setup command 'npmx-no-such' not found on PATH (install it, or "
                "fix `setup` in the stack file)") in failure.reason, failure.reason

    run(project, text, scenario)


def test_a_setup_step_that_does_not_end_fails_the_service_at_its_timeout(
        project: Path) -> None:
    """A setup step that never ended (`npm ci` stuck on the network) held the start, and
    `hd up`, for ever, the service "pending" with no pid and no reason. While it runs the
    reason names it and its pid; past `setup.timeout` it is ended and the service fails,
    with a sentence saying what to raise."""
    pid_file = project / "setup.pid"
    text = (f'[services.a]\ncommand = ["{PY}", "-c", "pass"]\n'
            f'setup = {{ command = ["{PY}", "-c", "import os, time; '
            f"open(r'{pid_file}', 'w').write(str(os.getpid())); time.sleep(600)\"], "
            'creates = "made", timeout = 1.5 }\n')

    async def scenario(h: Harness) -> None:
        starting = asyncio.ensure_future(h.stack.start_and_wait())
        service = h.stack.get("a")
        while not pid_file.exists() or not pid_file.read_text():
            await asyncio.sleep(0.05)
        pid = int(pid_file.read_text())
        await asyncio.sleep(0.2)
        snap = next(s for s in h.stack.snapshots() if s.name == "a")
        assert "running its setup step" in snap.reason and f"pid {pid}" in snap.reason, \
            snap.reason
        failure = await asyncio.wait_for(starting, 20)
        assert failure is not None and service.state == State.FAILED
        assert "did not finish within 1.5s (setup.timeout) and was ended" in failure.reason
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pass
        else:
            raise AssertionError(f"the setup step {pid} was left running")

    run(project, text, scenario)


@pytest.mark.parametrize("first_line,words", [
    (b"#!/bin/sh\r\n", "has Windows line endings: its first line asks for '/bin/sh\\r'"),
    (b"#!/no/such/interp\n", "asks for the interpreter '/no/such/interp' (its `#!` line), "
                             "which does not exist"),
    # the form the guide recommends, and a folder: both crash-looped with exit 127 / 126
    (b"#!/usr/bin/env no-such-interp\n", "asks for 'no-such-interp' on PATH (its `#!` "
                                         "line, through env), which is not there"),
    (b"#!/tmp\n", "asks for the interpreter '/tmp' (its `#!` line), which is a directory"),
])
def test_a_script_whose_interpreter_cannot_run_is_named(project: Path, first_line: bytes,
                                                         words: str) -> None:
    """It read `.../cgroup.procs: 1: exec: ./run.sh: not found` (our cgroup wrapper
    speaking, of a file that exists), or a raw errno without cgroups."""
    script = project / "run.sh"
    script.write_bytes(first_line + b"echo up\r\nsleep 600\r\n")
    script.chmod(0o755)
    text = '[services.a]\ncommand = ["./run.sh"]\n'

    async def scenario(h: Harness) -> None:
        failure = await h.stack.start_and_wait()
        assert failure is not None and f"command './run.sh' {words}" in failure.reason, \
            failure.reason
        assert "cgroup.procs" not in failure.reason

    run(project, text, scenario)


def test_port_is_the_services_own_whatever_its_env_says(project: Path) -> None:
    """A PORT in an app's .env (or the stack's [env]) replaced the service's own $PORT in
    silence: it bound another port and failed "not ready" with nothing saying why."""
    (port,) = free_ports(1)
    (project / ".env").write_text("PORT=1\n")
    text = ('[env]\nPORT = "2"\n\n'
            f'[services.a]\ncommand = ["sh", "-c", "echo port=$PORT; exec sleep 600"]\n'
            f'port = {port}\nenv_file = [".env"]\nreadiness = {{ log = "port=" }}\n')

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        lines = h.lines("a")
        assert f"port={port}" in lines, lines
        notes = [r.text for r in h.hub.tail("a", 1000) if r.system]
        assert any(n.startswith(f"PORT=1 from its env is replaced by its port, {port}")
                   for n in notes), notes

    run(project, text, scenario)


def test_a_hung_readiness_answer_holds_back_no_one_and_is_probed_again(project: Path) -> None:
    """One starting service that accepts connections but never answers must not hold
    back another's readiness, and once its hung probe has timed out it is probed again:
    ready as soon as it answers."""
    a, b = free_ports(2)
    hold = project / "hold"
    hold.write_text("")
    text = (toy_service("stuck", a, "--hang-if-exists", str(hold),
                        readiness={"http": "/healthz"}, start_timeout=30)
            + toy_service("quick", b, "--delay", "0.2", readiness={"http": "/healthz"}))

    async def scenario(h: Harness) -> None:
        starting = asyncio.ensure_future(h.stack.start_and_wait())
        stuck, quick = h.stack.get("stuck"), h.stack.get("quick")
        while quick.state != State.RUNNING:
            assert not starting.done(), h.states("quick")
            await asyncio.sleep(0.02)
        assert stuck.state == State.STARTING
        # Its listener answers nothing while `hold` exists: two probe timeouts go by.
        await asyncio.sleep(2.5)
        assert stuck.state == State.STARTING and not starting.done()
        hold.unlink()
        assert await asyncio.wait_for(starting, 20) is None
        assert stuck.state == State.RUNNING
        assert h.states("stuck").count("starting") == 1  # no restart: the same run

    run(project, text, scenario)


def test_a_readiness_pause_ends_when_the_process_exits_and_wakes_on_the_shared_grid() -> None:
    """readiness._pause: an exit ends the pause at once (not 30 s later); a pause asked
    to end 2 ms before a grid instant ends at that instant, with every other service's
    pause that rounds to it (one wake-up of the daemon for all)."""
    import math

    from hippo_tasks.supervision.readiness import GRID_S, _pause

    async def main() -> tuple[float, float, list[float], float]:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[int] = loop.create_future()
        loop.call_later(0.05, exited.set_result, 0)
        began = loop.time()
        await _pause(exited, began + 30)
        took = loop.time() - began
        never: asyncio.Future[int] = loop.create_future()
        grid = (math.ceil(loop.time() / GRID_S) + 4) * GRID_S
        woke: list[float] = []

        async def pause(until: float) -> None:
            await _pause(never, until)
            woke.append(loop.time())

        await asyncio.gather(pause(grid - 0.002), pause(grid + 0.002))
        return took, grid, woke, loop._clock_resolution  # type: ignore[attr-defined]

    took, grid, woke, resolution = asyncio.run(main())
    assert took < 10, f"the pause outlived the process by {took:.1f}s"
    assert all(t >= grid - resolution for t in woke), (grid, woke)


def test_the_probe_cadence_holds_however_long_a_start_takes() -> None:
    """1.5 ** attempt overflowed at the 1751st probe, ~18 s into a start: any service
    slower than that failed with an internal error, whatever its start_timeout."""
    from hippo_tasks.supervision.probes import probe_delay

    assert [probe_delay(a) for a in range(4)] == [0.005, 0.0075, 0.01, 0.01]
    assert probe_delay(1751) == probe_delay(10**9) == 0.01


def test_a_daemon_paused_past_start_timeout_looks_once_more_before_failing(
        project: Path) -> None:
    """The daemon paused (SIGSTOP, a debugger, swap: here its loop blocked for 4.5 s)
    across a service's start_timeout: on waking it failed the service, listening since
    its first second, without a look, and tore the stack down."""
    (p,) = free_ports(1)
    text = toy_service("web", p, "--delay", "1.0", readiness={"tcp": True}, start_timeout=3)

    async def scenario(h: Harness) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, time.sleep, 4.5)  # the whole daemon stands still
        assert await h.stack.start_and_wait() is None
        assert h.stack.get("web").state == State.RUNNING

    run(project, text, scenario)


def test_an_exec_the_cgroup_wrapper_cannot_do_is_said_by_hippodrome(tmp_path: Path) -> None:
    """The wrapper's shell spoke as `/sys/fs/cgroup/.../cgroup.procs: 1: exec: ...`, a
    path taken for the program's name."""
    import subprocess

    from hippo_tasks.supervision.ownership import Placement

    procs = tmp_path / "cgroup.procs"  # a plain file: the echo into it succeeds
    procs.write_text("")
    done = subprocess.run(Placement({}, str(procs)).wrap([str(tmp_path / "gone")]),
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 127
    assert done.stderr.startswith("hippodrome: ") and str(procs) not in done.stderr, \
        done.stderr


def test_an_env_line_that_sets_a_variable_first_is_not_taken_for_a_program(
        tmp_path: Path) -> None:
    """`#!/usr/bin/env NAME=value prog` is valid: NAME=value is no program to look for."""
    from hippo_tasks.supervision.process import interpreter_problem

    script = tmp_path / "run.sh"
    script.write_bytes(b"#!/usr/bin/env LANG=C sh\necho\n")
    assert interpreter_problem(str(script), os.defpath) == ""
    script.write_bytes(b"#!/usr/bin/env no-such-program-here\n")
    assert "asks for 'no-such-program-here' on PATH" in interpreter_problem(str(script))


@pytest.mark.parametrize("line, missing", [
    (b"#!/usr/bin/env -S no-such-program-here --flag", True),
    (b"#!/usr/bin/env -S -u FOO no-such-program-here", True),
    (b"#!/usr/bin/env -S FOO=1 no-such-program-here -x", True),
    (b"#!/usr/bin/env -Sno-such-program-here", True),
    (b"#!/usr/bin/env --split-string=no-such-program-here -x", True),
    (b"#!/usr/bin/env -S sh -e", False),
    (b"#!/usr/bin/env -S -i FOO=1 sh", False),
    (b"#!/usr/bin/env -S -C /tmp sh", False),
])
def test_an_env_split_line_names_the_program_it_runs(tmp_path: Path, line: bytes,
                                                     missing: bool) -> None:
    """`env -S` (how an interpreter gets flags) was not read: a missing program behind
    it crash-looped with env's own `No such file or directory`."""
    from hippo_tasks.supervision.process import interpreter_problem

    script = tmp_path / "run.sh"
    script.write_bytes(line + b"\necho\n")
    said = interpreter_problem(str(script), os.defpath)
    assert ("asks for 'no-such-program-here' on PATH" in said) == missing, said
    assert missing or said == "", said


def test_a_costly_log_pattern_cannot_stall_the_daemon(project: Path) -> None:
    """`\\w+\\w+!` passes the loader's rules, at ~26 ms a 341-character line; a service
    printing long lines without pause kept the loop matching: start_timeout never fired,
    the other services waited, `hd down` hung (adv26 g/1). Matching has a share of the
    loop's time now; lines past it are passed over, and the log says so."""
    (p,) = free_ports(1)
    noisy = ("import sys, time\nwhile True:\n    sys.stdout.write(('a' * 400 + '\\n') * 100)\n"
             "    sys.stdout.flush()\n    time.sleep(0.01)\n")
    text = ("[services.noisy]\n"
            f"command = [{PY!r}, '-c', {noisy!r}]\n"
            "readiness = { log = '\\w+\\w+!' }\nstart_timeout = 3\nblocking = false\n"
            + toy_service("web", p, "--delay", "0.3", readiness={"http": "/healthz"},
                          start_timeout=20))

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        assert h.stack.get("web").state == State.RUNNING, h.states("web")
        assert h.stack.get("noisy").state == State.FAILED, h.states("noisy")
        assert "start_timeout=3" in h.stack.get("noisy").reason
        with open(h.runs.path("noisy"), encoding="utf-8", errors="replace") as log:
            said = [ln for ln in log if "readiness: matching" in ln]
        assert len(said) == 1 and "make the pattern simpler" in said[0], said

    run(project, text, scenario, timeout=40)


def test_a_service_that_exits_0_before_ready_is_told_to_stay_in_the_foreground(
        project: Path) -> None:
    """A daemonizing program (`--daemon`): `failed: exited with code 0` said nothing of
    why (adv26 f's notes)."""
    text = '[services.bg]\nshell = "sleep 300 & exit 0"\n'

    async def scenario(h: Harness) -> None:
        failure = await h.stack.start_and_wait()
        assert failure is not None and failure.service == "bg"
        assert failure.reason.startswith("exited with code 0 before it was ready: a service "
                                         "must stay in the foreground"), failure.reason

    run(project, text, scenario)


def test_a_plain_pattern_over_coloured_output_still_finds_its_ready_line(
        project: Path) -> None:
    """64 KB coloured lines for a while, then `READY now!` and a quiet spell: the escape
    stripping was charged to the pattern's budget, the ready line was passed over and
    never looked at again, and the log blamed the pattern (adv27 i/5)."""
    flood = ("import sys, time\nline = '\\x1b[31mab\\x1b[0m\\r' * 5000 + '\\n'\n"
             "end = time.time() + 1.5\nwhile time.time() < end:\n    sys.stdout.write(line)\n"
             "sys.stdout.write('READY now!\\n')\nsys.stdout.flush()\ntime.sleep(600)\n")
    text = (f"[services.colours]\ncommand = [{PY!r}, '-c', {flood!r}]\n"
            "readiness = { log = 'READY now' }\nstart_timeout = 15\n")

    async def scenario(h: Harness) -> None:
        assert await h.stack.start_and_wait() is None
        assert h.stack.get("colours").state == State.RUNNING, h.states("colours")

    run(project, text, scenario, timeout=40)


@pytest.mark.parametrize("field", ["cwd", "creates"])
def test_a_name_longer_than_the_file_system_allows_is_a_sentence(project: Path,
                                                                field: str) -> None:
    """A `cwd` or setup `creates` of one 300-character name: "internal error:
    OSError(36, 'File name too long') (please report it)" (adv27 i/10)."""
    name = "d" * 300
    extra = f'cwd = "{name}"\n' if field == "cwd" else \
        f'setup = {{ command = ["true"], creates = "{name}" }}\n'
    text = f'[services.x]\ncommand = ["sleep", "60"]\n{extra}'

    async def scenario(h: Harness) -> None:
        failure = await h.stack.start_and_wait()
        assert failure is not None and "internal error" not in failure.reason
        assert "File name too long" in failure.reason, failure.reason
        assert f"… ({len(str(project / name))} characters)" in failure.reason, failure.reason

    run(project, text, scenario)


def test_a_service_listening_on_ipv6_loopback_only_is_told_why_it_is_not_ready(
        project: Path) -> None:
    """A server told `localhost` that listens on [::1] only (Node 17+) never became
    ready, and its reason said only `not ready within start_timeout (readiness: tcp)`
    (adv28 l/9). The reason says where it answers and what to change."""
    import socket as socketlib

    probe = socketlib.socket(socketlib.AF_INET6)
    try:
        probe.bind(("::1", 0))
    except OSError:
        pytest.fail("this test needs an IPv6 loopback (::1), which CI machines have")
    finally:
        probe.close()
    (port,) = free_ports(1)
    server = (f'import socket, time\ns = socket.socket(socket.AF_INET6)\n'
              f's.bind(("::1", {port}))\ns.listen()\ntime.sleep(60)\n')
    text = stack_header(1) + (
        f'[services.six]\ncommand = ["{PY}", "-c", {json.dumps(server)}]\nport = {port}\n'
        'readiness = { tcp = true }\nstart_timeout = 2\n')

    async def scenario(h: Harness) -> None:
        failure = await h.stack.start_and_wait()
        assert failure is not None
        reason = h.stack.get("six").reason
        assert f"it answers on [::1]:{port} (IPv6) only" in reason and \
            "have it listen on 127.0.0.1" in reason, reason

    run(project, text, scenario)


def test_which_finds_what_shutils_which_finds(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's own `which` (shutil's imports bz2 and lzma for the stack's life) must
    pick the same file: a non-executable file, a folder of the program's name, a folder
    given twice, an empty PATH entry (the current folder), an empty PATH, a name with a
    folder in it."""
    import shutil
    import stat

    from hippo_tasks.supervision.process import which

    for folder in ("plain", "dir", "exe", "here"):
        (tmp_path / folder).mkdir()
    (tmp_path / "plain" / "tool").write_text("#!/bin/sh\n")  # not executable
    (tmp_path / "dir" / "tool").mkdir()  # a folder with x bits
    for runnable in (tmp_path / "exe" / "tool", tmp_path / "here" / "tool",
                     tmp_path / "here" / "local"):
        runnable.write_text("#!/bin/sh\n")
        runnable.chmod(runnable.stat().st_mode | stat.S_IXUSR)
    monkeypatch.chdir(tmp_path / "here")
    paths = [f"{tmp_path}/plain:{tmp_path}/dir:{tmp_path}/exe", f"{tmp_path}/plain",
             f"{tmp_path}/exe:{tmp_path}/exe", ":", f"{tmp_path}/plain::{tmp_path}/exe", "",
             "/nonexistent"]
    for program in ("tool", "local", "sh", "no-such-tool", "./local", "./tool",
                    f"{tmp_path}/exe/tool", f"{tmp_path}/plain/tool", f"{tmp_path}/dir/tool"):
        for search in paths:
            assert which(program, search) == shutil.which(program, path=search), \
                (program, search)
    assert which("tool", paths[0]) == f"{tmp_path}/exe/tool"  # the cases are not all None
