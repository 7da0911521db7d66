"""The dashboard page in real headless Chromium, against a real daemon over toy services.

Nothing is mocked: the daemon is started by `invoke up --detach`, the services are
tests/toys scripts, and every click goes through the page's own JavaScript to the JSON
API. Where a test checks an effect (a new PID, a stopped service) it asks the daemon's
API too, not just the page, so a page that merely *looks* right cannot pass.

Chromium is Debian's (`apt-get install chromium`, /usr/bin/chromium, or
$HIPPODROME_CHROMIUM), driven by the `playwright` package. A missing browser or package
FAILS these tests with the command to run; it never skips them, since CI installs both.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import re
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from chromium import launched
from stackutil import (
    PY,
    REPO,
    TOYS,
    free_ports,
    hd,
    registry,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

SCREENSHOT = REPO / "benchmarks" / "dashboard.png"
CHATTY = str(TOYS / "chatty.py")
SINK = str(TOYS / "event_sink.py")
CAP = 2000  # the page's lines-per-pane cap (page.html)
WAIT_MS = 10_000


# ---- fixtures: the browser, a page that reports its own errors, a running stack ----------

@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; any script error or CSP violation on it fails the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console: {msg.text}")
          if "Content Security Policy" in msg.text else None)
    pg.on("dialog", lambda d: problems.append(f"dialog opened: {d.message}"))
    try:
        yield pg
    finally:
        context.close()
    assert problems == []


@dataclass
class Stack:
    root: Path
    url: str
    ports: dict[str, int]

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/api/status", timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data

    def row(self, name: str) -> dict[str, Any]:
        return next(r for r in self.status()["services"] if r["name"] == name)

    def last_line(self, name: str) -> dict[str, Any]:
        url = f"{self.url}/api/services/{name}/logs?lines=1"
        with urllib.request.urlopen(url, timeout=10) as resp:
            lines: list[dict[str, Any]] = json.loads(resp.read())["lines"]
            return lines[-1]


def run_stack(root: Path, services: dict[str, str], ports: dict[str, int],
              extra: str = "") -> Stack:
    dash = free_ports(1)[0]
    write_stack(root, stack_header(dash) + "\n".join(services.values()) + extra)
    hd(root, "up", "--detach", check=True)
    return Stack(root, f"http://127.0.0.1:{dash}", ports)


@pytest.fixture
def stacks(project: Path) -> Iterator[list[Stack]]:
    """Stacks a test starts; brought down gracefully here, forcefully by `project`."""
    started: list[Stack] = []
    yield started
    for s in started:
        hd(s.root, "down")


def until(page: Page, expression: str, what: str) -> Any:
    """Poll a JS expression from outside: page.wait_for_function would eval() inside the
    page, which the page's Content-Security-Policy (rightly) forbids."""
    return wait_for(lambda: page.evaluate(expression), timeout=WAIT_MS / 1000, what=what)


def open_page(page: Page, stack: Stack) -> None:
    page.goto(stack.url + "/")
    until(page, "window.__hippo.firstRender !== null", "the first render")


def svc(page: Page, name: str) -> Locator:
    return page.locator(f'tbody[data-service="{name}"]')


def expect_state(page: Page, name: str, state: str) -> None:
    from playwright.sync_api import expect

    expect(svc(page, name).locator(".c-state .badge")).to_have_text(state, timeout=WAIT_MS)


def open_logs(page: Page, name: str) -> Locator:
    svc(page, name).locator('button[data-action="logs"]').click()
    return svc(page, name).locator(".log")


# ---- the tests ---------------------------------------------------------------------

