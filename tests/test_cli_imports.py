"""The commands people repeat pay only for what they use (issue 11).

Set assertions, not timings: each hot command runs in a fresh interpreter against a
project without a daemon (the path up to the daemon call is the same), and the
modules it loaded are compared with the ones it must never load. Timings live in
benchmarks/bench_cli.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from stackutil import free_ports

from hippo_tasks.errors import UsageError
from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry
from hippo_tasks.tasks.program import HOT, SHORT, kind_of, kwarg_for, parse_hot

REPO = Path(__file__).resolve().parents[1]

MACHINERY = {"asyncio", "hippo_tasks.supervision.service", "hippo_tasks.supervision.stack",
             "hippo_tasks.supervision.process", "hippo_tasks.model.loader",
             "hippo_tasks.model.plan", "hippo_tasks.daemon.launch", "hippo_tasks.daemon.engine",
             "hippo_tasks.registry.cleanup", "hippo_tasks.events.bridge", "watchfiles", "boto3"}
"""Never loaded by `status`, `start`, `stop`, `restart`, `logs`, `down` on the way to a
running daemon (through `invoke` too, but for asyncio, which invoke's own imports pull)."""
INVOKE = {"invoke", "unittest.mock", "yaml", "invoke.vendor.yaml", "psutil"}
"""What `hd`'s fast path avoids on top: invoke and what it drags in, and psutil."""
HEAVY_STDLIB = {"urllib.request", "http.client", "email.parser", "ssl", "tempfile",
                "subprocess", "hippo_tasks.tasks.lifecycle", "dataclasses", "inspect"}
"""What a call to a running daemon has no use for: urllib's HTTP stack (the client is a
plain socket), tempfile (registry writes only), subprocess (git, only for `up`), the
task module that starts and ends daemons, and dataclasses with the inspect, ast and dis
it imports (the errors every command loads were dataclasses: ~8 ms of each start)."""

PROBE = """
import json, sys
sys.argv = ["hd", *json.loads(sys.argv[1])]
from hippo_tasks.tasks import program
try:
    program.main()
except SystemExit:
    pass
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""

INVOKE_PROBE = """
import json, sys
from invoke.main import program
try:
    program.run(["invoke", "-r", sys.argv[2], *json.loads(sys.argv[1])])
except SystemExit:
    pass
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""


def loaded(probe: str, argv: list[str], root: Path) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    env.pop("HIPPODROME_FAST_CLI", None)
    out = subprocess.run([sys.executable, "-c", probe, json.dumps(argv), str(REPO)],
                         cwd=root, capture_output=True, text=True, timeout=60,
                         env={**env, "NO_COLOR": "1", "HOME": str(root)})
    line = out.stdout.rsplit("MODULES ", 1)
    assert len(line) == 2, out.stdout + out.stderr
    return set(json.loads(line[1]))


HELD_LOGS: list[object] = []
"""daemon.log files this process holds open as a daemon does (the worker's life long)."""


def running_daemon_registry(root: Path) -> None:
    """A registry naming a live daemon (this test's own process: identity matches, and
    it writes the project's daemon.log, as only its daemon does) at an address nobody
    serves: the command gets as far as its HTTP call, and fails."""
    from hippo_tasks.registry.store import Registry, identity

    Registry(root).update(lambda d: d.__setitem__("daemon", {
        "pid": os.getpid(), "create_time": identity(os.getpid()),
        "url": "http://127.0.0.1:9", "port": 9}))
    HELD_LOGS.append((root / ".hippodrome" / "daemon.log").open("a"))


HOT_LINES = [["status"], ["status", "--json"], ["restart", "--service", "web"],
             ["start", "-s", "web"], ["stop"], ["control.status"], ["logs", "-l", "5"]]


@pytest.mark.parametrize("argv", HOT_LINES, ids=" ".join)
def test_hd_hot_commands_skip_invoke_and_the_machinery(tmp_path: Path, argv: list[str]) -> None:
    running_daemon_registry(tmp_path)
    modules = loaded(PROBE, [*argv, "--project-root", str(tmp_path)], tmp_path)
    assert "hippo_tasks.daemon.client" in modules or argv[0] == "logs"
    unused = MACHINERY | INVOKE | HEAVY_STDLIB
    assert not modules & unused, sorted(modules & unused)


def test_hd_up_detach_skips_invoke(tmp_path: Path) -> None:
    """`hd up` reaches the daemon's launch without invoke (about 0.16 s of imports), and
    the stack it started is the one `hd down` ends."""
    (port,) = free_ports(1)
    dash = free_ports(1)[0]
    (tmp_path / "hippodrome.toml").write_text(
        f"[stack]\ndefaults = false\ndashboard_port = {dash}\n\n[services.web]\n"
        f'command = ["{sys.executable}", "-m", "http.server", "{port}", "--bind", '
        f'"127.0.0.1"]\nport = {port}\nreadiness = {{ tcp = true }}\n')
    try:
        modules = loaded(PROBE, ["up", "--detach", "-p", str(tmp_path)], tmp_path)
        assert "hippo_tasks.daemon.launch" in modules
        invoke = INVOKE - {"psutil"}  # up names a busy port's holder: psutil is its own
        assert not modules & invoke, sorted(modules & invoke)
        assert Registry(tmp_path).read()["services"]["web"]["state"] == "running"
    finally:
        force_down(Registry(tmp_path))


SPAWN_PROBE = """
import json, sys
sys.argv = ["hd", *json.loads(sys.argv[1])]
from hippo_tasks.daemon import launch
real = launch.spawn_daemon
def at_spawn(*args, **kwargs):
    print("\\nSPAWN " + json.dumps(sorted(sys.modules)), flush=True)
    return real(*args, **kwargs)
launch.spawn_daemon = at_spawn
from hippo_tasks.tasks import program
try:
    program.main()
except SystemExit:
    pass
"""
NOT_BEFORE_SPAWN = {"urllib.request", "http.client", "email.parser", "psutil", "ssl",
                    "http.server", "argparse"}
"""Every service waits for these when they load before the daemon starts them: the
HTTP client (for after `ready`), psutil (a busy port's holder only), the API server
(bound at once, built in a thread while the stack starts)."""


def test_up_detach_loads_no_client_before_the_daemon_and_the_daemon_no_server(
        tmp_path: Path) -> None:
    (port, dash) = free_ports(2)
    (tmp_path / "hippodrome.toml").write_text(
        f"[stack]\ndefaults = false\ndashboard_port = {dash}\n\n[services.web]\n"
        f'command = ["{sys.executable}", "-m", "http.server", "{port}", "--bind", '
        f'"127.0.0.1"]\nport = {port}\nreadiness = {{ tcp = true }}\n')
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
        out = subprocess.run([sys.executable, "-c", SPAWN_PROBE,
                              json.dumps(["up", "--detach", "-p", str(tmp_path)])],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60,
                             env={**env, "NO_COLOR": "1", "HOME": str(tmp_path)})
        assert "SPAWN " in out.stdout, out.stdout + out.stderr
        cli = set(json.loads(out.stdout.split("SPAWN ", 1)[1].splitlines()[0]))
        assert "hippo_tasks.daemon.launch" in cli
        assert not cli & NOT_BEFORE_SPAWN, sorted(cli & NOT_BEFORE_SPAWN)
        assert Registry(tmp_path).read()["services"]["web"]["state"] == "running"
    finally:
        force_down(Registry(tmp_path))
    daemon = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['ssl'] = None; "
         "import hippo_tasks.daemon.main, json; "
         "print(json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)))"],
        capture_output=True, text=True, timeout=60, check=True)
    modules = set(json.loads(daemon.stdout))
    assert "hippo_tasks.daemon.engine" in modules
    early = NOT_BEFORE_SPAWN | {"hippo_tasks.daemon.routes", "hippo_tasks.daemon.page"}
    assert not modules & early, sorted(modules & early)


