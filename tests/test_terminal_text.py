"""Service output on the user's terminal (hippo_tasks/terminal_text.py): colours pass,
every other control sequence is shown, not obeyed, on every path that prints it: the
foreground `hd up`, `hd logs` (with and without --timestamps) and a failure's last
lines. The files keep the bytes as written."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from stackutil import HD_CLI, free_ports, hd, port_free, stack_header, wait_for, write_stack

from hippo_tasks.terminal_text import for_terminal, line_for_terminal, lines_for_terminal

HOSTILE = (b"clip \x1b]52;c;cm0gLXJmIH4vKg==\x07 title \x1b]0;pwned\x07 clear \x1b[2J\x1b[3J"
           b" over\rwritten \x9b6n \xff\xfe tab\tend")
SAFE_TO_SHOW = ("clip ^[]52;c;cm0gLXJmIH4vKg==^G title ^[]0;pwned^G clear ^[[2J^[[3J"
                " over^Mwritten \ufffd6n \ufffd\ufffd tab\tend")
"""\\x9b is not UTF-8 on its own: U+FFFD, like \\xff and \\xfe."""


@pytest.mark.parametrize("text,shown", [
    ("plain line\twith tab", "plain line\twith tab"),
    ("\x1b[31mred\x1b[0m and \x1b[1;32mbold green\x1b[m", "\x1b[31mred\x1b[0m and "
     "\x1b[1;32mbold green\x1b[m"),
    ("a\x1b]52;c;aGk=\x07b", "a^[]52;c;aGk=^Gb"),
    ("\x1b[2J\x1b[H", "^[[2J^[[H"),
    ("\x1b[31mred\x1b]0;t\x1b\\", "\x1b[31mred^[]0;t^[\\\x1b[0m"),  # reset: the next line is plain
    # conceal (SGR 8) hid the rest of the line and every line after it; 38;5;8 is a colour
    ("x \x1b[8msecret", "x secret"),
    ("\x1b[1;8;31mbold red", "\x1b[1;31mbold red\x1b[0m"),
    ("\x1b[38;5;8mgrey\x1b[0m", "\x1b[38;5;8mgrey\x1b[0m"),
    # text the colour of its background hid a line as well as conceal: the background goes
    ("\x1b[30;40mhidden\x1b[0m", "\x1b[30;40;49mhidden\x1b[0m"),
    ("\x1b[31m\x1b[41mhidden", "\x1b[31m\x1b[41;49mhidden\x1b[0m"),
    ("\x1b[91;101mx", "\x1b[91;101;49mx\x1b[0m"),
    ("\x1b[38;5;1;41mx", "\x1b[38;5;1;41;49mx\x1b[0m"),  # colour 1 of 256 is red (31)
    ("\x1b[38;2;9;9;9;48;2;9;9;9mx", "\x1b[38;2;9;9;9;48;2;9;9;9;49mx\x1b[0m"),
    ("\x1b[38:2::9:9:9;48:2::9:9:9mx", "\x1b[38:2::9:9:9;48:2::9:9:9;49mx\x1b[0m"),
    ("\x1b[37;41mwhite on red\x1b[0m", "\x1b[37;41mwhite on red\x1b[0m"),
    ("\x1b[41m\x1b[0;31mx", "\x1b[41m\x1b[0;31mx\x1b[0m"),  # a reset between them
    ("windows line\r", "windows line"),
    ("a\rb", "a^Mb"),
    ("\x9b2J \u009d0;t\x07", "\\x9b2J \\x9d0;t^G"),
    ("del\x7f nul\x00", "del^? nul^@"),
    # a right-to-left override turned the rest of the line around on screen
    ("ok \u202egnp.exe\u202c, \u2067x\u2069 caf\u00e9", "ok <U+202E>gnp.exe<U+202C>, "
     "<U+2067>x<U+2069> caf\u00e9"),
])
def test_colours_pass_and_other_controls_are_shown(text: str, shown: str) -> None:
    assert for_terminal(text) == shown


def test_bytes_that_are_not_utf8_are_shown_as_replacement_characters() -> None:
    assert line_for_terminal(HOSTILE).decode() == SAFE_TO_SHOW
    assert line_for_terminal(b"plain") == b"plain"


def _no_raw_controls(text: str) -> None:
    for bad in ("\x1b]", "\x1b[2J", "\x07", "\r", "\x9b"):
        assert bad not in text, f"{bad!r} reached the terminal: {text!r}"


def _evil(project: Path, exit_code: int | None) -> str:
    """A service printing HOSTILE then `ready`, then staying up (or exiting)."""
    script = project / "evil.py"
    tail = f"sys.exit({exit_code})" if exit_code is not None else "time.sleep(600)"
    script.write_text("import sys, time\n"
                      f"sys.stdout.buffer.write({HOSTILE!r} + b'\\nready\\n')\n"
                      f"sys.stdout.flush()\n{tail}\n")
    return (f'[services.evil]\ncommand = ["{sys.executable}", "{script}"]\n'
            'readiness = { log = "ready" }\n')


def test_hd_logs_and_timestamps_show_hostile_output_safely(project: Path) -> None:
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + _evil(project, None))
    hd(project, "up", "--detach", check=True)
    try:
        assert HOSTILE in (project / ".logs" / "latest" / "evil.log").read_bytes()
        for flags in ((), ("--timestamps",)):
            out = hd(project, "logs", "--service", "evil", *flags, check=True).stdout
            assert SAFE_TO_SHOW in out, out
            _no_raw_controls(out)
    finally:
        hd(project, "down")


def test_a_failures_last_lines_show_hostile_output_safely(project: Path) -> None:
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + _evil(project, 3).replace(
        'readiness = { log = "ready" }', 'readiness = { log = "never" }'))
    up = hd(project, "up", "--detach")
    assert up.returncode != 0
    assert SAFE_TO_SHOW in up.stderr, up.stderr
    _no_raw_controls(up.stdout + up.stderr)


def test_the_foreground_up_shows_hostile_output_safely(project: Path) -> None:
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + _evil(project, None))
    log = project / "up.out"
    with log.open("wb") as out:
        up = subprocess.Popen([*HD_CLI, "up", "--project-root", str(project)], cwd=project,
                              stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: b"evil | ready" in log.read_bytes(), 60, what="evil's ready line")
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(30)
    text = log.read_bytes().decode()
    assert f"evil | {SAFE_TO_SHOW}" in text, text
    _no_raw_controls(text)


def test_hd_why_shows_a_blockers_hostile_lines_safely(project: Path) -> None:
    """`hd why` printed a blocker's last lines with their raw escapes."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + _evil(project, None).replace(
        'readiness = { log = "ready" }', 'readiness = { log = "never" }\nstart_timeout = 120')
        + '[services.app]\ncommand = ["sleep", "600"]\ndepends_on = ["evil"]\n')
    up = subprocess.Popen([*HD_CLI, "up", "--detach", "--project-root", str(project)],
                          cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        log = project / ".logs" / "latest" / "evil.log"
        wait_for(lambda: log.exists() and HOSTILE in log.read_bytes(), 60, what="evil's lines")
        why = hd(project, "why", "app", timeout=60)
        assert "^[]52;c;" in why.stdout, why.stdout + why.stderr
        _no_raw_controls(why.stdout + why.stderr)
    finally:
        hd(project, "down")
        up.wait(60)


def test_a_port_holders_hostile_command_line_is_shown_safely(project: Path) -> None:
    """`port N is already in use by pid P (<its command line>)`: anyone's process names
    itself, and its argv retitled and cleared the terminal of `hd up` and `hd doctor`."""
    dash, port = free_ports(2)
    holder = subprocess.Popen([sys.executable, "-c", "import socket, sys, time; s = socket."
                               "socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen();"
                               " time.sleep(600)", str(port), "\x1b]0;PWNED\x07\x1b[2J",
                               "x\r\nFAKE: hippodrome | stack ready"])
    try:
        wait_for(lambda: not port_free(port), 10, what="the holder listening")
        write_stack(project, stack_header(dash) + f'[services.web]\ncommand = ["sleep", "9"]\n'
                                                  f'port = {port}\n')
        up = hd(project, "up", "--detach", timeout=60)
        assert up.returncode == 4 and "^[]0;PWNED^G^[[2J" in up.stderr, up.stderr
        doctor = hd(project, "doctor", timeout=60)
        assert "^[]0;PWNED^G^[[2J" in doctor.stdout, doctor.stdout
        _no_raw_controls(up.stdout + up.stderr + doctor.stdout + doctor.stderr)
        # its line break too: a line of its choosing in our output (adv54 F2)
        for said in (up.stderr, doctor.stdout):
            assert "x^M^JFAKE: hippodrome" in said, said
            assert not any(line.startswith("FAKE") for line in said.splitlines()), said
    finally:
        holder.kill()
        holder.wait(10)


def test_a_message_of_several_lines_keeps_its_breaks() -> None:
    assert lines_for_terminal("one\ntwo \x1b]0;t\x07") == "one\ntwo ^[]0;t^G"
    assert lines_for_terminal("plain\nlines") == "plain\nlines"


def on_a_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, bytes]:
    """`hd ARGV` with a pseudo-terminal for its output, TERM and NO_COLOR as `env`
    gives them; its exit code and what the terminal received."""
    import pty

    full = {k: v for k, v in os.environ.items() if k not in ("TERM", "NO_COLOR")}
    leader, follower = pty.openpty()
    proc = subprocess.run([*HD_CLI, *argv], cwd=cwd, stdout=follower, stderr=follower,
                          env={**full, **env}, timeout=60)
    os.close(follower)
    said = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(leader, 65536):
            said += chunk
    os.close(leader)
    return proc.returncode, said