def test_every_service_is_shown_with_its_state_links_and_reasons(
        project: Path, stacks: list[Stack], page: Page) -> None:
    from playwright.sync_api import expect

    web, api, broken = free_ports(3)
    ports = {"web": web, "api": api, "broken": broken}
    stacks.append(s := run_stack(project, {
        "web": toy_service("web", web, "--say", "web is up", "--lines", "12"),
        "api": toy_service("api", api, "--say", "api is up", description="the public API"),
        "migrate": toy_service("migrate", None, "--exit", "0", kind="job"),
        "broken": toy_service("broken", broken, "--delay", "0.1", "--exit", "3",
                              blocking=False),
    }, ports))
    open_page(page, s)
    status = s.status()
    assert [r["state"] for r in status["services"]] == ["running", "running", "stopped",
                                                         "failed"]
    for r in status["services"]:
        expect_state(page, r["name"], r["state"])
        expect(svc(page, r["name"]).locator(".c-pid")).to_have_text(
            str(r["pid"]) if r["pid"] else "—")
    for name, port in (("web", web), ("api", api)):
        link = svc(page, name).locator(".c-port a")
        expect(link).to_have_text(str(port))
        assert link.get_attribute("href") == f"http://127.0.0.1:{port}/"
        expect(svc(page, name).locator(".c-health")).to_have_text("ok")
    expect(svc(page, "broken").locator(".c-exit")).to_have_text("3")
    expect(svc(page, "broken").locator(".c-reason")).to_have_text(s.row("broken")["reason"])
    expect(svc(page, "broken").locator(".c-name small")).to_have_text("non-blocking")
    expect(svc(page, "migrate").locator(".c-name small")).to_have_text("job")
    # the stack file's `description`, "for the status page", was shown nowhere
    expect(svc(page, "api").locator(".c-name")).to_have_attribute("title", "the public API")
    expect(page.locator("#h-profile")).to_have_text(status["profile"])
    expect(page.locator("#h-cell")).to_have_text(status["cell"])
    expect(page.locator("#h-prefix")).to_have_text(status["table_prefix"])
    expect(page.locator("#h-uptime")).to_have_text(re.compile(r"^\d+s$"))
    expect(page.locator("#conn")).to_have_text("live")

    expect(open_logs(page, "web")).to_contain_text("web is up", timeout=WAIT_MS)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"dashboard screenshot: {SCREENSHOT}")