NOT_IN_THE_DAEMON = {"http.server", "http.client", "email", "email.utils", "mimetypes", "difflib",
                     "shutil", "tempfile", "hmac", "hashlib",
                     "ssl", "_hashlib", "importlib.resources", "zipfile", "dataclasses",
                     "hippo_tasks.model.loader", "tomllib"}
"""Loaded for the life of the stack, for nothing the daemon does: http.server's imports
(its request loop is hippo_contract/http_loop.py), OpenSSL without --tls, what reading the
page's file pulls in before anyone asks for the page, difflib before a name is wrong,
hmac and hashlib before a webhook token is compared, tempfile, shutil (bz2, lzma: the
daemon has its own `which`) and dataclasses (NO_DATACLASSES); the stack file's parser
(the daemon is handed the plan `up` made; it reads the file again only to say that a
service it was asked for by name was added after the start: 0.23 MB of its PSS)."""


def test_the_daemon_with_its_server_loads_none_of_what_it_does_not_use() -> None:
    daemon = subprocess.run(
        [sys.executable, "-c", "import sys, json; "
         "from hippo_tasks.daemon import keep_openssl_out; keep_openssl_out(); "
         "import hippo_tasks.daemon.main, hippo_tasks.daemon.http; "
         "print(json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)))"],
        capture_output=True, text=True, timeout=60, check=True)
    modules = set(json.loads(daemon.stdout))
    assert {"hippo_tasks.daemon.routes", "hippo_tasks.daemon.page",
            "hippo_tasks.daemon.mcp_route", "hippo_tasks.daemon.webhook.receive"} <= modules
    assert not modules & NOT_IN_THE_DAEMON, sorted(modules & NOT_IN_THE_DAEMON)


