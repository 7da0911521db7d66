"""A recording folder that is read-only or fills up, on real tmpfs mounts (root, as in CI).

Recording stops with one line in the daemon's log and a `recordings` entry in
`problems` (status, API, page); the webhook keeps answering every event.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from event_recordings import Stack, event, recorded_sink, routes, start
from stackutil import free_ports, hd, wait_for
from test_disk_faults import tmpfs

from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting tmpfs needs root")
NOTE = "cannot record webhook deliveries"


def status(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(hd(root, "status", "--json", check=True).stdout)
    return data


def daemon_log(root: Path) -> str:
    return (root / ".hippodrome" / "daemon.log").read_text("utf-8", "replace")


@pytest.fixture
def mounted(project: Path) -> Iterator[Path]:
    """The stack is stopped while the mount is still there; the fixture's sweep after."""
    (project / ".hippodrome").mkdir()
    yield project / ".hippodrome" / "events"
    hd(project, "down")
    force_down(Registry(project))


def run(project: Path) -> Stack:
    dash, port = free_ports(2)
    return start(project, dash, {"settings": port},
                 recorded_sink(project, "settings", port) + routes(("Test.", "settings")))


def check_stopped(project: Path, s: Stack, error: str, sent: int) -> None:
    trouble = wait_for(lambda: status(project)["problems"].get("recordings"), 10,
                       what="the recording's trouble in status")
    assert error in trouble["error"] and "recording stopped" in trouble["error"]
    assert trouble["path"].startswith(str(s.events_dir))
    text = hd(project, "status").stdout
    assert f"WARNING: cannot write recordings at {s.events_dir}" in text
    # The webhook keeps serving, and the log says it once however many events follow.
    for i in range(5):
        assert s.post(event("Test.After", f"after{i}"))[0] == 200
    assert len(s.received("settings")) == sent + 5
    _, body = s.api("GET", "/api/events/recordings")
    assert body["recording"] is False and error in body["problem"]["error"]
    wait_for(lambda: NOTE in daemon_log(project), 10, what="the note in daemon.log")
    assert daemon_log(project).count(NOTE) == 1
    assert "Traceback" not in daemon_log(project)


def test_a_read_only_recording_folder_stops_recording_not_the_webhook(
        project: Path, mounted: Path) -> None:
    with tmpfs(mounted, "1m", readonly=True):
        s = run(project)
        for i in range(3):
            assert s.post(event("Test.Ro", f"ro{i}"))[0] == 200
        check_stopped(project, s, "Read-only file system", 3)
        hd(project, "down", check=True)


def test_a_full_recording_folder_stops_recording_not_the_webhook(
        project: Path, mounted: Path) -> None:
    with tmpfs(mounted, "64k"):
        s = run(project)
        sent = 0
        while not status(project)["problems"].get("recordings") and sent < 40:
            assert s.post(event("Test.Full", f"full{sent}", pad="z" * 8000))[0] == 200
            sent += 1
        check_stopped(project, s, "No space left on device", sent)
        # What was written before the disk filled reads back: whole deliveries, at most a
        # last line cut short by the full disk, which a replay skips with a note.
        from hippo_tasks.events.recording import CutShort, Delivery, read

        entries = [e for path in s.files() for e in read(path)]
        assert entries and all(isinstance(e, Delivery | CutShort) for e in entries)
        hd(project, "down", check=True)


def test_the_listing_is_newest_first_whatever_the_names(tmp_path: Path) -> None:
    """Files put there under other names (`résumé.jsonl`, `rec (1).jsonl`) came first,
    sorted by name, and the recording being written eighth (adv46 H/9)."""
    import os

    from hippo_tasks.events.recording import list_recordings

    made = {"résumé.jsonl": 100, "zz.jsonl": 200, "20260101-000000.jsonl": 300,
            "20260101-000000-2.jsonl": 300, "a b.jsonl": 400, "20260102-000000.jsonl": 500}
    for name, mtime in made.items():
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (mtime, mtime))
    assert [r.name for r in list_recordings(tmp_path)] == [
        "20260102-000000.jsonl", "a b.jsonl", "20260101-000000-2.jsonl",
        "20260101-000000.jsonl", "zz.jsonl", "résumé.jsonl"]


