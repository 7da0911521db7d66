"""The foreground printer's views: distinct colours, --quiet, --show, the dashboard
line brought back after it scrolled away."""

from __future__ import annotations

import io
import time

import pytest
from stackutil import wait_for

from hippo_tasks.supervision.logs import LogHub
from hippo_tasks.supervision.printer import TerminalPrinter, colour_for, colour_map

BUNDLED = ["fake_cell", "controller", "moto", "admin_server", "search_proxy", "console",
           "ecom_settings_exporter", "merchandising_exporter", "global_worker", "fake_cognito",
           "event_pipe", "ecom_indexer_service", "ecom_ingest", "aws_provision", "seed",
           "dashboard"]


def test_sixteen_services_get_sixteen_colours_the_same_on_every_run() -> None:
    assert len(BUNDLED) == 16
    colours = colour_map(BUNDLED)
    assert len(set(colours.values())) == 16
    assert colours["console"] != colours["seed"]  # they shared one before
    assert colour_map(reversed(BUNDLED)) == colours
    assert colour_map(["api"])["api"] == colour_for("api")  # alone: its own colour
    assert len(colour_map([f"s{i}" for i in range(40)])) == 40  # past 16 they repeat


def _printed(printer: TerminalPrinter, out: io.BytesIO) -> list[str]:
    printer.close()
    return out.getvalue().decode().splitlines()


def test_quiet_shows_our_lines_and_warnings_only() -> None:
    out = io.BytesIO()
    printer = TerminalPrinter(out, colour=False, width=3, quiet=True)
    hub = LogHub(100, [printer])
    hub.publish("api", b"", [b"GET /items 200 1.0ms", b"WARNING: cache cold",
                             b"Traceback (most recent call last):", b"ERROR boom",
                             b"terrorist attack on prices"])
    hub.system("api", "starting -> running")
    printer.note("hippodrome | 1/1 services ready")
    assert _printed(printer, out) == ["api | WARNING: cache cold",
                                      "api | Traceback (most recent call last):",
                                      "api | ERROR boom",
                                      "api | --- starting -> running",
                                      "hippodrome | 1/1 services ready"]


def test_show_keeps_only_the_named_services() -> None:
    out = io.BytesIO()
    printer = TerminalPrinter(out, colour=False, width=3, show=["db"])
    hub = LogHub(100, [printer])
    hub.publish("api", b"", [b"from api"])
    hub.publish("db", b"", [b"from db"])
    hub.system("api", "starting -> running")
    note = "hippodrome | dashboard: http://127.0.0.1:9000   logs: .logs/x"
    printer.note(note)
    assert _printed(printer, out) == ["db  | from db", note]


def test_dashboard_line_on_request() -> None:
    out = io.BytesIO()
    printer = TerminalPrinter(out, colour=False, width=3)
    printer.note("hippodrome | dashboard: http://127.0.0.1:9000   logs: .logs/x")
    printer.show_dashboard()
    wait_for(lambda: out.getvalue().count(b"dashboard: ") == 2, 5, what="the repeat")
    assert _printed(printer, out)[-1].startswith("hippodrome | dashboard: http://127.0.0.1:9000")


def test_dashboard_line_comes_back_once_it_scrolled_away(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINES", "7")  # a 7-line terminal: 5 lines scroll it away
    out = io.BytesIO()
    printer = TerminalPrinter(out, colour=False, width=3, idle_repeat=0.1)
    hub = LogHub(100, [printer])
    printer.note("hippodrome | dashboard: http://127.0.0.1:9000   logs: .logs/x")
    hub.publish("api", b"", [b"line %d" % i for i in range(3)])
    time.sleep(0.6)  # idle, but the line is still on screen: no repeat
    assert out.getvalue().count(b"dashboard: ") == 1
    hub.publish("api", b"", [b"line %d" % i for i in range(3, 10)])
    wait_for(lambda: out.getvalue().count(b"dashboard: ") == 2, 5, what="the repeat")
    lines = _printed(printer, out)
    assert lines[-1].startswith("hippodrome | dashboard: ") and lines[-2] == "api | line 9"