NO_DATACLASSES = {"dataclasses"}
"""Not on `up`'s way to its first spawn, nor in the daemon it forks: the module costs
~7 ms with inspect, ast, dis and tokenize, and making each dataclass 0.2-0.5 ms (it
compiles its methods; a NamedTuple ~0.06), all before any service could start. `up`'s
and the daemon's records are NamedTuples and slotted classes."""

FORK_PROBE = """
import json, os, signal, sys
report = sys.argv[2]
sys.argv = ["hd", *json.loads(sys.argv[1])]
real_fork = os.fork
def fork():
    print("\\nFORK " + json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)),
          flush=True)
    pid = real_fork()
    if pid == 0:  # the daemon-to-be: tells what it has loaded when asked (SIGWINCH, which
        # it leaves alone: SIGUSR1 is its own, the dashboard line)
        def tell(*_):
            with open(report + ".part", "w") as fh:
                json.dump(sorted(k for k, v in sys.modules.items() if v is not None), fh)
            os.rename(report + ".part", report)
        signal.signal(signal.SIGWINCH, tell)
    return pid
os.fork = fork
from hippo_tasks.tasks import program
try:
    program.main()
except SystemExit:
    pass
"""


NO_ARCHIVES = {"shutil", "bz2", "lzma"}
"""shutil imports bz2 and lzma, ~0.2 MB of the daemon's PSS for its whole life, and
the daemon wants only its `which`, for a command named without a folder (as most are)."""


