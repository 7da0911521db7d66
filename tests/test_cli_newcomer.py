"""Issue 12's small defects, through the real CLI: doctor follows the running daemon,
one meaning per short flag in every task's help."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

from stackutil import (
    HD_CLI,
    PY,
    REPO,
    TOY,
    free_offset,
    free_ports,
    hd,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)

TASKS = ["up", "down", "status", "start", "stop", "restart", "logs", "doctor", "seed",
         "probes", "e2e", "control.status", "control.start", "control.stop",
         "control.restart", "control.shutdown", "events.validate", "events.send", "why"]


def _flags(help_text: str) -> dict[str, str]:
    """`-p STRING, --project-root=STRING` -> {"project-root": "p"}; long-only -> ""."""
    found = {}
    for line in help_text.splitlines():
        m = re.match(r"\s+(?:-(\S),? ?\S*,? )?--(?:\[no-\])?([a-z-]*)", line)
        if m:
            found[m.group(2)] = m.group(1) or ""
    return found


def test_every_short_flag_means_one_thing_in_every_task(tmp_path: Path) -> None:
    meaning: dict[str, set[str]] = {}
    helps = {}
    for name in TASKS:
        res = subprocess.run([PY, "-m", "invoke", "-r", str(REPO), "--help", name],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        flags = _flags(res.stdout)
        assert flags, res.stdout
        assert "" not in flags, f"{name}: a flag with an empty name\n{res.stdout}"
        assert "--=" not in res.stdout
        helps[name] = res.stdout
        for long, short in flags.items():
            if short:
                meaning.setdefault(short, set()).add(long)
    assert meaning["p"] == {"project-root"}
    # `-s` in every task with --service, `why` too, whose service is also positional
    # (`hd why -s web` was "No idea what 'web' is", exit 2)
    assert all(_flags(h).get("service") == "s" for h in helps.values()
               if "--service" in h), {n: _flags(h).get("service") for n, h in helps.items()}
    assert meaning["f"] == {"follow", "force"}  # logs and down: no task has both
    assert all(len(longs) == 1 for short, longs in meaning.items() if short != "f"), meaning
    assert "--port-offset=STRING" in helps["up"] and "--profile=STRING" in helps["up"]
    root_help = {re.search(r"--project-root=STRING\s+(.*)", h).group(1)  # type: ignore[union-attr]
                 for h in helps.values() if "--project-root" in h}
    assert len(root_help) == 1, root_help


def test_dash_p_with_a_profile_name_says_what_it_means(tmp_path: Path) -> None:
    res = subprocess.run([PY, "-m", "invoke", "-r", str(REPO), "up", "-p", "ecom"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "-p is --project-root in every task" in res.stderr
    assert "--profile ecom" in res.stderr


def test_doctor_checks_what_the_running_daemon_runs(project: Path) -> None:
    """An `up --profile ecom --port-offset N` is running: plain `doctor` checks its ports."""
    dash, web, other = free_ports(3)
    offset = 7
    write_stack(project, "\n".join([
        "[stack]", "defaults = false", f"dashboard_port = {dash - offset}", "",
        "[services.web]", f'command = {json.dumps([PY, TOY, "--port", "${port}"])}',
        f"port = {web - offset}", 'profiles = ["ecom"]', "",
        "[services.core_only]", f'command = {json.dumps([PY, TOY, "--port", "${port}"])}',
        f"port = {other - offset}", 'profiles = ["core"]', ""]))
    hd(project, "up", "--detach", "--profile", "ecom", "--port-offset", str(offset), check=True)
    try:
        doc = hd(project, "doctor", timeout=60)
        out = doc.stdout
        assert (f"profile ecom, cell local, port offset {offset} (profile, port offset: the "
                "running daemon's)") in out
        assert f"port {web} (web) held by this stack" in out
        assert f"port {dash} (dashboard) held by this stack" in out
        assert "core_only" not in out
        asked = hd(project, "doctor", "--profile", "core", "--port-offset", "0", timeout=60)
        assert "profile core, cell local, port offset 0\n" in asked.stdout
        assert "(core_only)" in asked.stdout
        # web stopped, and a stranger on its port: "held by this stack" named the
        # stranger's pid, with exit 0, and `hd start -s web` then failed.
        hd(project, "stop", "-s", "web", check=True)
        stranger = socket.socket()
        stranger.bind(("127.0.0.1", web))
        stranger.listen()
        try:
            doc = hd(project, "doctor", timeout=60)
            assert doc.returncode == 1, doc.stdout
            assert f"port {web} (web) in use by pid {os.getpid()}" in doc.stdout, doc.stdout
            assert f"port {dash} (dashboard) held by this stack" in doc.stdout
        finally:
            stranger.close()
    finally:
        hd(project, "down", timeout=120)


def test_doctor_describes_the_running_daemons_mode_not_its_own(project: Path) -> None:
    """A daemon in process-group mode, doctor run where a cgroup can be made: the line
    named process groups, then described cgroup mode's promise (adv26 f/4)."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.a]\ncommand = ["sleep", "60"]\n')
    hd(project, "up", "--detach", check=True, env={"HIPPODROME_CGROUP": "off"})
    try:
        doc = hd(project, "doctor", timeout=60)
        line = next(ln for ln in doc.stdout.splitlines() if "supervision:" in ln)
        assert "the running daemon uses process groups + child subreaper + environment " \
               "mark (HIPPODROME_CGROUP=off): a child that leaves" in line, line
        assert "cgroup v2" not in line, line
    finally:
        hd(project, "down", timeout=120)


