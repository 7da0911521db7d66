"""Recording webhook deliveries, against a real daemon and real routed event sinks.

Every delivery whose event could be read lands in `.hippodrome/events/<stamp>.jsonl`
with its route, target, answer and latency, the event as it was received, and never
the webhook token; `up --no-record` writes nothing; the size cap rotates and prunes
only the recorder's own files. Disk faults are in test_events_record_faults.py.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from event_recordings import Stack, event, recorded_sink, routes, start
from stackutil import free_ports, hd, registry, wait_for

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

TOKEN = "tok-" + uuid.uuid4().hex + "-\"\\<"
"""A token with characters JSON escapes, so both spellings must be blanked."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("record") / "proj"
    dash, settings, gone = free_ports(3)
    body = (recorded_sink(root, "settings", settings)
            + f'[services.gone]\ncommand = ["sleep", "3600"]\nport = {gone}\n'
              'readiness = "none"\n\n'  # in the run, listening on nothing
            + routes(("Test.", "settings"), ("Gone.", "gone")))
    try:
        yield start(root, dash, {"settings": settings, "gone": gone}, body, token=TOKEN)
    finally:
        hd(root, "down")
        force_down(Registry(root))


def test_every_delivery_is_recorded_with_route_target_answer_and_latency(stack: Stack) -> None:
    before = len(stack.lines())
    began = time.time()
    pretty = event("Test.Pretty", "p1", nested={"a": [1, 2]})
    sent = [
        (pretty, json.dumps(pretty, indent=2).encode()),  # line breaks inside the event
        (event("Other.Thing", "o1"), None),               # no route: ignored
        ({"source": "test", "detail": {}}, None),          # no detail-type: 400
        (event("Gone.Away", "g1"), None),                  # the target is not running: 503
    ]
    answers = [stack.post(ev, raw=raw) for ev, raw in sent]
    assert [status for status, _ in answers] == [200, 200, 400, 503]
    lines = stack.wait_lines(before + 4)[before:]
    for (ev, _), (status, answer), line in zip(sent, answers, lines, strict=True):
        assert line["v"] == 1 and line["kind"] == "delivery"
        assert line["event"] == ev
        assert (line["status"], line["answer"]) == (status, answer)
        assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
        assert began - 1 <= line["at"] <= time.time()
    port = stack.ports["settings"]
    assert lines[0]["route"] == {"detail_type_prefix": "Test.", "service": "settings",
                                 "path": "/events"}
    assert lines[0]["target"] == f"localhost:{port}" and lines[0]["outcome"] == "forwarded"
    assert lines[0]["detail_type"] == "Test.Pretty"
    assert (lines[1]["route"], lines[1]["target"], lines[1]["outcome"]) == (None, None, "ignored")
    assert (lines[2]["detail_type"], lines[2]["outcome"]) == ("", "error")
    assert lines[3]["route"]["service"] == "gone" and lines[3]["outcome"] == "error"
    # One JSON object per line, in a file named for when recording began.
    (path,) = stack.files()
    assert re.fullmatch(r"\d{8}-\d{6}\.jsonl", path.name)
    assert all(json.loads(text) for text in path.read_text().split("\n") if text)


def test_the_token_is_never_recorded(stack: Stack) -> None:
    before = len(stack.lines())
    quoted = json.dumps(TOKEN)[1:-1]
    status, _ = stack.post(event("Test.Token", "t1", copy=TOKEN, note=f"token={TOKEN}!"))
    assert status == 200
    # The sink got the event as sent: only the recording is blanked.
    assert stack.received("settings")[-1]["detail"]["copy"] == TOKEN
    # Refused without (or with a wrong) token: never read, never recorded.
    assert _post_without_token(stack, event("Test.NoToken", "t2"))[0] == 401
    assert stack.post(event("Test.NoToken", "t2"), token="wrong")[0] == 401
    status, _ = stack.post(event("Test.After", "t3"))
    lines = stack.wait_lines(before + 2)[before:]
    assert [ln["event"]["detail"]["id"] for ln in lines] == ["t1", "t3"]
    assert lines[0]["event"]["detail"] == {"id": "t1", "copy": "[redacted]",
                                           "note": "token=[redacted]!"}
    data = b"".join(p.read_bytes() for p in stack.files())
    assert TOKEN.encode() not in data and quoted.encode() not in data
    assert b"x-hippodrome-webhook-token" not in data.lower()


