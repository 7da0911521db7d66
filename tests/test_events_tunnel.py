"""hippo_tasks.events.tunnel with stand-in cloudflared/ngrok executables first on PATH.

The fakes (tests/toys/fake_cloudflared.py, fake_ngrok.py) print what the real tools
print; every one they start records itself, and the fixture ends each by PID even when
a test fails. `FakeTools` is shared with test_events_bridge.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from fake_tunnels import FakeTools

from hippo_tasks.events import tunnel as tunnels
from hippo_tasks.events.tunnel import TunnelError
from hippo_tasks.registry.store import identity

REPO = Path(__file__).resolve().parents[1]
LOCAL_URL = "http://127.0.0.1:9123"


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTools]:
    """Fakes on PATH (first), their state folder in the environment; all ended after."""
    tools = FakeTools(tmp_path)
    monkeypatch.setenv("FAKE_TUNNEL_STATE", str(tools.state))
    monkeypatch.setenv("PATH", f"{tools.bin}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("FAKE_TUNNEL_MODE", raising=False)
    try:
        yield tools
    finally:
        tools.kill_all()


def gone_within(pid: int, create_time: float | None, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if tunnels.process_gone(pid, create_time):
            return True
        time.sleep(0.02)
    return False


# --- finding and starting a tool -------------------------------------------------------


def test_cloudflared_is_preferred_and_its_banner_gives_the_url(
    fake_tools: FakeTools, tmp_path: Path
) -> None:
    fake_tools.install("cloudflared", "ngrok")
    tunnel = tunnels.start_tunnel(LOCAL_URL, tmp_path / "tunnel.log", timeout=10)
    try:
        assert tunnel.tool == "cloudflared"
        assert tunnel.public_url == f"https://fake-{tunnel.pid}-quick-tunnel.trycloudflare.com"
        started = fake_tools.started()[tunnel.pid]
        assert started["argv"] == ["tunnel", "--no-autoupdate", "--url", LOCAL_URL]
        # its own session and process group, so it is ended by group and outlives us
        assert os.getsid(tunnel.pid) == tunnel.pid != os.getsid(0)
        assert tunnel.pgid == os.getpgid(tunnel.pid) == tunnel.pid
        assert tunnel.create_time == identity(tunnel.pid)
        assert "Your quick Tunnel has been created!" in (tmp_path / "tunnel.log").read_text()
        record = tunnel.record()
        assert {"tool", "pid", "pgid", "create_time", "log"} <= record.keys()
    finally:
        outcome = tunnel.stop()
    assert outcome == f"cloudflared tunnel (pid {tunnel.pid}): ended"
    assert gone_within(tunnel.pid, tunnel.create_time)


def test_ngrok_is_the_fallback_when_cloudflared_is_missing(
    fake_tools: FakeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tools.install("ngrok")
    monkeypatch.setenv("PATH", str(fake_tools.bin))
    tunnel = tunnels.start_tunnel("http://localhost:9124", tmp_path / "tunnel.log", timeout=10)
    try:
        assert tunnel.tool == "ngrok"
        assert tunnel.public_url == f"https://{tunnel.pid:x}-203-0-113-7.ngrok-free.app"
        argv = fake_tools.started()[tunnel.pid]["argv"]
        assert argv == ["http", "--log", "stdout", "--log-format", "json", "127.0.0.1:9124"]
    finally:
        tunnel.stop()
    assert gone_within(tunnel.pid, tunnel.create_time)


def test_neither_tool_on_path_says_how_to_install_and_starts_nothing(
    fake_tools: FakeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake_tools.empty))
    with pytest.raises(TunnelError) as caught:
        tunnels.launch(LOCAL_URL, tmp_path / "tunnel.log")
    text = caught.value.message()
    assert "neither cloudflared nor ngrok is on PATH" in text
    assert "nothing was started" in text
    assert "github.com/cloudflare/cloudflared/releases" in text
    assert "https://ngrok.com/download" in text and "add-authtoken" in text
    assert fake_tools.started() == {}
    assert not (tmp_path / "tunnel.log").exists()


def test_the_tunnel_gets_no_aws_secret_or_webhook_token(
    fake_tools: FakeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tools.install("cloudflared")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hippo-test-secret")
    monkeypatch.setenv("HIPPODROME_WEBHOOK_TOKEN", "hippo-test-token")
    probe = tmp_path / "env.txt"
    wrapper = fake_tools.bin / "cloudflared"
    wrapper.write_text(wrapper.read_text().replace("exec ", f'env > "{probe}"\nexec ', 1))
    tunnel = tunnels.start_tunnel(LOCAL_URL, tmp_path / "tunnel.log", timeout=10)
    tunnel.stop()
    seen = probe.read_text()
    assert "hippo-test-secret" not in seen and "hippo-test-token" not in seen
    assert "FAKE_TUNNEL_STATE=" in seen  # the rest of the environment is passed on


# --- failures ----------------------------------------------------------------------------


def test_a_tool_that_exits_is_reported_with_its_last_lines_and_a_hint(
    fake_tools: FakeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tools.install("ngrok")
    monkeypatch.setenv("PATH", str(fake_tools.bin))
    monkeypatch.setenv("FAKE_TUNNEL_MODE", "exit")
    with pytest.raises(TunnelError) as caught:
        tunnels.start_tunnel(LOCAL_URL, tmp_path / "tunnel.log", timeout=10)
    text = caught.value.message()
    assert "ngrok exited with code 1" in text
    assert "--- last output of ngrok ---" in text
    assert "ERR_NGROK_4018" in text
    assert "ngrok config add-authtoken <token>" in text
    assert str(tmp_path / "tunnel.log") in text


def test_a_tools_output_cannot_drive_the_terminal_it_is_shown_on() -> None:
    """A failing tool's last lines were printed as they came: an OSC 52 sequence wrote
    the user's clipboard, ESC[2J cleared the screen, OSC 0 retitled the window."""
    lines = ["\x1b]52;c;ZXZpbA==\x07copied", "\x1b[2Jcleared", "\x1b]0;pwned\x07", "bin\x00\x7f"]
    text = TunnelError("cloudflared exited with code 1", tool="cloudflared",
                       last_lines=lines).message()
    assert "\x1b" not in text and "\x07" not in text and "\x00" not in text
    assert "copied" in text and "cleared" in text