def test_port_links_reach_the_service_from_a_dashboard_on_another_loopback_address(
        project: Path, page: Page) -> None:
    """With `HIPPODROME_DASHBOARD_HOST=::1` the links were http://[::1]:PORT/, built
    from the page's own host, where no service listens (adv26 h/6)."""
    from playwright.sync_api import expect

    dash, web = free_ports(2)
    env = {"HIPPODROME_DASHBOARD_HOST": "::1"}
    write_stack(project, stack_header(dash) + toy_service("web", web))
    hd(project, "up", "--detach", check=True, env=env)
    try:
        page.goto(f"http://[::1]:{dash}/")
        until(page, "window.__hippo.firstRender !== null", "the first render")
        link = svc(page, "web").locator(".c-port a")
        expect(link).to_have_text(str(web))
        assert link.get_attribute("href") == f"http://127.0.0.1:{web}/"
        with urllib.request.urlopen(link.get_attribute("href") + "healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        hd(project, "down", env=env)


def test_logs_follow_live_filter_and_never_run_what_a_service_prints(
        project: Path, stacks: list[Stack], page: Page) -> None:
    from playwright.sync_api import expect

    web, img = free_ports(2)
    script = "<script>window.__pwned = 1</script>"
    tag = '<img src="x" onerror="window.__pwned = 2">'
    stacks.append(s := run_stack(project, {
        "web": toy_service("web", web, "--lines", "30", "--say", script),
        "img": toy_service("img", img, "--say", tag),
    }, {"web": web, "img": img}))
    open_page(page, s)
    pane = open_logs(page, "web")
    other = open_logs(page, "img")
    expect(pane.locator(".ln", has_text=script)).to_have_count(1, timeout=WAIT_MS)
    expect(other.locator(".ln", has_text=tag)).to_have_count(1, timeout=WAIT_MS)
    assert pane.locator(".ln", has_text=script).evaluate("e => e.lastChild.data") == script
    assert page.locator(".log script, .log img").count() == 0
    assert page.evaluate("window.__pwned") is None

    marker = f"/marker-{uuid.uuid4().hex}"  # toy.py logs every request it answers
    with urllib.request.urlopen(f"http://127.0.0.1:{web}{marker}", timeout=10):
        pass
    expect(pane.locator(".ln", has_text=f"request {marker}")).to_have_count(1, timeout=WAIT_MS)

    shown = pane.locator(".ln:not([hidden])")
    total = shown.count()
    assert total > 30
    svc(page, "web").locator('input[type="search"]').fill("MARKER-")  # case-insensitive
    expect(shown).to_have_count(1)
    expect(shown).to_contain_text(f"request {marker}")
    expect(pane.locator(".ln", has_text=re.compile(r"line 7$"))).to_be_hidden()
    svc(page, "web").locator('input[type="search"]').fill("")
    expect(shown).to_have_count(total)

    svc(page, "web").locator('button[data-action="logs"]').click()
    expect(svc(page, "web").locator(".log")).to_have_count(0)


def test_a_lines_colours_are_shown_as_colours_and_other_escapes_are_dropped(
        project: Path, stacks: list[Stack], page: Page) -> None:
    from playwright.sync_api import expect

    web = free_ports(1)[0]
    said = ("\x1b[1;31mred\x1b[0m plain\x1b[K \x1b[38;5;202mpicked\x1b[0m "
            "\x1b[32m<b>green</b>\x1b[39m end"
            # OSC 8 (a link: its text kept), a window title, a reset, SS3, C1 CSI (o/3)
            " \x1b]8;;http://example.com\x1b\\docs\x1b]8;;\x1b\\ \x1b]0;title\x07t"
            "\x1bc\x1bOAx\x9b1mz")
    stacks.append(s := run_stack(project, {"web": toy_service("web", web, "--say", said)},
                                 {"web": web}))
    open_page(page, s)
    pane = open_logs(page, "web")
    line = pane.locator(".ln", has_text="plain")
    expect(line).to_have_count(1, timeout=WAIT_MS)
    assert line.evaluate("e => e.textContent") == "red plain picked <b>green</b> end docs txz"
    spans = line.evaluate("e => [...e.querySelectorAll('span')].map(s => [s.className, "
                          "s.textContent])")
    assert spans == [["a31 ab", "red"], ["a32", "<b>green</b>"], ["ab", "z"]]
    assert page.locator(".log b").count() == 0
    # a rainbow (a colour per character) is shown as its words alone: its spans froze
    # the tab for 40 s (adv29 o/7)
    rainbow = "".join(f"\x1b[3{i % 7 + 1}m{c}" for i, c in enumerate("abc" * 300))
    assert page.evaluate("t => window.__hippo.coloured(t).length", rainbow) == 1
    assert page.evaluate("t => window.__hippo.coloured(t)[0]", rainbow) == "abc" * 300
    svc(page, "web").locator('input[type="search"]').fill("RED PLAIN")  # across its spans
    expect(pane.locator(".ln:not([hidden])")).to_have_count(1)
    assert "\x1b" not in pane.evaluate("e => e.textContent")


def test_a_starting_service_has_no_health_yet(
        project: Path, stacks: list[Stack], page: Page) -> None:
    """While it starts, a service was painted `unhealthy` in red, where `hd status` shows
    `-` (adv28 m/8): its probe has not had a chance to pass yet."""
    import threading

    from playwright.sync_api import expect

    web = free_ports(1)[0]
    stacks.append(s := run_stack(project, {"web": toy_service(
        "web", web, "--delay", "3", readiness={"http": "/"})}, {"web": web}))
    open_page(page, s)
    expect(svc(page, "web").locator(".c-health")).to_have_text("ok", timeout=WAIT_MS)
    restart = threading.Thread(target=lambda: urllib.request.urlopen(urllib.request.Request(
        s.url + "/api/services/web/restart", method="POST"), timeout=60).read())
    restart.start()
    try:
        expect_state(page, "web", "starting")
        health = svc(page, "web").locator(".c-health")
        assert health.text_content() == "\u2014" and "unhealthy" not in (
            health.get_attribute("class") or ""), health.text_content()
    finally:
        restart.join(60)
    expect(svc(page, "web").locator(".c-health")).to_have_text("ok", timeout=WAIT_MS)


def test_buttons_restart_stop_and_start_the_real_services(
        project: Path, stacks: list[Stack], page: Page) -> None:
    from playwright.sync_api import expect

    web, api = free_ports(2)
    stacks.append(s := run_stack(project, {
        "web": toy_service("web", web), "api": toy_service("api", api),
    }, {"web": web, "api": api}))
    open_page(page, s)
    before = s.row("web")["pid"]
    row = svc(page, "web")
    expect(row.locator(".c-pid")).to_have_text(str(before))

    row.locator('button[data-action="restart"]').click()
    after = wait_for(lambda: (r := s.row("web"))["state"] == "running"
                     and r["pid"] not in (None, before) and r["pid"], what="a new web pid")
    expect(row.locator(".c-pid")).to_have_text(str(after), timeout=WAIT_MS)
    expect(row.locator(".c-restarts")).to_have_text("0")
    expect(page.locator("#msg")).to_have_text("restart web: done", timeout=WAIT_MS)

    row.locator('button[data-action="stop"]').click()
    expect_state(page, "web", "stopped")
    assert s.row("web")["state"] == "stopped" and s.row("web")["pid"] is None
    assert s.row("api")["state"] == "running"
    expect(row.locator('button[data-action="start"]')).to_be_enabled()
    expect(row.locator('button[data-action="stop"]')).to_be_disabled()
    expect(row.locator(".c-pid")).to_have_text("—")

    row.locator('button[data-action="start"]').click()
    expect_state(page, "web", "running")
    assert s.row("web")["state"] == "running"

    page.locator('#stack-actions button[data-stack="stop"]').click()
    expect_state(page, "web", "stopped")
    expect_state(page, "api", "stopped")
    assert {r["state"] for r in s.status()["services"]} == {"stopped"}
    page.locator('#stack-actions button[data-stack="start"]').click()
    expect_state(page, "web", "running")
    expect_state(page, "api", "running")
    expect(page.locator("#h-summary")).to_have_text("2 running")


def test_a_button_whose_action_failed_says_why_not_done(
        project: Path, stacks: list[Stack], page: Page) -> None:
    """The route answers 200 with `ok: false` and `problems` for an action carried out
    that did not do what was asked; the page looked at the status only and said
    `restart web: done` for a restart whose new process exited 3 (adv26 h/1)."""
    import shlex

    from playwright.sync_api import expect

    web = free_ports(1)[0]
    flag = project / "fail-next"
    run = f"[ -e {shlex.quote(str(flag))} ] && exit 3; exec {shlex.quote(PY)} " \
          f"{shlex.quote(str(TOYS / 'toy.py'))} --port {web}"
    stacks.append(s := run_stack(project, {"web": "[services.web]\n"
                                           f"command = {json.dumps(['sh', '-c', run])}\n"
                                           f"port = {web}\nauto_restart = false\n"},
                                 {"web": web}))
    open_page(page, s)
    flag.touch()
    svc(page, "web").locator('button[data-action="restart"]').click()
    expect(page.locator("#msg")).to_have_text(re.compile(
        r"^restart web failed: web failed.*exited with code 3"), timeout=WAIT_MS)
    expect(page.locator("#msg")).to_have_class("error")
    assert s.row("web")["state"] == "failed"


def test_cascade_button_restarts_the_service_then_its_dependants(
        project: Path, stacks: list[Stack], page: Page) -> None:
    from playwright.sync_api import expect

    db, app, lone = free_ports(3)
    stacks.append(s := run_stack(project, {
        "db": toy_service("db", db), "app": toy_service("app", app, depends_on=["db"]),
        "lone": toy_service("lone", lone),
    }, {"db": db, "app": app, "lone": lone}))
    open_page(page, s)
    before = {r["name"]: r["pid"] for r in s.status()["services"]}
    svc(page, "db").locator('button[data-action="cascade"]').click()
    expect(page.locator("#msg")).to_have_text("cascade db: done", timeout=WAIT_MS)
    after = {r["name"]: r["pid"] for r in s.status()["services"]}
    assert after["db"] != before["db"] and after["app"] != before["app"]
    assert after["lone"] == before["lone"]
    expect(svc(page, "app").locator(".c-pid")).to_have_text(str(after["app"]),
                                                           timeout=WAIT_MS)


def test_a_registry_that_cannot_be_written_shows_on_the_page(
        project: Path, stacks: list[Stack], page: Page) -> None:
    """The daemon's disk problems reach the page through the event stream: here a
    read-only file system is mounted over `.hippodrome`, so registry writes fail."""
    import subprocess

    from playwright.sync_api import expect

    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root (CI runs as root)")
    (web,) = free_ports(1)
    stacks.append(s := run_stack(project, {"web": toy_service("web", web)}, {"web": web}))
    open_page(page, s)
    expect(page.locator("#problems")).to_be_hidden()
    state = project / ".hippodrome"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(state)],
                   check=True)
    try:
        urllib.request.urlopen(urllib.request.Request(
            s.url + "/api/services/web/restart", method="POST"), timeout=30).read()
        expect(page.locator("#problems")).to_contain_text("Cannot write registry",
                                                          timeout=WAIT_MS)
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)
    expect(page.locator("#problems")).to_be_hidden(timeout=WAIT_MS)  # caught up


