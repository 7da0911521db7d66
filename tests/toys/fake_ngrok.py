"""Stand-in for `ngrok http --log stdout --log-format json ADDR`.

Prints ngrok v3's JSON log records to stdout (the `started tunnel` record carries the
public URL), then waits. FAKE_TUNNEL_MODE and FAKE_TUNNEL_STATE as in fake_cloudflared;
mode `exit` prints what ngrok prints without an account token and exits 1.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def record(**fields: object) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime())
    sys.stdout.write(json.dumps({"t": stamp, **fields}) + "\n")
    sys.stdout.flush()


def main() -> int:
    mode = os.environ.get("FAKE_TUNNEL_MODE", "ok")
    state = os.environ.get("FAKE_TUNNEL_STATE")
    if state:
        with open(os.path.join(state, f"{os.getpid()}.json"), "w") as fh:
            json.dump({"tool": "ngrok", "argv": sys.argv[1:]}, fh)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record(lvl="info", msg="no configuration paths supplied")
    record(lvl="info", msg="open config file", path="/root/.config/ngrok/ngrok.yml", err=None)
    record(lvl="info", msg="starting web service", obj="web", addr="127.0.0.1:4040")
    if mode == "exit":
        err = (
            "authentication failed: Usage of ngrok requires a verified account and authtoken."
            "\n\nSign up for an account: https://dashboard.ngrok.com/signup\nInstall your "
            "authtoken: https://dashboard.ngrok.com/get-started/your-authtoken\r\n\r\n"
            "ERR_NGROK_4018\r\n"
        )
        record(lvl="eror", msg="failed to reconnect session", obj="tunnels.session", err=err)
        sys.stderr.write(
            "ERROR:  authentication failed: Usage of ngrok requires a verified "
            "account and authtoken.\nERROR:  ERR_NGROK_4018\n"
        )
        return 1
    record(lvl="info", msg="client session established", obj="tunnels.session")
    if mode != "silent":
        record(
            lvl="info",
            msg="started tunnel",
            obj="tunnels",
            name="command_line",
            addr=f"http://{sys.argv[-1]}",
            url=f"https://{os.getpid():x}-203-0-113-7.ngrok-free.app",
        )
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