@pytest.mark.parametrize("program", [sys.executable, "python3"], ids=["by-path", "by-name"])
def test_up_detach_and_its_forked_daemon_load_no_dataclasses(tmp_path: Path,
                                                               program: str) -> None:
    """What `hd up --detach` has loaded when it forks, and what the forked daemon has
    loaded once it serves (its HTTP server, a status and a log query answered)."""
    (port, dash) = free_ports(2)
    (tmp_path / "hippodrome.toml").write_text(
        f"[stack]\ndefaults = false\ndashboard_port = {dash}\n\n[services.web]\n"
        f'command = ["{program}", "-m", "http.server", "{port}", "--bind", '
        f'"127.0.0.1"]\nport = {port}\nreadiness = {{ tcp = true }}\n')
    report = tmp_path / "daemon-modules.json"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("INVOKE_") and k != "HIPPODROME_DAEMON_EXEC"}
    try:
        out = subprocess.run([sys.executable, "-c", FORK_PROBE,
                              json.dumps(["up", "--detach", "-p", str(tmp_path)]), str(report)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60,
                             env={**env, "NO_COLOR": "1", "HOME": str(tmp_path)})
        assert "FORK " in out.stdout, out.stdout + out.stderr  # the daemon is a fork
        cli = set(json.loads(out.stdout.split("FORK ", 1)[1].splitlines()[0]))
        assert "hippo_tasks.daemon.launch" in cli
        assert not cli & NO_DATACLASSES, sorted(cli & NO_DATACLASSES)
        data = Registry(tmp_path).read()
        assert data["services"]["web"]["state"] == "running"
        url = data["daemon"]["url"]
        for path in ("/api/status", "/api/services/web/logs?lines=5&grep=GET"):
            with urllib.request.urlopen(url + path, timeout=10) as answer:
                assert answer.status == 200, path
        os.kill(int(data["daemon"]["pid"]), signal.SIGWINCH)
        deadline = time.monotonic() + 10
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert report.exists(), "the daemon did not say what it loaded (SIGWINCH)"
        daemon = set(json.loads(report.read_text()))
    finally:
        force_down(Registry(tmp_path))
    assert {"hippo_tasks.daemon.main", "hippo_tasks.daemon.http",
            "hippo_tasks.daemon.commands"} <= daemon
    assert not daemon & NO_DATACLASSES, sorted(daemon & NO_DATACLASSES)
    assert not daemon & NO_ARCHIVES, sorted(daemon & NO_ARCHIVES)


def test_hd_version_loads_no_task(tmp_path: Path) -> None:
    modules = loaded(PROBE, ["--version"], tmp_path)
    assert not {m for m in modules if m.startswith("hippo_tasks.tasks.lifecycle")
                or m in INVOKE | MACHINERY}


@pytest.mark.parametrize("argv", [["status"], ["restart", "--service", "web"]], ids=" ".join)
def test_invoke_hot_commands_skip_the_machinery(tmp_path: Path, argv: list[str]) -> None:
    """Through invoke (the root tasks.py), invoke's own cost stays; ours must not."""
    running_daemon_registry(tmp_path)
    modules = loaded(INVOKE_PROBE, [*argv, "--project-root", str(tmp_path)], tmp_path)
    assert "hippo_tasks.tasks.lifecycle" in modules
    ours = MACHINERY - {"asyncio"}  # invoke's unittest.mock imports asyncio itself
    assert not modules & ours, sorted(modules & ours)


def test_fast_path_reads_flags_as_invoke_does() -> None:
    """Every hot task's flags (long and short, with their types) are the ones invoke's
    parser gives it, so the fast path can never accept a line differently."""
    from hippo_tasks.tasks import ns

    for name, (_, _, flags) in HOT.items():
        task = ns[name]
        parser_ctx = task.get_arguments()
        theirs = {}
        for arg in parser_ctx:
            names = [n for n in arg.names if n != arg.attr_name or len(n) > 1]
            long = [n for n in arg.names if len(n) > 1]
            theirs[long[0].replace("_", "-")] = (sorted(n for n in names if len(n) == 1),
                                                 arg.kind)
        ours = {f: ([SHORT[f]] if f in SHORT else [], kind_of(name, f)) for f in flags}
        assert ours == theirs, name


def test_fast_path_hands_unsure_lines_to_invoke() -> None:
    assert parse_hot(["status", "--json", "-p", "/x"]) == (
        "status", {"json_": True, "project_root": "/x"})
    assert parse_hot(["logs", "--lines=7", "-f"]) == ("logs", {"lines": "7", "follow": True})
    assert parse_hot(["logs", "-s", "a", "--service=b", "-s", "a,c"]) == (
        "logs", {"service": ["a", "b", "a,c"]})  # as invoke's iterable gives them
    # invoke's list flag takes a bare `--service` for no flag at all (every log): refused
    for bare in (["logs", "--service"], ["logs", "-s", "-f"], ["logs", "-s", "a", "-s"]):
        with pytest.raises(UsageError, match="--service needs a value"):
            parse_hot(bare)
    for line in (["status", "--help"], ["status", "-jp", "x"], ["status", "up"],
                 ["stop", "--service"], ["status", "--json=1"],
                 ["stop", "-s", "a", "-s", "b"], ["up", "--no-yes"], ["-l"],
                 ["status", "-p=/x"], ["restart", "-c"], ["up", "--seed", "--no-seed"],
                 ["up", "--no-seed=1"], ["up", "--port-offset", "-5"]):
        assert parse_hot(line) is None, line
    assert parse_hot(["up"]) == ("up", {})
    assert parse_hot(["up", "-d", "--profile", "ecom", "--no-seed", "--no-record"]) == (
        "up", {"detach": True, "profile": "ecom", "seed": False, "record": False})
    assert kwarg_for("project-root") == "project_root"


def test_fast_and_invoke_paths_say_the_same(tmp_path: Path) -> None:
    """Same output and exit status with and without the fast path, for the error
    answers (no daemon, unreachable daemon, no logs) a test can produce alone."""
    hd = [sys.executable, "-c", "from hippo_tasks.tasks.program import main; main()"]
    lines = [["status"], ["status", "--json"], ["restart", "--service", "web"], ["logs"],
             ["down"], ["--version"]]
    for daemon in (False, True):
        if daemon:  # (no `down` then: its clean-up would go after this very process)
            running_daemon_registry(tmp_path)
            lines.remove(["down"])
        for argv in lines:
            args = argv if argv == ["--version"] else [*argv, "-p", str(tmp_path)]
            runs = [subprocess.run([*hd, *args], cwd=tmp_path, capture_output=True, text=True,
                                   timeout=60, env={**os.environ, "NO_COLOR": "1",
                                                    "HIPPODROME_FAST_CLI": fast})
                    for fast in ("1", "0")]
            fast, slow = ((r.returncode, r.stdout, r.stderr) for r in runs)
            assert fast == slow, argv
