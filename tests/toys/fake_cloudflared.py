"""Stand-in for `cloudflared tunnel --url ...`: prints what a quick tunnel prints, then waits.

The banner is cloudflared's own (zerolog console lines on stderr, the URL in an ASCII box
built as cloudflared's AsciiBox does), so the URL parser is tested against the real shape,
disclaimer URLs included. Behaviour comes from the environment, since the code under test
starts this by name from PATH:

- FAKE_TUNNEL_MODE: `ok` (default), `ignore-term` (ok, but SIGTERM is ignored),
  `silent` (banner without a URL, then waits), `exit` (an error, exit 1).
- FAKE_TUNNEL_STATE: a folder; `<pid>.json` there records argv, so tests can check the
  command line and find every fake they started (to end it even when a test fails).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

DISCLAIMER = (
    "Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a "
    "quick way to experiment and try it out. However, be aware that these account-less "
    "Tunnels have no uptime guarantee, are subject to the Cloudflare Online Services Terms "
    "of Use (https://www.cloudflare.com/website-terms/), and Cloudflare reserves the right "
    "to investigate your use of Tunnels for violations of such terms. If you intend to use "
    "Tunnels in production you should use a pre-created named tunnel by following: "
    "https://developers.cloudflare.com/cloudflare-one/connections/connect-apps"
)


def log(message: str, level: str = "INF") -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f"{stamp} {level} {message}\n")
    sys.stderr.flush()


def ascii_box(lines: list[str], padding: int = 2) -> list[str]:
    width = max(len(line) for line in lines)
    border = "+" + "-" * (width + 2 * padding) + "+"
    pad = " " * padding
    return [border, *(f"|{pad}{line.ljust(width)}{pad}|" for line in lines), border]


def public_url() -> str:
    return f"https://fake-{os.getpid()}-quick-tunnel.trycloudflare.com"


def main() -> int:
    mode = os.environ.get("FAKE_TUNNEL_MODE", "ok")
    state = os.environ.get("FAKE_TUNNEL_STATE")
    if state:
        with open(os.path.join(state, f"{os.getpid()}.json"), "w") as fh:
            json.dump({"tool": "cloudflared", "argv": sys.argv[1:]}, fh)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log(DISCLAIMER)
    log("Requesting new quick Tunnel on trycloudflare.com...")
    if mode == "exit":
        log(
            "Error unmarshaling QuickTunnel response: error code: 1015 "
            "error=\"invalid character 'e' looking for beginning of value\" "
            'status_code="429 Too Many Requests"',
            "ERR",
        )
        log(
            "failed to unmarshal quick Tunnel: invalid character 'e' looking for beginning "
            "of value",
            "ERR",
        )
        return 1
    if mode != "silent":
        banner = (
            "Your quick Tunnel has been created! Visit it at (it may take some time to be "
            "reachable):"
        )
        for line in ascii_box([banner, public_url()]):
            log(line)
    log(
        "Cannot determine default configuration path. No file [config.yml config.yaml] in "
        "[~/.cloudflared ~/.cloudflare-warp ~/cloudflare-warp /etc/cloudflared "
        "/usr/local/etc/cloudflared]"
    )
    log("Version 2024.6.1 (Checksum 0000)")
    log(f"Settings: map[ha-connections:1 no-autoupdate:true protocol:quic url:{sys.argv[-1]}]")
    log("Starting metrics server on 127.0.0.1:20241/metrics")
    if mode != "silent":
        log(
            "Registered tunnel connection connIndex=0 connection=00000000-0000-0000-0000-"
            "000000000000 event=0 ip=198.41.200.13 location=ams01 protocol=quic"
        )
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