def test_an_empty_only_or_service_is_refused_not_taken_for_everything(project: Path) -> None:
    """A script's unset variable: `hd up --only ''` started the whole profile and `hd
    logs -s ''` printed every log, exit 0, where `--only ,` and `restart -s ''` refused
    (s/9, s/10)."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.a]\ncommand = ["sleep", "60"]\n')
    up = hd(project, "up", "--detach", "--only", "", timeout=60)
    assert up.returncode == 2 and "--only '' names no service" in up.stderr, up.stderr
    assert not (project / ".hippodrome" / "registry.json").exists() or \
        registry(project)["daemon"] is None
    logs = hd(project, "logs", "-s", "", timeout=60)
    assert logs.returncode == 2 and "--service '' names no service" in logs.stderr, logs.stderr


def test_doctor_with_a_bad_argument_exits_2_with_the_sentence_up_gives(project: Path) -> None:
    """Bad arguments were a failed check: `[FAIL] stack file: unknown profile ...`, exit 1,
    so a script could not tell a typo in its flag from a broken machine. An empty one (a
    script's unset variable) ran the default checks and passed, where `up` refused it."""
    for args in (["--profile", "nope"], ["--cell", "moon"], ["--port-offset", "abc"],
                 ["--profile", ""], ["--cell", ""]):
        doc = hd(project, "doctor", *args, timeout=60)
        up = hd(project, "up", "--detach", *args, timeout=60)
        assert up.returncode == 2, up.stdout + up.stderr
        assert doc.returncode == 2, (args, doc.stdout + doc.stderr)
        said = up.stderr.strip().splitlines()[-1]
        assert said.startswith("hippodrome: ") and said in doc.stderr, (said, doc.stderr)
        assert "stack file" not in doc.stdout + doc.stderr, doc.stdout
        assert "Traceback" not in doc.stderr


def test_e2e_without_pytest_says_how_to_install_it(tmp_path: Path) -> None:
    """A venv holding Hippodrome and its dependencies, but not pytest."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True, timeout=120)
    site = Path(sysconfig.get_paths()["purelib"])
    kept = tmp_path / "site"
    kept.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith(("pytest", "_pytest")):
            (kept / entry.name).symlink_to(entry)
    python = tmp_path / "venv" / "bin" / "python"
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    Path(venv_site, "hippodrome-test.pth").write_text(f"{REPO}\n{kept}\n")
    res = subprocess.run([str(python), "-m", "invoke", "-r", str(REPO), "e2e", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "e2e runs pytest, which is not installed for" in res.stderr
    assert "pip install pytest" in res.stderr
    assert "Traceback" not in res.stderr


def test_an_external_service_that_is_down_is_optional_not_unhealthy(project: Path) -> None:
    """As global_worker in ecom: probed, never started, and nothing waits for it."""
    dash, web, outside = free_ports(3)
    write_stack(project, "\n".join([
        "[stack]", "defaults = false", f"dashboard_port = {dash}", "",
        "[services.web]", f'command = {json.dumps([PY, TOY, "--port", "${port}"])}',
        f"port = {web}", "",
        "[services.router]", f'command = {json.dumps([PY, TOY, "--port", "${port}"])}',
        f"port = {outside}", "external = true", ""]))
    hd(project, "up", "--detach", check=True)
    try:
        table = hd(project, "status", check=True).stdout
        row = next(line for line in table.splitlines() if line.startswith("router"))
        assert re.search(r"router\s+external\s+not running \(optional: see README\)", row), row
        assert "unhealthy" not in table
        rows = json.loads(hd(project, "status", "--json", check=True).stdout)["services"]
        router = next(r for r in rows if r["name"] == "router")
        assert router["external"] is True and router["healthy"] is False
        # Started by name it is not a success while nothing answers (adv24 b/8, e/1)
        start = hd(project, "start", "-s", "router")
        assert start.returncode == 1 and "router is external and does not answer" in \
            start.stderr, start.stdout + start.stderr
        restart = hd(project, "restart", "-s", "router")
        assert restart.returncode == 1 and "so it was not restarted" in restart.stderr
        assert hd(project, "start").returncode == 0  # the whole stack: it is optional
    finally:
        hd(project, "down", timeout=120)


def test_a_dependant_of_an_external_service_starts_again_after_a_whole_stack_stop(
        project: Path) -> None:
    """`hd stop` held every service, the external one too, and `hd start` did not let
    it go: its dependant waited on it for ever, and `hd start` hung."""
    dash, outside = free_ports(2)
    write_stack(project, stack_header(dash)
                + f"[services.ext]\nport = {outside}\nexternal = true\n"
                + '[services.app]\ncommand = ["sleep", "600"]\ndepends_on = ["ext"]\n')
    hd(project, "up", "--detach", check=True)
    try:
        hd(project, "stop", check=True)
        started = hd(project, "start", timeout=30)
        assert started.returncode == 0, started.stdout + started.stderr
        rows = json.loads(hd(project, "status", "--json", check=True).stdout)["services"]
        assert {r["name"]: r["state"] for r in rows}["app"] == "running", rows
    finally:
        hd(project, "down", timeout=120)


def _two_talkers(project: Path) -> None:
    dash, a, b = free_ports(3)
    write_stack(project, stack_header(dash)
                + toy_service("web", a, "--say", "hello there")
                + toy_service("api", b, "--say", "WARNING: cache is cold"))


def _foreground_up(project: Path, *flags: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PY, "-m", "invoke", "-r", str(REPO), "up", "--project-root", str(project), *flags],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"}, start_new_session=True)


def _ready_then_stop(project: Path, proc: subprocess.Popen[bytes], usr1: bool = False) -> str:
    """Wait for `up` to say the stack is ready (the registry shows every service ready a
    moment before `up` prints so: a Ctrl+C in between rightly skips that line), then
    Ctrl+C it; everything it printed."""
    stream = proc.stdout
    assert stream is not None
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.extend(iter(stream.readline, b"")),
                              daemon=True)
    reader.start()
    try:
        wait_for(lambda: b"services ready" in b"".join(out), 30, what="up saying ready")
        if usr1:
            proc.send_signal(signal.SIGUSR1)
            wait_for(lambda: b"".join(out).count(b"| dashboard: http") == 2, 10,
                     what="the dashboard line again")
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return b"".join(out).decode()


def test_up_quiet_shows_warnings_and_our_lines_only(project: Path) -> None:
    _two_talkers(project)
    text = _ready_then_stop(project, _foreground_up(project, "--quiet"), usr1=True)
    assert "api | WARNING: cache is cold" in text
    assert "hello there" not in text
    assert "services ready" in text
    assert text.count("| dashboard: http://127.0.0.1:") == 2, text  # SIGUSR1 repeated it
    logs = hd(project, "logs", "--service", "web", check=True).stdout
    assert "hello there" in logs  # the files still get every line


def test_up_show_names_services_and_refuses_unknown_ones(project: Path) -> None:
    _two_talkers(project)
    text = _ready_then_stop(project, _foreground_up(project, "--show", "web"))
    assert "web | hello there" in text and "cache is cold" not in text
    bad = hd(project, "up", "--show", "wbe", timeout=60)
    assert bad.returncode == 2
    assert "--show names 'wbe', which is not in this stack" in bad.stderr
    assert "did you mean 'web'?" in bad.stderr
    detached = hd(project, "up", "--detach", "--quiet", timeout=60)
    assert detached.returncode == 2 and "foreground terminal" in detached.stderr


def test_logs_timestamps_come_from_the_daemon(project: Path) -> None:
    _two_talkers(project)
    plain = hd(project, "logs", "--timestamps", timeout=60)
    assert plain.returncode == 5 and "no daemon runs for this project" in plain.stderr
    hd(project, "up", "--detach", check=True)
    try:
        out = hd(project, "logs", "--timestamps", check=True).stdout
        stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"
        assert re.search(stamp + r" web \| hello there$", out, re.M), out
        assert re.search(stamp + r" api \| WARNING: cache is cold$", out, re.M), out
        assert re.search(stamp + r" web \| --- hippodrome: ", out, re.M), out
        one = hd(project, "logs", "--timestamps", "--service", "api", check=True).stdout
        assert re.search("^" + stamp + r" WARNING: cache is cold$", one, re.M), one
    finally:
        hd(project, "down", timeout=120)


def test_a_cwd_that_does_not_exist_fails_doctor_and_up_says_fix_it(project: Path) -> None:
    """`cwd = "servcies/api"` (a typo): `hd doctor` said OK, and `up` advised `hd down`
    then `hd up` as if the folder had been moved under a running stack (adv28 l/8)."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.api]\ncommand = ["sleep", "60"]\n'
                'cwd = "servcies/api"\n')
    doctor = hd(project, "doctor")
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert f"[FAIL] service api: cwd '{project / 'servcies' / 'api'}' is not a folder: " \
        "create it, or fix `cwd` in the stack file" in doctor.stdout, doctor.stdout
    up = hd(project, "up", "--detach")
    try:
        assert up.returncode == 1, up.stdout + up.stderr
        assert "does not exist: create it, or fix `cwd` in the stack file" in up.stderr, \
            up.stderr
    finally:
        hd(project, "down")


