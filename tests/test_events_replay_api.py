"""The recordings API and the page's Recordings section, against a real daemon.

The stack has a webhook token the client never sees: a replay from the API or the
page works because the daemon sends its own token through its own webhook. Names are
attacked (traversal, encoded slashes, hidden files, a symlink out of the folder), bodies
are wrong in every way, and two replays at once get 409. The page is driven in real
headless Chromium, and its effect is checked on the sinks, not only on the page.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from chromium import launched
from event_recordings import Stack, event, recorded_sink, routes, start
from stackutil import free_ports, hd, wait_for

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TOKEN = "tok-" + uuid.uuid4().hex
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("replay-api") / "proj"
    dash, settings, slow = free_ports(3)
    body = (recorded_sink(root, "settings", settings, "--result-file", str(root / "result.json"))
            + recorded_sink(root, "slow", slow, "--slow", "1.5")
            + routes(("Test.", "settings"), ("Slow.", "slow")))
    s = start(root, dash, {"settings": settings, "slow": slow}, body, token=TOKEN)
    try:
        for i in range(3):
            s.post(event("Test.Api", f"a{i}"))
        s.post(event("Slow.One", "slow1"))
        s.wait_lines(4)
        yield s
    finally:
        hd(root, "down")
        force_down(Registry(root))


def name_of(stack: Stack) -> str:
    (path,) = stack.files()
    return path.name


def replay_path(name: str) -> str:
    return f"/api/events/recordings/{name}/replay"


def test_the_listing_names_the_recording_and_its_settings(stack: Stack) -> None:
    status, body = stack.api("GET", "/api/events/recordings")
    assert status == 200
    assert (body["recording"], body["max_mb"], body["keep"]) == (True, 50.0, 10)
    assert [r["name"] for r in body["recordings"]] == [name_of(stack)] == [body["current"]]


def test_a_replay_through_the_api_uses_the_daemons_own_token(stack: Stack) -> None:
    before = len(stack.received("settings"))
    status, body = stack.api("POST", replay_path(name_of(stack)), {"filter": "Test.*"})
    assert status == 200, body
    assert body["ok"] is True and (body["selected"], body["sent"], body["equal"]) == (3, 3, 3)
    assert body["speed"] is None and body["mismatches"] == []
    assert [r["detail"]["id"] for r in stack.received("settings")[before:]] == \
        ["a0", "a1", "a2"]


def test_a_difference_comes_back_as_data(stack: Stack) -> None:
    (stack.root / "result.json").write_text(json.dumps({"received": "changed"}))
    try:
        status, body = stack.api("POST", replay_path(name_of(stack)),
                                 {"filter": "Test.Api", "speed": 1000})
    finally:
        (stack.root / "result.json").unlink()
    assert status == 200 and body["ok"] is False and body["different"] == 3
    assert body["speed"] == 1000
    first = body["mismatches"][0]
    assert first["line"] == 1 and first["detail_type"] == "Test.Api"
    assert first["differences"] == [{"path": "service_response.result.received",
                                     "recorded": "Test.Api", "replayed": "changed"}]


@pytest.mark.parametrize(("body", "message"), [
    ({"speed": "fast"}, "'speed' must be a number"),
    ({"speed": True}, "'speed' must be a number"),
    ({"speed": 0}, "--speed must be a number above 0"),
    ({"speed": -1}, "--speed must be a number above 0"),
    ({"speed": 2, "as_fast_as_possible": True}, "not both"),
    ({"as_fast_as_possible": "yes"}, "must be true or false"),
    ({"filter": 3}, "'filter' must be a detail-type"),
    ({"filter": ""}, "'filter' is empty, which names nothing"),  # adv49 B/3
    ({"filter": "Nope.*"}, "matches none"),
    ({"ignore": "at"}, "'ignore' must be a list"),
    ({"bogus": 1}, "unknown field(s) 'bogus'"),
    ([1, 2], "must be a JSON object or empty"),
])
def test_bad_bodies_are_400(stack: Stack, body: Any, message: str) -> None:
    status, answer = stack.api("POST", replay_path(name_of(stack)), body)
    assert status == 400 and message in answer["error"], answer


@pytest.mark.parametrize(("query", "message"), [
    ("?filter=Test.Api", "'filter' goes in the body of a replay (a JSON object), not in its "
                         "query"),
    ("?speed=0.00001&ignore=x", "'ignore', 'speed' goes in the body"),
    ("?bogus=1", "unknown query parameter(s) 'bogus'; a replay takes none"),
])
def test_options_in_the_query_are_refused_not_ignored(stack: Stack, query: str,
                                                      message: str) -> None:
    """`?filter=T` was taken and then ignored: every delivery was sent again, those the
    caller filtered out too (adv25 e/7)."""
    status, answer = stack.api("POST", replay_path(name_of(stack)) + query, None)
    assert status == 400 and message in answer["error"], answer


def test_names_cannot_leave_the_folder(stack: Stack, tmp_path: Path) -> None:
    real = name_of(stack)
    outside = tmp_path / "outside.jsonl"
    outside.write_text((stack.events_dir / real).read_text())
    (stack.events_dir / "link.jsonl").symlink_to(outside)
    try:
        for name, status in [("..%2F..%2Fregistry.json", 400), ("%2e%2e%2fx.jsonl", 400),
                             (".hidden.jsonl", 400), ("nope.jsonl", 404),
                             ("link.jsonl", 404), ("a%20b.jsonl", 404),
                             ("%01ctl.jsonl", 400), ("a%2Fb.jsonl", 400)]:
            got, answer = stack.api("POST", replay_path(name), {})
            assert got == status, (name, answer)
            assert "error" in answer
        got, answer = stack.api("POST", "/api/events/recordings/../../registry.json/replay", {})
        assert got == 404 and "no such route" in answer["error"]
        got, answer = stack.api("GET", replay_path(real))
        assert got == 405 and answer["allowed"] == ["POST"]
    finally:
        (stack.events_dir / "link.jsonl").unlink()


def test_a_users_own_names_are_listed_and_replayable(stack: Stack) -> None:
    """`rec (1).jsonl` (a file manager's copy) and `résumé.jsonl` were left out of the
    list without a word, and refused by the API even %-encoded: the README says files
    put in the folder under other names are listed and replayable."""
    real = stack.events_dir / name_of(stack)
    names = ["rec (1).jsonl", "résumé.jsonl"]
    for name in names:
        (stack.events_dir / name).write_bytes(real.read_bytes())
    try:
        status, body = stack.api("GET", "/api/events/recordings")
        assert status == 200 and set(names) <= {r["name"] for r in body["recordings"]}, body
        for encoded in ("rec%20%281%29.jsonl", "r%C3%A9sum%C3%A9.jsonl"):
            got, answer = stack.api("POST", replay_path(encoded), {"filter": "Test.*"})
            assert got == 200 and answer["sent"] == 3, (encoded, answer)
    finally:
        for name in names:
            (stack.events_dir / name).unlink()


def test_another_sites_page_cannot_replay(stack: Stack) -> None:
    before = len(stack.received("settings"))
    status, answer = stack.api("POST", replay_path(name_of(stack)), {},
                               {"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in answer["error"]
    assert len(stack.received("settings")) == before


def test_one_replay_at_a_time(stack: Stack) -> None:
    first: dict[str, Any] = {}
    before = len(stack.received("slow"))

    def run() -> None:
        first["answer"] = stack.api("POST", replay_path(name_of(stack)), {"filter": "Slow.*"})

    thread = threading.Thread(target=run)
    thread.start()
    try:  # the slow sink records the event, then sleeps 1.5 s before answering
        wait_for(lambda: len(stack.received("slow")) > before, 10, what="the slow replay")
        status, answer = stack.api("POST", replay_path(name_of(stack)), {"filter": "Test.*"})
        assert status == 409 and "already running" in answer["error"]
    finally:
        thread.join(30)
    status, answer = first["answer"]
    assert status == 200 and answer["ok"] is True and answer["sent"] == 1


def test_a_paced_replay_longer_than_the_daemon_runs_is_refused_at_once(
        stack: Stack) -> None:
    """`speed: 0.001` over a recording spanning minutes held the one replay slot for
    days after its client gave up: every other replay was a 409 until `hd down`."""
    lines = (stack.events_dir / name_of(stack)).read_text().splitlines()[:2]
    spread = [json.loads(line) for line in lines]
    spread[1]["at"] = spread[0]["at"] + 700  # two deliveries 700 s apart
    long_one = stack.events_dir / "20200101-000000.jsonl"
    long_one.write_text("".join(json.dumps(line) + "\n" for line in spread))
    try:
        began = time.monotonic()
        status, answer = stack.api("POST", replay_path(long_one.name), {"speed": 1})
        assert status == 400 and "would take 700 s" in answer["error"], answer
        assert "as_fast_as_possible" in answer["error"]
        assert time.monotonic() - began < 5  # refused before anything was sent
        status, answer = stack.api("POST", replay_path(long_one.name),
                                   {"as_fast_as_possible": True})
        assert status == 200 and answer["sent"] == 2  # and the slot was left free
    finally:
        long_one.unlink()


def test_a_paced_replay_ends_when_its_client_hangs_up(stack: Stack) -> None:
    """A paced replay went on after its client gave up (a closed tab, curl's Ctrl+C) and
    held the one replay slot: every other replay was a 409 for up to ten minutes."""
    lines = (stack.events_dir / name_of(stack)).read_text().splitlines()[:2]
    spread = [json.loads(line) for line in lines]
    spread[1]["at"] = spread[0]["at"] + 300  # the second delivery 300 s after the first
    paced = stack.events_dir / "20200102-000000.jsonl"
    paced.write_text("".join(json.dumps(line) + "\n" for line in spread))
    before = len(stack.received("settings"))
    body = json.dumps({"speed": 1}).encode()
    try:
        with socket.create_connection(("127.0.0.1", stack.dash), timeout=10) as client:
            client.sendall(f"POST {replay_path(paced.name)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           f"Content-Type: application/json\r\nContent-Length: {len(body)}"
                           "\r\n\r\n".encode() + body)
            wait_for(lambda: len(stack.received("settings")) > before, 10,
                     what="the paced replay's first delivery")
        # the client is gone: the slot is free within a pause's check, not in 300 s
        answer = wait_for(lambda: (lambda r: r if r[0] != 409 else None)(
            stack.api("POST", replay_path(paced.name), {"as_fast_as_possible": True})),
            10, what="the replay slot")
        assert answer[0] == 200 and answer[1]["sent"] == 2, answer
        log = (stack.root / ".hippodrome" / "daemon.log").read_text()
        assert f"replay of {paced.name} stopped after 1 deliveries: its client went away" \
            in log, log[-2000:]
    finally:
        paced.unlink()


# ---- the page ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console: {msg.text}")
          if "Content Security Policy" in msg.text else None)
    try:
        yield pg
    finally:
        context.close()
    assert problems == []


def test_the_page_lists_recordings_and_replays_one(stack: Stack, page: Page) -> None:
    from playwright.sync_api import expect

    name = name_of(stack)
    page.goto(f"http://127.0.0.1:{stack.dash}/")
    row = page.locator(f'#rec-rows tr[data-name="{name}"]')
    expect(row).to_contain_text(f"{name} (recording now)", timeout=WAIT_MS)
    expect(page.locator("#rec-note")).to_contain_text(
        f"Every webhook delivery is recorded in {stack.events_dir}")
    before = len(stack.received("settings"))
    row.locator("button[data-replay]").click()
    result = page.locator("#rec-result")
    expect(result).to_have_attribute("data-ok", "true", timeout=WAIT_MS)
    expect(result).to_contain_text(f"{name}: replayed 4 of 4 deliveries: 4 answered as "
                                   "recorded, 0 differently")
    assert len(stack.received("settings")) == before + 3  # the daemon really sent them
    # A changed answer shows as a difference, in red.
    (stack.root / "result.json").write_text(json.dumps({"received": "<b>changed</b>"}))
    try:
        expect(row.locator("button")).to_be_enabled(timeout=WAIT_MS)
        row.locator("button[data-replay]").click()
        expect(result).to_have_attribute("data-ok", "false", timeout=WAIT_MS)
    finally:
        (stack.root / "result.json").unlink()
    expect(result).to_contain_text('service_response.result.received: recorded "Test.Api", '
                                   'now "<b>changed</b>"')  # shown as text, not markup
    assert result.get_attribute("class") == "diff"
    assert page.locator("#rec-result b").count() == 0