def test_a_busy_service_keeps_its_pane_bounded_current_and_idle_when_closed(
        project: Path, stacks: list[Stack], page: Page) -> None:
    rate = 3000
    stacks.append(s := run_stack(project, {
        "chatty": f'[services.chatty]\ncommand = {json.dumps([PY, CHATTY, "--rate", str(rate)])}\n',
        "quiet": toy_service("quiet", None, "--say", "nothing to say"),
    }, {}))
    open_page(page, s)
    pane = open_logs(page, "chatty")

    def counter(text: str) -> int:
        m = re.match(r"chatty (\d{10}) ", text)
        return int(m.group(1)) if m else -1

    def shown_reaches(target: int) -> bool:
        return counter(pane.locator(".ln").last.evaluate("e => e.lastChild.data")) >= target

    until(page, f"document.querySelectorAll('.log .ln').length >= {CAP}", "a full pane")
    for _ in range(3):  # the page keeps up: it reaches what the daemon had a moment ago
        target = counter(s.last_line("chatty")["line"])
        assert target > 0
        wait_for(functools.partial(shown_reaches, target), timeout=5,
                 what=f"line {target} shown")
        assert pane.locator(".ln").count() <= CAP
        time.sleep(0.3)

    # Lines leaving the top of a full pane must not drag the page along (scroll anchoring).
    page.set_viewport_size({"width": 1400, "height": 240})
    y = page.evaluate("""() => {
        const top = document.querySelector('.log').getBoundingClientRect().top + scrollY;
        scrollTo(0, top + 20);  // nothing but log lines in view
        return scrollY; }""")
    assert y > 0
    for _ in range(6):
        time.sleep(0.25)
        assert page.evaluate("window.scrollY") == y

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/logs" in r.url else None)
    svc(page, "chatty").locator('button[data-action="logs"]').click()
    assert page.locator(".log").count() == 0
    time.sleep(0.3)  # a fetch already in flight may still land (and is dropped)
    seen = len(requests)
    time.sleep(1.5)
    assert requests[seen:] == [], "a closed pane still fetches lines"