def test_doctor_fails_a_state_folder_that_cannot_be_written(project: Path) -> None:
    """`.hippodrome` that cannot be written (here mode 0555, with root's override of
    modes dropped; `chattr +i` or a read-only mount alike): every check said OK, exit 0,
    and `hd up` then failed with exit 10 (adv56 7)."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.api]\ncommand = ["sleep", "60"]\n')
    state = project / ".hippodrome"
    state.mkdir()
    state.chmod(0o555)
    drop = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    try:
        doctor = subprocess.run([*drop, *HD_CLI, "doctor", "--project-root", str(project)],
                                capture_output=True, text=True, timeout=120, cwd=project,
                                env={**os.environ, "NO_COLOR": "1"})
    finally:
        state.chmod(0o755)
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert f"[FAIL] {state} cannot be written by this user" in doctor.stdout, doctor.stdout


def test_up_with_no_stack_file_says_it_runs_the_bundled_stack(tmp_path: Path) -> None:
    """A stack file an editor deleted and wrote again (rm, then cp) just as `invoke up`
    read it ran the bundled stack, with no word that no stack file was found (adv37
    t/2). It says so."""
    up = hd(tmp_path, "up", "--detach", "--only", "fake_cell", "--port-offset",
            str(free_offset()), timeout=120)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"no hippodrome.toml in {tmp_path}: running the bundled stack" in up.stdout, \
            up.stdout
    finally:
        hd(tmp_path, "down", timeout=60)


def test_up_says_a_job_run_to_its_end_completed_as_status_does(project: Path) -> None:
    """The README's walkthrough: `hd up` printed `schema: stopped` for the job that ran
    to exit 0, which `hd status` calls `completed`; `stopped` is the word for a job
    stopped mid-run (adv57 F5)."""
    dash, web = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("schema", None, "--exit", "0",
                                                          kind="job")
                + toy_service("web", web, depends_on=["schema"]))
    up = hd(project, "up", "--detach", check=True)
    try:
        assert "schema: completed" in up.stdout and "schema: stopped" not in up.stdout, \
            up.stdout
    finally:
        hd(project, "down")