@pytest.mark.parametrize(("env", "coloured"), [
    ({"TERM": "xterm-256color"}, True), ({"TERM": "dumb"}, False), ({}, False),
    ({"TERM": "xterm", "NO_COLOR": ""}, False)])
def test_colour_only_on_a_terminal_that_understands_it(env: dict[str, str],
                                                       coloured: bool) -> None:
    """TERM=dumb (Emacs' shell, some CI consoles) got `^[[31m` (adv24 c/5); an unset
    TERM is taken as dumb, as git and ls take it. On a real pseudo-terminal."""
    with tempfile.TemporaryDirectory() as empty:
        code, said = on_a_terminal(["status"], Path(empty), env)
    assert code == 5 and b"No Hippodrome daemon" in said, said
    assert (b"\x1b[" in said) == coloured, (env, said)


@pytest.mark.parametrize(("env", "coloured"), [({"TERM": "xterm"}, True),
                                               ({"TERM": "dumb"}, False),
                                               ({"TERM": "xterm", "NO_COLOR": "1"}, False)])
def test_a_services_own_colours_go_where_colour_is_off(tmp_path: Path, env: dict[str, str],
                                                       coloured: bool) -> None:
    """TERM=dumb or NO_COLOR turned Hippodrome's colours off, while a service's own
    passed: `^[[31mred^[[0m hi` on the very terminals the rule is for (adv25 d/6)."""
    run = tmp_path / ".logs" / "20260101-000000"
    run.mkdir(parents=True)
    (tmp_path / ".logs" / "latest").symlink_to(run.name)
    (run / "a.log").write_bytes(b"\x1b[31mred\x1b[0m hi\n")
    (tmp_path / "hippodrome.toml").write_text("[stack]\ndefaults = false\n")
    code, said = on_a_terminal(["logs", "-s", "a"], tmp_path, env)
    assert code == 0 and b"red" in said and b"hi" in said, said
    assert (b"\x1b[31m" in said) == coloured, (env, said)


def test_quoted_colours_go_where_colour_is_off(project: Path) -> None:
    """`hd why` and `hd status` kept the colours of the text they quote (a service's
    last lines, a command in a reason), and added a reset, into a pipe and under
    NO_COLOR, where `hd logs` takes them out (adv53 F2). On a terminal they stay."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash)
                + '[services.a]\ncommand = ["/nonexistent\\u001b[31mRED"]\nblocking = false\n'
                + '[services.c]\ncommand = ["sh", "-c", "printf \'\\\\033[31mred\\\\n\'; exit 7"]'
                + '\nblocking = false\n')
    hd(project, "up", "--detach", timeout=60)
    try:
        wait_for(lambda: "exited with code 7" in hd(project, "status").stdout, 30,
                 what="c's failure in the status")
        for argv in (("status",), ("why", "c"), ("why", "a"), ("restart", "-s", "a")):
            out = hd(project, *argv, timeout=60)
            said = out.stdout + out.stderr
            assert "RED" in said or "red" in said, (argv, said)
            assert "\x1b" not in said, (argv, said)
        code, said = on_a_terminal(["why", "c"], project, {"TERM": "xterm"})
        assert b"\x1b[31mred" in said, said
    finally:
        hd(project, "down")