def test_a_pane_out_of_sight_says_it_waits_and_catches_up_when_shown(
        project: Path, stacks: list[Stack], page: Page) -> None:
    """Two panes open in a short window, the second pushed below the fold: it fetched
    nothing (by design: 120 open panes would each pull ~7 times a second) while its
    status said "following", a pane whose service looked quiet (adv55 1). It says it
    waits, and has every line once scrolled into view."""
    ticker = "i=0; while true; do echo {n}-$$i; i=$$((i+1)); sleep 0.2; done"
    stacks.append(s := run_stack(project, {
        n: f'[services.{n}]\nshell = "{ticker.format(n=n)}"\n' for n in ("a", "b")}, {}))
    page.set_viewport_size({"width": 800, "height": 600})
    open_page(page, s)
    b = open_logs(page, "b")
    wait_for(lambda: b.locator(".ln").count() > 2, 10, what="b's first lines")
    open_logs(page, "a")  # a's pane goes above b's and pushes it out of sight
    status = svc(page, "b").locator(".logbar span")
    wait_for(lambda: "out of sight" in status.inner_text(), 10, what="b saying it waits")
    assert b.evaluate("e => e.getBoundingClientRect().top") > 600
    b.scroll_into_view_if_needed()
    newest = s.last_line("b")["line"]
    wait_for(lambda: newest in b.inner_text(), 10, what=f"b showing {newest!r}")
    wait_for(lambda: "following" in status.inner_text(), 10, what="b following again")


