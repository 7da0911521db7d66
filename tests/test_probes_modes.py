"""`hd probes`, `--full` and `--fuzz` against a real full-profile stack (own port offset):
health with error_type/status_code, the properties passing, the fuzz machine passing;
a cell that forgets deletes (a real HTTP peer in front of fake_cell) fails --full with
a falsifying example; a service stopped mid-fuzz trips its breaker and is counted as
infrastructure, not a bug; past --deadline-s no more examples are drawn (--examples 100000
ends soon after it, the rest counted as left out). Example counts are small: each test is
seconds, not minutes.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from data_stack import REPO, run_task
from stackutil import free_offset, hd

from hippo_platform.seed import probe_props
from hippo_platform.seed.endpoints import daemon_status, view_from_env
from hippo_platform.seed.probe_runner import Budget, run_property
from hippo_platform.seed.probe_target import make_target
from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

SMALL = ["--examples", "4", "--deadline-s", "60", "--seed", "7"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    root = tmp_path_factory.mktemp("probes-modes") / "proj"
    root.mkdir()
    offset = free_offset()
    try:
        up = hd(root, "up", "--detach", "--profile", "full", "--port-offset", str(offset),
                timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        yield root, offset
    finally:
        hd(root, "down", timeout=90)
        force_down(Registry(root))


def probes_module(root: Path, offset: int, *args: str, env: dict[str, str] | None = None
                  ) -> subprocess.Popen[str]:
    """The stack's probes command itself, with only the daemon's URL (and `env`) given."""
    full_env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(REPO),
                "HIPPODROME_DASHBOARD_URL": f"http://127.0.0.1:{9000 + offset}", **(env or {})}
    for var in ("MARQO_BASE_URL", "CONTROLLER_URL"):
        if env is None or var not in env:
            full_env.pop(var, None)
    return subprocess.Popen([sys.executable, "-m", "hippo_platform.seed.probes",
                             "--project-root", str(root), *args], cwd=root, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_health_carries_error_type_and_status_code(stack: tuple[Path, int],
                                                   tmp_path: Path) -> None:
    root, _ = stack
    report = tmp_path / "report.json"
    done = run_task(root, "probes", "--json", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    services = {s["name"]: s for s in json.loads(report.read_text())["services"]}
    assert services["fake_cell"]["status_code"] == 200
    assert services["fake_cell"]["error_type"] is None
    assert services["moto"]["status_code"] == 200  # its HTML page is health enough


def test_a_stopped_service_is_connection_refused(stack: tuple[Path, int],
                                                 tmp_path: Path) -> None:
    root, _ = stack
    report = tmp_path / "stopped.json"
    assert hd(root, "stop", "--service", "console").returncode == 0
    try:
        done = run_task(root, "probes", "--json", str(report))
    finally:
        assert hd(root, "start", "--service", "console").returncode == 0
    assert done.returncode == 1
    console = {s["name"]: s for s in json.loads(report.read_text())["services"]}["console"]
    assert console["error_type"] == "connection_refused" and console["status_code"] is None
    assert "[connection_refused]" in done.stdout


def test_full_passes_on_the_full_profile(stack: tuple[Path, int], tmp_path: Path) -> None:
    root, _ = stack
    report = tmp_path / "full.json"
    done = run_task(root, "probes", "--full", *SMALL, "--json", str(report), timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r["name"]: r for r in json.loads(report.read_text())["full"]}
    for name in ("found by unique terms", "filter is a subset", "pin rule comes first",
                 "deleted never found"):
        assert results[name]["status"] == "PASS", results[name]
        assert results[name]["examples"] >= 1
    assert results["fork holds its source"]["status"] in ("PASS", "SKIP")
    assert "properties: " in done.stdout and "0 failed" in done.stdout
    # hypothesis' own files go with the stack's state, not into the project folder
    assert not (root / ".hypothesis").exists() and (root / ".hippodrome" / "hypothesis").is_dir()


def test_fuzz_passes_and_prints_the_error_code_table(stack: tuple[Path, int]) -> None:
    root, _ = stack
    done = run_task(root, "probes", "--fuzz", "--examples", "3", "--steps", "15",
                    "--seed", "3", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error codes per service" in done.stdout
    assert "0 real failure(s)" in done.stdout and "0 breaker(s) open" in done.stdout
    for service in ("controller", "fake_cell"):
        assert any(line.strip().startswith(service) for line in done.stdout.splitlines())


def test_fuzz_runs_no_more_than_examples(stack: tuple[Path, int]) -> None:
    """hypothesis counts only runs it deems valid towards its bound: `--examples 25` ran
    26 to 28 runs, over the "up to 25 run(s)" just printed."""
    root, _ = stack
    done = run_task(root, "probes", "--fuzz", "--examples", "25", "--steps", "2",
                    "--seed", "2", "--deadline-s", "120", timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = re.search(r"^fuzz: .* in (\d+) run", done.stdout, re.MULTILINE)
    assert runs is not None, done.stdout
    assert 1 <= int(runs.group(1)) <= 25, done.stdout


def test_bad_flags_are_named_with_exit_2(stack: tuple[Path, int]) -> None:
    root, _ = stack
    for flags, words in ((["--examples", "0"], "must be more than 0"),
                         (["--deadline-s", "soon"], "not a number"),
                         (["--deadline-s", "nan"], "not a number"),
                         (["--deadline-s", "inf"], "not a number")):
        done = run_task(root, "probes", "--full", *flags)
        assert done.returncode == 2, done.stdout + done.stderr
        assert words in done.stderr and "Traceback" not in done.stderr


class ForgetfulCell:
    """fake_cell behind a proxy that answers deletes without passing them on: the kind
    of bug (a lost write) --full exists to catch."""

    def __init__(self, cell_url: str) -> None:
        cell = urlsplit(cell_url)

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "DELETE" and "/documents/" in self.path or \
                        self.path.endswith("/documents/delete-batch"):
                    self._answer(200, b'{"deleted": true}')
                    return
                conn = http.client.HTTPConnection(str(cell.hostname), cell.port, timeout=10)
                try:
                    conn.request(self.command, self.path, body=body or None,
                                 headers={k: v for k, v in self.headers.items()
                                          if k.lower() in ("x-api-key", "content-type")})
                    answer = conn.getresponse()
                    self._answer(answer.status, answer.read())
                finally:
                    conn.close()

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _forward  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ForgetfulCell:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_cell_that_forgets_deletes_fails_full_with_a_falsifying_example(
    stack: tuple[Path, int]
) -> None:
    root, offset = stack
    with ForgetfulCell(f"http://127.0.0.1:{9001 + offset}") as broken:
        proc = probes_module(root, offset, "--full", *SMALL, env={"MARQO_BASE_URL": broken.url})
        out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 1, out
    failed = [line for line in out.splitlines() if "[FAIL]" in line]
    assert any("deleted never found" in line and "is still found" in line for line in failed), out
    assert "deleted_never_found(" in out and "--seed 7" in out  # hypothesis' own example
    assert "Failing test case" in out or "Falsifying example" in out
    assert any("[OK]" in line and "found by unique terms" in line for line in out.splitlines())


def test_a_service_stopped_mid_fuzz_trips_its_breaker_and_is_not_a_bug(
    stack: tuple[Path, int]
) -> None:
    root, offset = stack
    proc = probes_module(root, offset, "--fuzz", "--examples", "500", "--steps", "20",
                         "--deadline-s", "15", "--seed", "11", "--breaker", "3")
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # wait until the machine runs, then stop the controller
            seen.append(line)
            if line.startswith("fuzz ("):
                break
        assert hd(root, "stop", "--service", "controller").returncode == 0
        out = "".join(seen) + proc.stdout.read()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert hd(root, "start", "--service", "controller").returncode == 0
    assert proc.returncode == 0, out
    assert "breaker open    controller" in out and "connection_refused" in out, out
    assert "0 real failure(s)" in out and "1 breaker(s) open" in out, out
    row = next(line for line in out.splitlines() if line.strip().startswith("controller"))
    assert row.rstrip().endswith("OPEN")


def test_the_time_budget_leaves_examples_out_and_says_so(stack: tuple[Path, int]) -> None:
    root, _ = stack
    done = run_task(root, "probes", "--full", "--examples", "25", "--deadline-s", "0.01",
                    "--seed", "5", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "left out when the time budget ran out" in done.stdout


def finished(proc: subprocess.Popen[str], timeout: float) -> str:
    """The process's output once it ends; killed (and the test failed) past `timeout`:
    a generous bound for a run whose deadline is a second or two."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"still running after {timeout:g} s:\n{out}") from None
    return out