def test_a_token_quoted_in_a_detail_type_is_shown_nowhere(stack: Stack) -> None:
    """The recording blanked it, but the service's log line (`webhook: T.<token>
    forwarded ...`) and `/api/webhook/deliveries` showed it (z/12)."""
    status, _ = stack.post(event(f"Test.{TOKEN}", "t9"))
    assert status == 200
    _, listed = stack.api("GET", "/api/webhook/deliveries")
    shown = json.dumps(listed)
    assert "Test.[redacted]" in shown and TOKEN not in shown, shown
    log = wait_for(lambda: [p for p in (stack.root / ".logs" / "latest").glob("settings.log")
                            if "Test.[redacted]" in p.read_text()], 10,
                   what="the delivery's line in the service's log")
    assert TOKEN not in log[0].read_text()


def _post_without_token(stack: Stack, ev: dict[str, object]) -> tuple[int, object]:
    from rawhttp import json_request

    return json_request(stack.dash, json.dumps(ev).encode())


def test_a_replayed_delivery_is_shown_but_not_recorded_again(stack: Stack) -> None:
    """A replay sends the daemon's own key (registry.json gives it to `hd events.replay`);
    any other value is a delivery like any: `x-hippodrome-replay: 0` from any sender kept
    real deliveries out of the recording (adv46 H/8)."""
    key = registry(stack.root)["daemon"]["replay_key"]
    before = len(stack.lines())
    status, _ = stack.post(event("Test.Replayed", "r1"), headers={"x-hippodrome-replay": key})
    assert status == 200
    status, _ = stack.post(event("Test.Forged", "r2"), headers={"x-hippodrome-replay": "1"})
    assert status == 200
    status, _ = stack.post(event("Test.Live", "r3"))
    lines = stack.wait_lines(before + 2)[before:]
    assert [ln["event"]["detail"]["id"] for ln in lines] == ["r2", "r3"]
    _, body = stack.api("GET", "/api/webhook/deliveries")
    assert [d["detail_type"] for d in body["deliveries"][:3]] == [
        "Test.Live", "Test.Forged", "Test.Replayed"]
    _, status_body = stack.api("GET", "/api/status")
    assert key not in json.dumps(status_body)
    # the key with a second value beside it is not the key (adv47 G/6)
    from rawhttp import exchange

    body = json.dumps(event("Test.Twice", "r4")).encode()
    for first, second in ((key, "1"), ("1", key)):
        answer = exchange(stack.dash, b"POST /webhook/eventbridge HTTP/1.1\r\nHost: "
                          b"127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"x-hippodrome-webhook-token: " + TOKEN.encode() + b"\r\n"
                          b"x-hippodrome-replay: " + first.encode() + b"\r\n"
                          b"x-hippodrome-replay: " + second.encode() + b"\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert [ln["event"]["detail"]["id"] for ln in stack.wait_lines(before + 4)[before:]] \
        == ["r2", "r3", "r4", "r4"]


def test_the_api_lists_the_recording_being_written(stack: Stack) -> None:
    stack.post(event("Test.Listed", "l1"))
    stack.wait_lines(1)
    status, body = stack.api("GET", "/api/events/recordings")
    assert status == 200
    assert body["recording"] is True and body["problem"] is None
    assert body["dir"] == str(stack.events_dir)
    (path,) = stack.files()
    assert body["current"] == path.name
    (listed,) = body["recordings"]
    assert listed["name"] == path.name and listed["current"] is True
    assert listed["bytes"] > 0 and listed["modified"] <= time.time() + 1


def test_no_record_writes_nothing(project: Path) -> None:
    dash, port = free_ports(2)
    s = start(project, dash, {"settings": port},
              recorded_sink(project, "settings", port) + routes(("Test.", "settings")),
              None, "--no-record")
    for i in range(5):
        assert s.post(event("Test.Off", f"off{i}"))[0] == 200
    status, body = s.api("GET", "/api/events/recordings")
    assert status == 200 and body["recording"] is False and body["recordings"] == []
    assert len(s.received("settings")) == 5
    hd(project, "down", check=True)  # the recorder's queue is flushed as the daemon exits
    assert not s.events_dir.exists()


def test_the_size_cap_rotates_and_keeps_only_the_newest_recordings(project: Path) -> None:
    dash, port = free_ports(2)
    folder = project / ".hippodrome" / "events"
    folder.mkdir(parents=True)
    (folder / "20000101-000000.jsonl").write_text("")   # an old recording: pruned
    (folder / "mine.jsonl").write_text("kept\n")         # not the recorder's: kept
    # Named as if later (a machine whose clock is ahead, a clock that went back): they
    # were kept and this run's own recordings deleted (adv26 g/8).
    (folder / "20991231-235958.jsonl").write_text("")
    (folder / "20991231-235959.jsonl").write_text("")
    cap = 4096
    s = start(project, dash, {"settings": port},
              recorded_sink(project, "settings", port) + routes(("Test.", "settings")),
              {"HIPPODROME_RECORD_MAX_MB": str(cap / 1024 / 1024), "HIPPODROME_RECORD_KEEP": "3"})
    for i in range(40):
        assert s.post(event("Test.Big", f"big{i:02d}", pad="x" * 400))[0] == 200
    hd(project, "down", check=True)
    names = sorted(p.name for p in folder.iterdir())
    assert "mine.jsonl" in names and "20000101-000000.jsonl" not in names
    assert not [n for n in names if n.startswith("2099")], names
    ours = [folder / n for n in names if n != "mine.jsonl"]
    assert len(ours) == 3, names
    for path in ours:
        assert 0 < path.stat().st_size <= cap
    ids = [json.loads(line)["event"]["detail"]["id"]
           for path in sorted(ours, key=lambda p: p.stat().st_mtime_ns)
           for line in path.read_text().splitlines()]
    # The newest deliveries, in order, without a gap, up to the last one.
    assert ids == [f"big{i:02d}" for i in range(40 - len(ids), 40)]
    assert len(ids) >= 6


def test_a_cap_smaller_than_one_delivery_still_records_it(project: Path) -> None:
    dash, port = free_ports(2)
    s = start(project, dash, {"settings": port},
              recorded_sink(project, "settings", port) + routes(("Test.", "settings")),
              {"HIPPODROME_RECORD_MAX_MB": "0.0001", "HIPPODROME_RECORD_KEEP": "2"})
    for i in range(3):
        s.post(event("Test.Huge", f"h{i}", pad="y" * 2000))
    wait_for(lambda: any("h2" in p.read_text() for p in s.files()), 10, what="the last one")
    hd(project, "down", check=True)
    files = s.files()
    assert len(files) == 2
    assert [len(p.read_text().splitlines()) for p in files] == [1, 1]


def test_a_stack_with_a_token_replays_with_it_and_says_so_without(stack: Stack) -> None:
    stack.post(event("Test.Tokened", "k1"))
    stack.wait_lines(1)  # the recorder's thread writes it: the file may not be there yet
    (path,) = stack.files()
    before = len(stack.received("settings"))
    out = hd(stack.root, "events.replay", path.name, "--filter", "Test.Tokened",
             env={"HIPPODROME_WEBHOOK_TOKEN": "another-token"})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "the webhook wants its token (401" in out.stderr
    assert "HIPPODROME_WEBHOOK_TOKEN" in out.stderr and "Recordings" in out.stderr
    assert len(stack.received("settings")) == before
    out = hd(stack.root, "events.replay", path.name, "--filter", "Test.Tokened",
             env={"HIPPODROME_WEBHOOK_TOKEN": TOKEN})
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(stack.received("settings")) == before + 1
    # Without the variable, the token the daemon checks (its registry's) is sent: a
    # stack started with --enable-events has one no one is shown (adv24 b/3).
    out = hd(stack.root, "events.replay", path.name, "--filter", "Test.Tokened",
             env={"HIPPODROME_WEBHOOK_TOKEN": ""})
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(stack.received("settings")) == before + 2


def test_an_events_folder_that_is_a_link_is_not_written_through(project: Path,
                                                                tmp_path: Path) -> None:
    """`.hippodrome/events` a link (committed, or planted) to a folder of the user's: the
    recorder wrote there and pruned it to the newest stamp-named files, deleting the
    user's own (adv49 B/8). Recording stops with the reason; the webhook keeps serving."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    theirs = {f"201901{day}-000000.jsonl": f'{{"day": {day}}}\n' for day in range(10, 22)}
    for name, text in theirs.items():
        (elsewhere / name).write_text(text)
    (project / ".hippodrome").mkdir()
    (project / ".hippodrome" / "events").symlink_to(elsewhere)
    dash, port = free_ports(2)
    s = start(project, dash, {"settings": port},
              recorded_sink(project, "settings", port) + routes(("Test.", "settings")),
              {"HIPPODROME_RECORD_KEEP": "3"})
    try:
        for i in range(3):
            assert s.post(event("Test.Linked", f"l{i}"))[0] == 200
        status = wait_for(lambda: json.loads(hd(project, "status", "--json", check=True)
                                             .stdout)["problems"].get("recordings"), 10,
                          what="the recording's trouble in status")
        assert "symbolic link" in status["error"] and "recording stopped" in status["error"]
    finally:
        hd(project, "down")
    assert {p.name: p.read_text() for p in elsewhere.iterdir()} == theirs
    assert (project / ".hippodrome" / "events").is_symlink()  # left as it was
