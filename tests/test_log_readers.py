"""Log queries answered a few at a time: many at once were the daemon's memory peak.

Twenty concurrent 100,000-line requests took a daemon to 350-530 MB (each answer built
whole, then encoded), forty costly regexes delayed the webhook, and filtered scans
sharing the GIL with nineteen others ran out of their 1 s budget half way (an
`incomplete` answer of 52,221 lines where 100,000 matched). The daemon now
answers LOG_READERS at a time; the others wait their turn, and one that waits too long
is a 503 with a sentence, not a hang.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, cast

import pytest
from stackutil import HD_CLI, free_ports, hd, script_service, stack_header, wait_for, write_stack

from hippo_tasks.daemon import commands
from hippo_tasks.daemon.commands import LOG_READERS, StackCommands
from hippo_tasks.daemon.engine import Engine
from hippo_tasks.errors import LogAnswersUnreadError, LogReadersBusyError

LINES = 100_000


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _chatty_stack(project: Path) -> tuple[str, int]:
    """A stack whose one service printed LINES lines; its logs URL and the daemon's pid."""
    dash, port = free_ports(2)
    chatty = project / "chatty.py"
    chatty.write_text(
        "import http.server, sys\n"
        f"sys.stdout.write(''.join(f'line {{i}} ' + 'x' * 60 + '\\n' for i in range({LINES})))\n"
        "sys.stdout.flush()\n"
        "http.server.test(http.server.SimpleHTTPRequestHandler, port=int(sys.argv[2]),"
        " bind='127.0.0.1')\n")
    write_stack(project, stack_header(dash, log_buffer_lines=LINES)
                + script_service("chatty", str(chatty), port))
    hd(project, "up", "--detach", check=True, timeout=120)
    base = f"http://127.0.0.1:{dash}/api/services/chatty/logs"
    wait_for(lambda: get(f"{base}?lines=1")[1]["last_seq"] >= LINES, 30,
             what="the service's 100,000 lines in the daemon's buffer")
    return base, int(json.loads((project / ".hippodrome" / "registry.json").read_text())
                     ["daemon"]["pid"])


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def test_twenty_big_queries_at_once_are_all_answered_in_turn(project: Path) -> None:
    base, _ = _chatty_stack(project)
    try:
        answers: list[tuple[int, Any]] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            extra = "&grep=line" if i % 2 else ""  # plain tails and filtered scans
            got = get(f"{base}?lines={LINES}{extra}")
            with lock:
                answers.append(got)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert len(answers) == 20
        for status, body in answers:
            assert status == 200, body
            # with the daemon's notes; a filtered scan that ran out of its time budget
            # (a loaded machine) says so, and answers from where it stopped
            assert LINES - 10 <= len(body["lines"]) <= LINES or (
                body.get("incomplete") and len(body["lines"]) <= LINES), \
                {k: v for k, v in body.items() if k != "lines"}
            numbers = [int(ln["line"].split()[1]) for ln in body["lines"]
                       if ln["line"].startswith("line ")]
            assert numbers == list(range(numbers[0], LINES)), numbers[:5]
    finally:
        hd(project, "down")