def test_past_the_deadline_no_more_examples_are_drawn(stack: tuple[Path, int]) -> None:
    """The budget ends in the first example: hypothesis draws (about) no more cases, and
    the report counts all the others as left out."""
    root, offset = stack
    env = {"HIPPODROME_DASHBOARD_URL": f"http://127.0.0.1:{9000 + offset}"}
    status = daemon_status(env)
    assert status is not None
    target = make_target(root, view_from_env(env, status))
    index = target.new_index("full")
    budget = Budget(60.0)
    drawn: list[object] = []
    ran: list[object] = []
    try:
        strategy, check = probe_props.prop_found(target, index)

        def check_then_spend(case: object) -> None:
            ran.append(case)
            check(case)
            budget.seconds = 0.0  # the deadline passes during the first example

        def seen(case: object) -> object:
            drawn.append(case)
            return case

        result = run_property("found by unique terms", strategy.map(seen), check_then_spend,
                              examples=2000, budget=budget, seed=5)
    finally:
        target.drop_index(index)
    assert result.status == "PASS", result
    assert result.examples == len(ran) == 1
    assert result.skipped_for_time == 1999
    assert len(drawn) <= 2, f"{len(drawn)} cases drawn after the deadline"
    assert "1999 left out when the time budget ran out" in result.text