def test_cloudflared_refused_by_the_quick_tunnel_service(
    fake_tools: FakeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tools.install("cloudflared")
    monkeypatch.setenv("FAKE_TUNNEL_MODE", "exit")
    with pytest.raises(TunnelError) as caught:
        tunnels.start_tunnel(LOCAL_URL, tmp_path / "tunnel.log", timeout=10)
    text = caught.value.message()
    assert "cloudflared exited with code 1" in text
    assert "429 Too Many Requests" in text
    assert "rate-limiting quick tunnels" in text


def test_no_url_in_time_ends_the_tool_and_shows_what_it_printed(
    fake_tools: FakeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tools.install("cloudflared")
    monkeypatch.setenv("FAKE_TUNNEL_MODE", "silent")
    began = time.monotonic()
    with pytest.raises(TunnelError) as caught:
        tunnels.start_tunnel(LOCAL_URL, tmp_path / "tunnel.log", timeout=0.5)
    assert time.monotonic() - began < 5
    text = caught.value.message()
    assert "cloudflared printed no public URL within 0.5s" in text
    assert "Requesting new quick Tunnel on trycloudflare.com..." in text
    (pid,) = fake_tools.started()
    assert gone_within(pid, None)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(
    fake_tools: FakeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tools.install("cloudflared")
    monkeypatch.setenv("FAKE_TUNNEL_MODE", "ignore-term")
    tunnel = tunnels.start_tunnel(LOCAL_URL, tmp_path / "tunnel.log", timeout=10)
    began = time.monotonic()
    outcome = tunnel.stop(grace=0.3)
    assert 0.3 <= time.monotonic() - began < 3
    assert outcome.endswith("ignored SIGTERM for 0.3s: killed")
    assert tunnel.popen is not None and tunnel.popen.returncode == -signal.SIGKILL


def test_a_recorded_pid_now_used_by_another_process_is_not_signalled() -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = identity(stranger.pid)
        assert started is not None
        outcome = tunnels.end_process_group(stranger.pid, stranger.pid, started - 100.0,
                                            "/x/tunnel.log")
        assert outcome == "not signalled: its PID now belongs to another process"
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
    assert tunnels.end_process_group(stranger.pid, stranger.pid, started,
                                     "/x/tunnel.log") == "already gone"


def test_a_recorded_tunnel_must_lead_its_group_and_write_its_log(tmp_path: Path) -> None:
    """A registry names a live process with its true start time as the tunnel, and a
    stranger's process group as its group (or the log of another run): nothing is
    signalled. The real tunnel, leading its group and writing its log, is ended."""
    log = tmp_path / "tunnel.log"
    anchor = subprocess.Popen(["sleep", "60"], start_new_session=True,
                              stdout=subprocess.DEVNULL)
    victim = subprocess.Popen(["sh", "-c", "sleep 61 & wait"], start_new_session=True)
    with log.open("wb") as out:
        real = subprocess.Popen(["sleep", "62"], start_new_session=True, stdout=out)
    try:
        for pid, pgid, path in ((anchor.pid, victim.pid, str(log)),  # not its group
                                (anchor.pid, anchor.pid, str(log)),  # not writing the log
                                (real.pid, real.pid, str(tmp_path / "other.log")),
                                (real.pid, real.pid, None)):
            outcome = tunnels.end_process_group(pid, pgid, identity(pid), path)
            assert outcome.startswith("not signalled: "), outcome
        assert anchor.poll() is None and victim.poll() is None and real.poll() is None
        assert tunnels.end_process_group(real.pid, real.pid, identity(real.pid),
                                         str(log)) == "ended"
        assert real.wait(10) == -signal.SIGTERM
    finally:
        for proc in (anchor, victim, real):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.mark.parametrize(
    "url", ["http://10.0.0.7:9000", "https://127.0.0.1:9000", "http://127.0.0.1", "ftp://x"]
)
def test_only_loopback_http_targets(url: str) -> None:
    with pytest.raises(TunnelError, match="loopback"):
        tunnels.loopback_address(url)


def test_loopback_forms() -> None:
    assert tunnels.loopback_address("http://localhost:9000") == ("127.0.0.1", 9000)
    assert tunnels.loopback_address("http://[::1]:9000/x") == ("::1", 9000)
    assert tunnels.tunnel_command("ngrok", "ngrok", "http://[::1]:9000")[-1] == "[::1]:9000"


# --- output parsing ------------------------------------------------------------------


def test_cloudflared_url_is_the_trycloudflare_one_not_the_disclaimer_links() -> None:
    lines = [
        "2024-06-19T10:00:00Z INF Thank you for trying Cloudflare Tunnel. ... Terms of Use "
        "(https://www.cloudflare.com/website-terms/) ... https://developers.cloudflare.com/x",
        "2024-06-19T10:00:00Z INF Requesting new quick Tunnel on trycloudflare.com...",
        "2024-06-19T10:00:02Z INF |  https://seasonal-deck-organisms-sf.trycloudflare.com   |",
    ]
    found = [tunnels.parse_public_url("cloudflared", line) for line in lines]
    assert found == [None, None, "https://seasonal-deck-organisms-sf.trycloudflare.com"]


def test_ngrok_url_comes_only_from_the_started_tunnel_record() -> None:
    parse = tunnels.parse_public_url
    assert parse("ngrok", '{"msg":"started tunnel","url":"https://a.ngrok-free.app"}') == (
        "https://a.ngrok-free.app"
    )
    assert parse("ngrok", '{"msg":"started tunnel","url":"http://a.ngrok.io"}') is None
    assert parse("ngrok", '{"msg":"starting web service","addr":"127.0.0.1:4040"}') is None
    assert parse("ngrok", "t=2024 lvl=info msg=x url=https://a.ngrok.io") is None
    assert parse("ngrok", "[1, 2]") is None


def test_importing_the_tunnel_module_does_not_import_boto3() -> None:
    code = (
        "import sys, hippo_tasks.events.tunnel;"
        " print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
