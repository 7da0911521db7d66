"""`python -m hippo_platform.services.NAME --port P`: arguments, signals, clean exit.

The signal handler only records that a stop was asked for; the main thread then shuts
the server down, runs the app's close hooks (a service flushes its state there) and
returns 0, so the orchestrator can tell a clean stop from a crash by the exit code.
The HTTP loop runs in a thread so the main thread stays free to wait for signals.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from hippo_platform.services.common.app import App
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.server import ServiceServer
from hippo_platform.services.common.state import StateFileError

EXIT_OK = 0
EXIT_CRASHED = 1
EXIT_CANNOT_LISTEN = 2


def env_flag(name: str, default: bool = False) -> bool:
    """`1/true/yes/on` (any case) is true; unset is `default`."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def base_parser(name: str, default_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m hippo_platform.services.{name}")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, default=default_port, help="port to listen on")
    parser.add_argument(
        "--max-body-bytes", type=int, default=None, help="largest accepted request body"
    )
    return parser


def main(
    name: str,
    default_port: int,
    make_app: Callable[[argparse.Namespace], App],
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse the command line, build the app, serve until SIGTERM/SIGINT."""
    parser = base_parser(name, default_port)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        app = make_app(args)
    except StateFileError as exc:  # a sentence, where it was a traceback (adv54 F8)
        log_error(f"{name}: {exc}")
        return EXIT_CRASHED
    if args.max_body_bytes is not None:
        app.max_body = args.max_body_bytes
    return serve(app, args.host, args.port)


def serve(app: App, host: str, port: int) -> int:
    stop = threading.Event()

    def record_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, record_stop)
    signal.signal(signal.SIGINT, record_stop)
    try:
        server = ServiceServer((host, port), app)
    except OSError as exc:
        log_error(f"{app.name}: cannot listen on {host}:{port}: {exc}")
        app.close()
        return EXIT_CANNOT_LISTEN
    loop = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
    )
    loop.start()
    log_line(f"{app.name} listening on {server.base_url} (pid {os.getpid()})")
    code = EXIT_OK
    try:
        app.started(server.base_url)
        while not stop.wait(0.5):
            if not loop.is_alive():
                log_error(f"{app.name}: the HTTP loop died")
                code = EXIT_CRASHED
                break
    finally:
        log_line(f"{app.name} stopping")
        server.shutdown()
        server.server_close()
        app.close()
    log_line(f"{app.name} stopped")
    return code