def test_full_with_many_examples_ends_soon_after_the_deadline(
    stack: tuple[Path, int], tmp_path: Path
) -> None:
    root, offset = stack
    report = tmp_path / "full.json"
    proc = probes_module(root, offset, "--full", "--examples", "100000", "--deadline-s", "1",
                         "--seed", "5", "--json", str(report))
    out = finished(proc, 90)
    assert proc.returncode == 0, out
    assert "left out when the time budget ran out" in out
    for result in json.loads(report.read_text())["full"]:
        if result["status"] == "SKIP":
            continue
        planned = 20000 if result["name"] in ("pin rule comes first",
                                              "fork holds its source") else 100000
        assert result["examples"] + result["skipped_for_time"] == planned, result


def test_fuzz_with_many_runs_ends_soon_after_the_deadline(
    stack: tuple[Path, int], tmp_path: Path
) -> None:
    root, offset = stack
    report = tmp_path / "fuzz.json"
    proc = probes_module(root, offset, "--fuzz", "--examples", "100000", "--steps", "20",
                         "--deadline-s", "1", "--seed", "5", "--json", str(report))
    out = finished(proc, 90)
    assert proc.returncode == 0, out
    assert "run(s) left out when the time budget ran out" in out
    fuzz = json.loads(report.read_text())["fuzz"]
    assert fuzz["runs"] >= 1 and fuzz["runs"] + fuzz["skipped_for_time"] == 100000, fuzz


def test_json_report_writes_into_what_the_file_is(tmp_path: Path) -> None:
    """`--json /dev/stdout` replaced the machine's /dev/stdout (a link) with a regular
    file, and /dev/full, a FIFO, likewise; `--json .` was a traceback; a missing folder
    was made, anywhere."""
    from hippo_platform.seed.probe_pass import json_refusal, write_json_report

    results = {"ok": True, "services": [{"name": "web", "status": "pass"}]}
    read_end, write_end = os.pipe()
    try:
        link = tmp_path / "stdout"
        link.symlink_to(f"/proc/self/fd/{write_end}")  # as /dev/stdout is
        write_json_report(link, results)
        assert link.is_symlink()
        assert json.loads(os.read(read_end, 65536)) == results
    finally:
        os.close(read_end)
        os.close(write_end)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    deadline = time.monotonic() + 10
    while True:  # until the reader has it open (ENXIO before)
        try:
            write_json_report(fifo, results)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    reader.join(10)
    assert json.loads(got[0]) == results and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    plain = tmp_path / "report.json"
    write_json_report(plain, results)
    assert json.loads(plain.read_text()) == results
    assert json_refusal(str(tmp_path)) == (f"--json {tmp_path} is a folder: give a file name "
                                           f"(e.g. {tmp_path / 'probes.json'})")
    assert "does not exist (make it first)" in str(json_refusal(str(tmp_path / "no" / "x")))
    assert json_refusal(str(plain)) is None


def test_output_that_cannot_be_written_ends_as_hd_commands_do(
        stack: tuple[Path, int]) -> None:
    """`hd probes > /dev/full` and `hd probes | head -1` ended in tracebacks, exit 1
    (adv28 k/9): 120 with a sentence, and 141 with nothing more, as every hd command."""
    root, offset = stack
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(REPO),
           "HIPPODROME_DASHBOARD_URL": f"http://127.0.0.1:{9000 + offset}"}
    argv = [sys.executable, "-m", "hippo_platform.seed.probes", "--project-root", str(root)]
    # --json to a file that cannot be written was exit 2, a bad flag, after every probe
    # had run (adv29 n/8): 10, as seed's files
    to_full = subprocess.run([*argv, "--json", "/dev/full"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=120)
    assert to_full.returncode == 10, to_full.stdout + to_full.stderr
    assert "probes: cannot write --json /dev/full: No space left on device" in to_full.stderr
    with open("/dev/full", "w") as full:
        done = subprocess.run(argv, cwd=root, env=env, stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    assert done.returncode == 120, done.stderr
    assert done.stderr.startswith("probes: the output could not be written: [Errno 28]") \
        and "Traceback" not in done.stderr, done.stderr
    closed = subprocess.run(argv, cwd=root, env=env, stdout=None, stderr=subprocess.PIPE,
                            text=True, timeout=120, close_fds=True,
                            preexec_fn=lambda: os.close(1))  # `hd probes >&-` (adv29 n/4)
    assert closed.returncode in (0, 1) and "Traceback" not in closed.stderr, closed.stderr
    proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first line, as `| head -0`
    assert proc.wait(120) == 141
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