def test_the_listing_holds_only_what_can_be_replayed(tmp_path: Path) -> None:
    """A link to /etc/passwd was listed (API, page, MCP) with that file's size and time,
    and replaying the listed name was a 404."""
    from hippo_tasks.events.recording import RecordingError, list_recordings, named

    real = tmp_path / "20260101-000000.jsonl"
    real.write_text("")
    (tmp_path / "team-capture.jsonl").symlink_to("/etc/passwd")
    (tmp_path / "alias.jsonl").symlink_to(real.name)
    assert [r.name for r in list_recordings(tmp_path)] == [real.name]
    assert named(tmp_path, real.name) == real
    for name in ("team-capture.jsonl", "alias.jsonl"):
        with pytest.raises(RecordingError, match="no recording named"):
            named(tmp_path, name)


def test_a_short_token_is_blanked_in_strings_and_leaves_numbers_alone(tmp_path: Path) -> None:
    """Token `42`: replacing its text everywhere in the line also hit `"n":42` (and the
    time and latency), and wrote a line that was no longer JSON; replay refused it."""
    from hippo_tasks.daemon.webhook.record import Recorder
    from hippo_tasks.events.recording import Delivery, read

    recorder = Recorder(tmp_path, True, "42", lambda _: None)
    event = b'{"detail-type":"Order.42","n":42,"id":"a42b","list":[42,"42"]}'
    recorder.add(1700000042.42, 4.2, "Order.42", None, 200, "ignored",
                 b'{"status":"ignored","echo":"42"}', event)
    recorder.add(1700000043.0, 1.0, "Order.x", None, 200, "ignored", b'{"ok":true}',
                 b'{"detail-type":"Order.x"}')
    recorder.close()
    (path,) = tmp_path.glob("*.jsonl")
    text = path.read_text()
    assert "42\"" not in text.replace(":42", "")  # no string still quotes the token
    first, second = (d for d in read(path) if isinstance(d, Delivery))
    assert first.event == {"detail-type": "Order.[redacted]", "n": 42, "id": "a[redacted]b",
                           "list": [42, "[redacted]"]}
    assert first.detail_type == "Order.[redacted]" and first.status == 200
    assert second.event == {"detail-type": "Order.x"}  # no token: the bytes as received
    assert '"event":{"detail-type":"Order.x"}' in text


@pytest.mark.parametrize(("token", "quoted"), [
    ("Ab3/xY9+kQ==", r"Ab3\/xY9+kQ=="),      # PHP's and Java's json_encode write / as \/
    ("s3cretTok", r"\u0073\u0033cretTok"),     # any character may be a \u escape
])
def test_a_token_written_with_json_escapes_is_blanked_too(tmp_path: Path, token: str,
                                                          quoted: str) -> None:
    """The bytes are kept as received, and the token written with escapes was not
    found in them: every JSON reader of the recording got it back."""
    from hippo_tasks.daemon.webhook.record import Recorder
    from hippo_tasks.events.recording import Delivery, read

    recorder = Recorder(tmp_path, True, token, lambda _: None)
    recorder.add(1700000000.0, 1.0, "Order.x", None, 200, "ignored", b'{"ok":true}',
                 b'{"detail-type":"Order.x","detail":{"note":"' + quoted.encode() + b'"}}')
    recorder.add(1700000001.0, 1.0, "Order.y", None, 200, "ignored", b'{"ok":true}',
                 b'{"detail-type":"Order.y","detail":{"quote":"say \\"hi\\""}}')
    recorder.close()
    (path,) = tmp_path.glob("*.jsonl")
    first, second = (d for d in read(path) if isinstance(d, Delivery))
    assert token not in json.dumps([first.event, first.answer]), first.event
    assert first.event["detail"]["note"] == "[redacted]"
    assert second.event["detail"]["quote"] == 'say "hi"'  # escapes without the token: kept
    assert r'"event":{"detail-type":"Order.y","detail":{"quote":"say \"hi\""}}' in \
        path.read_text()