def test_a_query_that_finds_no_slot_is_told_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The slots held by other queries: the next one waits LOG_WAIT_S, then a sentence."""
    monkeypatch.setattr(commands, "LOG_WAIT_S", 0.2)
    for _ in range(LOG_READERS):
        assert commands._log_slots.acquire(timeout=1)
    try:
        cmds = StackCommands(cast(Engine, None))  # refused before the engine is asked
        with pytest.raises(LogReadersBusyError) as caught:
            cmds.logs("web", 10)
        assert caught.value.message() == (
            f"the daemon has been answering {LOG_READERS} other log queries for 0.2s (it "
            f"answers {LOG_READERS} at a time); try again, or ask for fewer lines or a "
            "narrower filter")
        with pytest.raises(LogReadersBusyError):
            cmds.logs_json("web", 10)
    finally:
        for _ in range(LOG_READERS):
            commands._log_slots.release()


def test_answers_nobody_reads_are_held_only_up_to_a_limit(project: Path) -> None:
    """Clients that ask for 100,000 lines and read nothing: each built answer was held
    until its write timed out, and 120 of them took the daemon past 1 GB (adv41 I/2).
    Answers not yet read are held up to LOG_UNREAD_BYTES; a query waits for room, and
    gets it once those clients go."""
    base, daemon = _chatty_stack(project)
    clients: list[socket.socket] = []
    try:
        size = len(json.dumps(get(f"{base}?lines={LINES}")[1]).encode())
        assert size > 8 * 2**20  # the workload this test is about: ~13 MB an answer
        before = _rss_mb(daemon)
        host = base.split("/")[2]
        for _ in range(24):  # ~310 MB of answers if each were held
            s = socket.create_connection(("127.0.0.1", int(host.split(":")[1])))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET /api/services/chatty/logs?lines={LINES} HTTP/1.1\r\n"
                      f"Host: {host}\r\n\r\n".encode())
            clients.append(s)
        peak, until = before, time.monotonic() + 8
        while time.monotonic() < until:
            peak = max(peak, _rss_mb(daemon))
            time.sleep(0.05)
        small: list[tuple[int, Any]] = []
        waiting = threading.Thread(target=lambda: small.append(get(f"{base}?lines=5")))
        waiting.start()
        # `hd logs --timestamps` waits as long as the daemon may make it wait: it gave
        # up at 10 s, said the daemon did not answer and advised `hd down --force`
        # (adv42 T/2)
        cli = subprocess.Popen([*HD_CLI, "logs", "--timestamps", "-s", "chatty", "-l", "3",
                                "--project-root", str(project)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        time.sleep(12)
        for s in clients:
            s.close()
        waiting.join(60)
        out, err = cli.communicate(timeout=60)
        assert small and small[0][0] == 200 and len(small[0][1]["lines"]) == 5, small
        assert cli.returncode == 0 and len(out.splitlines()) == 3, (out, err)
        # held: at most the limit plus one answer per slot; building two: ~75 MB each.
        # Measured: ~210 MB here; every answer held, as before: ~610 MB.
        bound = (commands.LOG_UNREAD_BYTES + LOG_READERS * size) / 2**20 + 2 * 100
        assert peak - before < bound, (peak, before, bound)
    finally:
        for s in clients:
            s.close()
        hd(project, "down")


def test_a_query_that_finds_no_room_is_told_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unread answers at the limit: the next query waits LOG_WAIT_S, then a sentence;
    once they are let go, queries are answered again."""
    monkeypatch.setattr(commands, "LOG_WAIT_S", 0.2)
    let_go = commands._unread.hold(commands.LOG_UNREAD_BYTES)
    assert let_go is not None
    try:
        cmds = StackCommands(cast(Engine, None))  # refused before the engine is asked
        with pytest.raises(LogAnswersUnreadError) as caught:
            cmds.logs_json("web", 10)
        assert caught.value.message() == (
            "the daemon has held 64 MB of log answers that their clients have not read "
            "for 0.2s (it holds at most 64 MB); try again, ask for fewer lines, or end "
            "the client that is not reading (a paused `curl`, a stopped script): an "
            "unread answer is let go at most 15 s after the daemon began to send it")
    finally:
        let_go()
        let_go()  # a second call lets nothing more go
    assert commands._unread.held == 0
    assert commands._unread.wait_for_room(0)


def test_room_is_checked_and_counted_at_once_for_each_answer() -> None:
    """Two answers built side by side each found room before either was counted, and
    held 196 MB together against 64 (adv42 T/1). An answer is held only if it fits
    beside what is held, or alone."""
    unread = commands._UnreadAnswers(64)
    first = unread.hold(40)
    assert first is not None and unread.hold(40, 0.05) is None
    second = unread.hold(24)
    assert second is not None and unread.held == 64 and not unread.wait_for_room(0)
    first()
    assert unread.hold(100, 0.05) is None  # larger than the limit: only alone
    second()
    alone = unread.hold(100)
    assert alone is not None and unread.held == 100 and unread.hold(1, 0) is None
    alone()
    assert unread.held == 0

    got: list[object] = []
    blocker = unread.hold(64)
    assert blocker is not None
    waiter = threading.Thread(target=lambda: got.append(unread.hold(10, 5)))
    waiter.start()
    time.sleep(0.1)
    assert not got  # waits for room
    blocker()
    waiter.join(5)
    assert got and callable(got[0]) and unread.held == 10