def test_webhook_deliveries_panel_shows_real_deliveries(
        project: Path, stacks: list[Stack], page: Page) -> None:
    from playwright.sync_api import expect

    port = free_ports(1)[0]
    sink = (f'[services.sink]\ncommand = {json.dumps([PY, SINK, "--port", str(port)])}\n'
            f"port = {port}\n")
    route = '[[routes]]\ndetail_type_prefix = "Test."\nservice = "sink"\npath = "/events"\n'
    stacks.append(s := run_stack(project, {"sink": sink}, {"sink": port}, "\n" + route))
    open_page(page, s)
    expect(page.locator("#wh-note")).to_have_text("No deliveries yet.", timeout=WAIT_MS)

    def post(detail_type: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", int(s.url.rsplit(":", 1)[1]), timeout=10)
        try:
            conn.request("POST", "/webhook/eventbridge",
                         json.dumps({"detail-type": detail_type, "detail": {}}),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    assert post("Test.Created") == 200
    assert post("<script>window.__pwned=3</script>") == 200
    rows = page.locator("#wh-rows tr")
    expect(rows).to_have_count(2, timeout=WAIT_MS)
    newest, oldest = rows.nth(0).locator("td"), rows.nth(1).locator("td")
    expect(newest.nth(1)).to_have_text("<script>window.__pwned=3</script>")
    expect(newest.nth(2)).to_have_text("—")
    expect(newest.nth(5)).to_have_text("ignored")
    expect(oldest.nth(1)).to_have_text("Test.Created")
    expect(oldest.nth(2)).to_have_text(f"localhost:{port}")
    expect(oldest.nth(3)).to_have_text("200")
    expect(oldest.nth(4)).to_have_text(re.compile(r"^\d+\.\d ms$"))
    expect(oldest.nth(5)).to_have_text("forwarded")
    assert page.evaluate("window.__pwned") is None


FICKLE = """\
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
calls = [0]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0)); calls[0] += 1
        body = json.dumps({"a": None, "n": 1} if calls[0] == 1 else {"n": 2}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def test_the_replay_button_shows_each_difference_and_an_absent_field_as_absent(
        project: Path, stacks: list[Stack], page: Page) -> None:
    """The report wrote an absent field as null, and the page said "recorded null, now
    null" for an answer that had lost the field."""
    from playwright.sync_api import expect

    port = free_ports(1)[0]
    (project / "fickle.py").write_text(FICKLE)
    sink = (f'[services.sink]\ncommand = {json.dumps([PY, "fickle.py"])}\nport = {port}\n')
    route = '[[routes]]\ndetail_type_prefix = "Test."\nservice = "sink"\npath = "/events"\n'
    stacks.append(s := run_stack(project, {"sink": sink}, {"sink": port}, "\n" + route))
    data = json.dumps({"detail-type": "Test.Changed", "detail": {}}).encode()
    request = urllib.request.Request(s.url + "/webhook/eventbridge", data,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
    folder = project / ".hippodrome" / "events"
    wait_for(lambda: folder.is_dir() and any(f.stat().st_size for f in folder.iterdir()),
             timeout=10, what="the delivery recorded")
    open_page(page, s)
    button = page.locator("#rec-rows button[data-replay]")
    expect(button).to_have_count(1, timeout=WAIT_MS)
    button.click()
    result = page.locator("#rec-result")
    expect(result).to_have_attribute("data-ok", "false", timeout=WAIT_MS)
    text = result.inner_text()
    assert "service_response.a: recorded null, now (absent)" in text, text
    assert "service_response.n: recorded 1, now 2" in text, text


def test_the_page_survives_a_daemon_restart_and_shows_the_new_stack(
        project: Path, stacks: list[Stack], page: Page) -> None:
    from playwright.sync_api import expect

    web, api = free_ports(2)
    stacks.append(s := run_stack(project, {"web": toy_service("web", web, "--say", "first")},
                                 {"web": web}))
    open_page(page, s)
    expect(open_logs(page, "web")).to_contain_text("first", timeout=WAIT_MS)
    assert hd(project, "down").returncode == 0
    expect(page.locator("#conn")).not_to_have_text("live", timeout=WAIT_MS)
    # the rows still said `running` with a pid, and nothing said they were out of date
    # (adv54 F5): the note above them does
    note = page.locator("#stale-note")
    expect(note).to_be_visible(timeout=WAIT_MS)
    expect(note).to_contain_text(re.compile(r"ended every service|nothing of this stack runs"))
    # Below the note, uptimes counted on, the header said "1 running" and a button said
    # the browser's "Failed to fetch" (adv57 F4).
    expect(page.locator("#h-summary")).to_have_text("none: the daemon shut down")
    clocks = page.locator("#h-uptime").inner_text(), svc(page, "web").locator(
        ".c-uptime").inner_text()
    time.sleep(2.2)
    assert (page.locator("#h-uptime").inner_text(), svc(page, "web").locator(
        ".c-uptime").inner_text()) == clocks
    svc(page, "web").locator('button[data-action="restart"]').click()
    expect(page.locator("#msg")).to_contain_text("the daemon is not running (it shut down)",
                                                 timeout=WAIT_MS)

    stack_file = project / "hippodrome.toml"
    stack_file.write_text(stack_file.read_text().replace('"first"', '"second"')
                          + toy_service("api", api))
    hd(project, "up", "--detach", check=True)
    expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
    expect(note).to_be_hidden()
    expect_state(page, "api", "running")
    pane = svc(page, "web").locator(".log")
    expect(pane).to_contain_text("second", timeout=WAIT_MS)
    expect(pane).not_to_contain_text("first")  # the old daemon's lines are gone, not mixed in
    expect(svc(page, "web").locator(".c-pid")).to_have_text(str(s.row("web")["pid"]))


# ---- the routes themselves, without a browser ----------------------------------------

def _open_stream(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while b"event: snapshot" not in data or not data.endswith(b"\n\n"):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return sock, data


def settled_threads(proc: psutil.Process) -> int:
    """The daemon's thread count once request threads of earlier calls have ended."""
    counts = [proc.num_threads()]
    deadline = time.monotonic() + 10
    while len(counts) < 5 or len(set(counts[-5:])) > 1:
        assert time.monotonic() < deadline, counts
        time.sleep(0.1)
        counts.append(proc.num_threads())
    return counts[-1]


def test_page_route_and_event_streams_end_with_their_client_and_the_daemon(
        project: Path, stacks: list[Stack]) -> None:
    web = free_ports(1)[0]
    stacks.append(s := run_stack(project, {"web": toy_service("web", web)}, {"web": web}))
    port = int(s.url.rsplit(":", 1)[1])
    with urllib.request.urlopen(s.url + "/", timeout=10) as resp:
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'sha256-" in resp.headers["Content-Security-Policy"]
        html = resp.read().decode()
    assert "<title>Hippodrome</title>" in html
    boot = html.split('<script type="application/json" id="boot">', 1)[1].split("</script>")[0]
    assert [r["name"] for r in json.loads(boot)["services"]] == ["web"]

    daemon = psutil.Process(registry(project)["daemon"]["pid"])
    base = settled_threads(daemon)
    socks = [_open_stream(port) for _ in range(5)]
    head = socks[0][1].decode()
    assert "HTTP/1.1 200" in head and "text/event-stream" in head
    snapshot = json.loads(head.split("event: snapshot\ndata: ", 1)[1].split("\n", 1)[0])
    assert [r["name"] for r in snapshot["services"]] == ["web"]
    assert snapshot["seqs"]["web"] >= 1
    wait_for(lambda: daemon.num_threads() >= base + 5, what="one thread per stream")

    for sock, _ in socks[:3]:  # the browser goes away: its thread ends within a wake-up
        sock.close()
    wait_for(lambda: daemon.num_threads() <= base + 2, timeout=5, what="3 stream threads ending")

    began = time.monotonic()
    assert hd(project, "down").returncode == 0
    took = time.monotonic() - began
    for sock, _ in socks[3:]:
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        assert b"event: bye" in rest
        sock.close()
    assert took < 10, f"down took {took:.1f}s with two streams open"
    stacks.clear()


def test_past_the_stream_limit_the_oldest_page_gives_way_and_resumes_when_looked_at(
        project: Path, stacks: list[Stack], browser: Browser) -> None:
    """64 open streams (forgotten tabs, a script leaking `curl -N`s), then one more tab:
    it got a 503 its EventSource cannot read and said "daemon not reachable: retrying"
    for ever (adv28 m/2). The oldest stream gives way: a page says it is paused and
    resumes when it is looked at again; a raw stream gets `event: evicted` and its end."""
    from playwright.sync_api import expect

    from hippo_tasks.daemon.page import MAX_STREAMS

    web = free_ports(1)[0]
    stacks.append(s := run_stack(project, {"web": toy_service("web", web)}, {"web": web}))
    port = int(s.url.rsplit(":", 1)[1])
    context = browser.new_context()
    socks: list[socket.socket] = []
    try:
        old = context.new_page()
        open_page(old, s)
        expect(old.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        socks = [_open_stream(port)[0] for _ in range(MAX_STREAMS - 1)]
        new = context.new_page()
        open_page(new, s)
        expect(new.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        expect(old.locator("#conn")).to_contain_text("paused: a newer page took this one's "
                                                     "live updates", timeout=WAIT_MS)
        old.bring_to_front()
        old.locator("h1").click()
        expect(old.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        # the oldest raw stream gave way to it
        rest = b""
        socks[0].settimeout(10)
        while chunk := socks[0].recv(65536):
            rest += chunk
        assert b"event: evicted" in rest
    finally:
        context.close()
        for sock in socks:
            sock.close()


def test_the_snapshot_in_the_page_cannot_close_its_script_block() -> None:
    from hippo_tasks.daemon.page import _boot_json, page

    evil = {"reason": "</script><script>window.__pwned = 4</script><!--"}
    raw = _boot_json(evil)
    assert b"<" not in raw and json.loads(raw) == evil
    p = page()
    assert p.head.endswith(b'<script type="application/json" id="boot">')
    assert p.tail.startswith(b"</script>")


def test_startup_waterfall_and_graph_show_order_states_and_the_critical_path(
        project: Path, stacks: list[Stack], page: Page) -> None:
    """Drawn from the same rows as the table: a bar per started service, bold names on
    the daemon's critical path, graph nodes coloured by live state (SVG text nodes)."""
    from playwright.sync_api import expect

    db, app, lone = free_ports(3)
    stacks.append(s := run_stack(project, {
        "db": toy_service("db", db, "--delay", "0.3"),
        "app": toy_service("app", app, depends_on=["db"]),
        "lone": toy_service("lone", lone),
    }, {"db": db, "app": app, "lone": lone}))
    open_page(page, s)
    status = s.status()
    assert [p[0] for p in status["critical_path"]] == ["db", "app"]
    bars = page.locator("#su-waterfall g[data-service]")
    expect(bars).to_have_count(3, timeout=WAIT_MS)
    expect(page.locator("#su-waterfall text.crit")).to_have_text(["db", "app"])
    expect(page.locator("#su-note")).to_contain_text("critical path db ")
    assert page.locator("#su-waterfall .bar-ready").count() == 3
    # the graph puts app right of db, joined by one edge; states follow the stream
    node = page.locator('#su-graph g[data-service="app"]')
    expect(node).to_have_attribute("data-state", "running", timeout=WAIT_MS)
    assert page.locator("#su-graph path.edge").count() == 1
    x_db = float(page.locator('#su-graph g[data-service="db"] rect').get_attribute("x") or 0)
    x_app = float(node.locator("rect").get_attribute("x") or 0)
    assert x_app > x_db
    hd(project, "stop", "--service", "lone", check=True)
    expect(page.locator('#su-graph g[data-service="lone"]')).to_have_attribute(
        "data-state", "stopped", timeout=WAIT_MS)
    # A restart of db later: the section still describes the start-up (it said the stack
    # was "ready in" the whole uptime, with db's bar at the far right; adv26 h/5).
    rows = {r["name"]: r["startup"] for r in s.status()["services"]}
    took = max(t["ready_at"] for t in rows.values()) - min(t["requested_at"]
                                                           for t in rows.values())
    time.sleep(1.5)
    hd(project, "restart", "--service", "db", check=True)
    expect(svc(page, "db").locator(".c-pid")).to_have_text(str(s.row("db")["pid"]),
                                                          timeout=WAIT_MS)
    wait_for(lambda: s.row("db")["ready"], what="db ready again")

    def shown() -> float | None:
        said = re.search(r"ready in ([0-9.]+)s", page.locator("#su-note").inner_text())
        return float(said.group(1)) if said else None

    # the restart's ready reaches the page; the figure stays the start-up's throughout
    time.sleep(1.0)
    assert (x := shown()) is not None and abs(x - took) < 0.011, (x, took)
    expect(page.locator("#su-waterfall text.crit")).to_have_text(["db", "app"])


def test_a_graph_wider_than_the_page_can_be_scrolled_to_its_last_box(
        project: Path, stacks: list[Stack], page: Page) -> None:
    """A chain of 12 services is a graph ~2,500 px wide: drawn at the page's width with
    `max-width: 100%`, the boxes past the edge were cut off and out of reach (adv55 3).
    It scrolls in its own box, the page itself no wider."""
    chain = {f"c{i:02d}": f'[services.c{i:02d}]\nshell = "exec sleep 600"\n'
             + (f'depends_on = ["c{i - 1:02d}"]\n' if i else "") for i in range(12)}
    stacks.append(s := run_stack(project, chain, {}))
    open_page(page, s)
    last = page.locator('#su-graph g[data-service="c11"] rect')
    wait_for(lambda: last.count() == 1, 10, what="the last box drawn")
    last.scroll_into_view_if_needed()
    box = last.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1400, box
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400


def test_a_service_failed_at_up_and_started_later_is_drawn_as_it_failed(
        project: Path, stacks: list[Stack], page: Page) -> None:
    """Its later start was drawn as the start-up's: `ready in` the time until then, its
    bar at the far right, alone on the critical path (adv27 j/2)."""
    import shlex

    db, flaky = free_ports(2)
    fixed = project / "fixed"
    run = f"[ -e {shlex.quote(str(fixed))} ] || exit 1; exec {shlex.quote(PY)} " \
          f"{shlex.quote(str(TOYS / 'toy.py'))} --port {flaky}"
    stacks.append(s := run_stack(project, {
        "db": toy_service("db", db, "--delay", "0.3"),
        "flaky": f"[services.flaky]\ncommand = {json.dumps(['sh', '-c', run])}\n"
                 f"port = {flaky}\nblocking = false\nauto_restart = false\n",
    }, {"db": db, "flaky": flaky}))
    time.sleep(1.5)
    fixed.touch()
    hd(project, "start", "-s", "flaky", check=True)
    open_page(page, s)
    expect_state(page, "flaky", "running")
    wait_for(lambda: "ready in" in page.locator("#su-note").inner_text(), what="ready in")
    rows = [r["startup"] for r in s.status()["services"]]
    took = max(t["ready_at"] or t["spawned_at"] for t in rows) - min(t["requested_at"]
                                                                     for t in rows)
    said = re.search(r"ready in ([0-9.]+)s", page.locator("#su-note").inner_text())
    assert said and abs(float(said.group(1)) - took) < 0.011, (said, took)
    bar = page.locator('#su-waterfall g[data-service="flaky"] rect.bar-failed')
    assert bar.count() == 1