@pytest.mark.parametrize("quoted", [r"s3cr3tTOKEN\u0061bc", "s3cr3tTOKENabc"])
def test_a_token_in_a_member_a_later_one_overrides_is_blanked(tmp_path: Path,
                                                              quoted: str) -> None:
    """`{"v": "<token>", "v": "dup"}`: a JSON reader keeps the last `v`, so a check that
    read the line as a dict never saw the first, and the token spelt there with a `\\u`
    escape stayed in the recording (adv41 I/1, 5/5)."""
    from hippo_tasks.daemon.webhook.record import Recorder

    token = "s3cr3tTOKENabc"
    recorder = Recorder(tmp_path, True, token, lambda _: None)
    recorder.add(1700000000.0, 1.0, "Foo.dup", None, 200, "ignored", b'{"ok":true}',
                 b'{"detail-type":"Foo.dup","detail":{"v":"' + quoted.encode() +
                 b'","v":"dup"}}')
    recorder.close()
    (path,) = tmp_path.glob("*.jsonl")
    text = path.read_text()
    every_string: list[str] = []

    def strings(value: object) -> None:
        if isinstance(value, str):
            every_string.append(value)
        elif isinstance(value, list | tuple):
            for item in value:
                strings(item)

    strings(json.loads(text, object_pairs_hook=list))  # every member, overridden or not
    assert not [s for s in every_string if token in s], text
    assert json.loads(text)["event"]["detail"]["v"] == "dup"


@pytest.mark.parametrize("quoted", [r"Tok3n\u0053ecretXYZ", r"Tok3n\\u0053ecretXYZ"])
def test_a_token_in_an_echoed_event_is_blanked_however_escaped(tmp_path: Path,
                                                              quoted: str) -> None:
    """A target that echoes the raw event in its answer (a debugging consumer) put the
    token, spelt with a `\\u` escape by the sender, in the recording as a string of
    JSON text: `"echo": "{...\\"v\\":\\"Tok3n\\\\u0053ecretXYZ\\"}"`, which any reader
    turns back into the token (adv35 y/5). Echoed twice over, too."""
    from hippo_tasks.daemon.webhook.record import Recorder
    from hippo_tasks.events.recording import Delivery, read

    token = "Tok3nSecretXYZ"
    event = b'{"detail-type":"Svc.x","detail":{"v":"' + quoted.encode() + b'"}}'
    answer = json.dumps({"status": "success", "echo": event.decode()}).encode()
    recorder = Recorder(tmp_path, True, token, lambda _: None)
    recorder.add(1700000000.0, 1.0, "Svc.x", None, 200, "delivered", answer, event)
    recorder.close()
    (path,) = tmp_path.glob("*.jsonl")
    (first,) = (d for d in read(path) if isinstance(d, Delivery))
    assert "[redacted]" in first.answer["echo"], first.answer
    text = path.read_text()
    for _ in range(4):  # its escapes read as often as they nest: never the token
        assert token not in text, text
        text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)),
                      text).replace("\\\\", "\\")


def test_a_file_without_line_breaks_is_refused_not_read_whole(tmp_path: Path) -> None:
    """`hd events.replay` of a 3 GB file with no line break grew past 1.6 GB of memory
    reading its 'first line'."""
    from hippo_tasks.events.recording import MAX_LINE, RecordingError, read

    blob = tmp_path / "blob.jsonl"
    with blob.open("wb") as fh:
        fh.truncate(MAX_LINE + 4096)  # sparse: no disk used
    with pytest.raises(RecordingError, match="line over 16 MiB: not a recording line"):
        list(read(blob))


@pytest.mark.parametrize(("name", "value"), [
    *(("HIPPODROME_RECORD_MAX_MB", v) for v in ("abc", "-1", "nan", "0", "\u0663", "1_0",
                                                "inf")),
    ("HIPPODROME_RECORD_KEEP", "1.5"), ("HIPPODROME_RECORD_KEEP", "0")])
def test_a_bad_size_setting_is_said_not_silently_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """HIPPODROME_RECORD_MAX_MB=abc (or -1, nan) fell back to 50 MB in silence; `inf`
    was said to be "not a number", and a KEEP of 1.5 taken as 1 in silence (adv59)."""
    from hippo_tasks.daemon.webhook.record import Recorder

    monkeypatch.setenv(name, value)
    said: list[str] = []
    recorder = Recorder(tmp_path, True, None, said.append)
    recorder.close()
    assert recorder.max_bytes == 50 * 1024 * 1024 and recorder.keep == 10
    wanted = ("a finite number of at least 1e-06: using 50" if name.endswith("MB") else
              "a whole number of at least 1: using 10")
    assert said == [f"hippodrome | {name}={value!r} is not {wanted}"], said


def test_a_one_letter_token_leaves_the_recordings_own_field_names(tmp_path: Path) -> None:
    """Token `a`: every `a` in the line was blanked, the format's own keys too
    (`det[redacted]il_type`), and replay refused the file."""
    from hippo_tasks.daemon.webhook.record import Recorder
    from hippo_tasks.events.recording import Delivery, read

    recorder = Recorder(tmp_path, True, "a", lambda _: None)
    recorder.add(1700000000.0, 1.0, "Order.x", None, 200, "ignored", b'{"ok":true}',
                 b'{"detail-type":"Order.x","detail":{"name":"banana"}}')
    recorder.close()
    (path,) = tmp_path.glob("*.jsonl")
    (delivery,) = (d for d in read(path) if isinstance(d, Delivery))
    assert delivery.event["det[redacted]il"]["n[redacted]me"] == "b[redacted]n[redacted]n[redacted]"
    assert delivery.detail_type == "Order.x" and delivery.status == 200


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "0", "\u0663"])
def test_a_bad_webhook_timeout_is_said_not_silently_replaced(
        monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """HIPPODROME_WEBHOOK_TIMEOUT=abc (or -1, 0, nan) fell back to 5 s in silence,
    where the recording settings beside it say so."""
    from hippo_tasks.daemon.webhook.routing import _env_seconds

    monkeypatch.setenv("HIPPODROME_WEBHOOK_TIMEOUT", value)
    said: list[str] = []
    assert _env_seconds("HIPPODROME_WEBHOOK_TIMEOUT", 5.0, said.append) == 5.0
    assert said == [f"hippodrome | HIPPODROME_WEBHOOK_TIMEOUT={value!r} is not a number of "
                    "at least 0.001: using 5"], said
    monkeypatch.setenv("HIPPODROME_WEBHOOK_TIMEOUT", "2.5")
    assert _env_seconds("HIPPODROME_WEBHOOK_TIMEOUT", 5.0, said.append) == 2.5


@pytest.mark.parametrize("value", ["inf", "Infinity", "1e999", "100000"])
def test_an_endless_webhook_timeout_is_a_day(monkeypatch: pytest.MonkeyPatch,
                                             value: str) -> None:
    """`inf` is a day, as the guide says: it was refused, and the 5 s default used, the
    shortest wait where the longest was asked for (adv46 H/10)."""
    from hippo_tasks.daemon.webhook.routing import MAX_WAIT_S, _env_seconds

    monkeypatch.setenv("HIPPODROME_WEBHOOK_READ_TIMEOUT", value)
    said: list[str] = []
    assert _env_seconds("HIPPODROME_WEBHOOK_READ_TIMEOUT", 10.0, said.append) == MAX_WAIT_S
    assert said == []


@pytest.mark.parametrize("how", ["rm", "mv"])
def test_a_recording_deleted_under_the_daemon_goes_on_in_a_new_file(tmp_path: Path,
                                                                     how: str) -> None:
    """`rm -rf .hippodrome/events` (`git clean -xdf`) while the stack ran: every later
    delivery went into the deleted file, `current` named a file that was not there, and
    nothing said so (q/10); the same for a recording moved away to archive it (s/5)."""
    import shutil
    import time

    from hippo_tasks.daemon.webhook.record import Recorder
    from hippo_tasks.events.recording import Delivery, read

    said: list[str] = []
    folder = tmp_path / "events"
    recorder = Recorder(folder, True, None, said.append)
    try:
        recorder.add(time.time(), 1.0, "A.x", None, 200, "ignored", b'{"ok":true}',
                     b'{"detail-type":"A.x"}')
        wait_for(lambda: list(folder.glob("*.jsonl")), 10, what="the first recording")
        if how == "rm":
            shutil.rmtree(folder)
        else:
            (first,) = folder.glob("*.jsonl")
            first.rename(tmp_path / "archived.jsonl")
        recorder.add(time.time(), 1.0, "B.y", None, 200, "ignored", b'{"ok":true}',
                     b'{"detail-type":"B.y"}')
        wait_for(lambda: list(folder.glob("*.jsonl")) if folder.is_dir() else [], 10,
                 what="a new recording")
    finally:
        recorder.close()
    (path,) = folder.glob("*.jsonl")
    assert [d.detail_type for d in read(path) if isinstance(d, Delivery)] == ["B.y"]
    assert recorder.state()["current"] == path.name
    assert any("was deleted or moved: recording goes on in a new file" in s for s in said), said
