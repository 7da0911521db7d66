"""agentic_search on real processes: a conversation's messages search a real fake_cell
through a real search_proxy (over SEARCH_PROXY_URL), its turns are kept, and with
persistence on they survive a restart (even kill -9), as `wrangler dev --persist`."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from service_process import ServiceProcess, ServiceStarter, free_port, get_status
from stackutil import wait_for

EXIT_CONFIG = 78


@dataclass
class Stack:
    start: ServiceStarter
    cell: ServiceProcess
    proxy: ServiceProcess
    key: str
    folder: Path

    def agent(self, *args: str, port: int | None = None) -> ServiceProcess:
        return self.start.start("agentic_search", args=args, port=port,
                                env={"SEARCH_PROXY_URL": self.proxy.base_url})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("agentic")
    with ServiceStarter(folder) as start:
        cell = start.start("fake_cell", args=["--state-dir", str(folder / "cell")])
        # search_proxy forwards to "global_worker"; the cell answers the same route.
        proxy = start.start("search_proxy", env={"GLOBAL_WORKER_URL": cell.base_url})
        key = requests.post(f"{cell.base_url}/accounts", json={"name": "shop"}).json()["apiKey"]
        headers = {"x-api-key": key}
        assert requests.post(f"{cell.base_url}/indexes/shop", json={}, headers=headers).ok
        docs = [{"_id": "s1", "title": "red running shoes"},
                {"_id": "s2", "title": "blue wool socks"}]
        put = requests.post(f"{cell.base_url}/indexes/shop/documents",
                            json={"documents": docs}, headers=headers)
        assert put.ok, put.text
        yield Stack(start, cell, proxy, key, folder)


def say(agent: ServiceProcess, cid: str, body: Any, key: str | None = "") -> requests.Response:
    headers = {} if key is None else {"x-api-key": key}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{agent.base_url}/conversations/{cid}/messages", data=data,
                         headers={**headers, "Content-Type": "application/json"}, timeout=10)


def history(agent: ServiceProcess, cid: str) -> requests.Response:
    return requests.get(f"{agent.base_url}/conversations/{cid}", timeout=5)


def test_a_message_is_answered_from_a_search_and_the_turns_are_kept(stack: Stack) -> None:
    agent = stack.agent()
    first = say(agent, "c1", {"message": "running shoes", "index": "shop"}, stack.key)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert [h["_id"] for h in answer["hits"]] == ["s1"] and "s1" in answer["reply"]
    second = say(agent, "c1", {"message": "socks"}, stack.key)  # the index is remembered
    assert second.status_code == 200 and second.json()["hits"][0]["_id"] == "s2"
    kept = history(agent, "c1").json()
    assert kept["index"] == "shop"
    assert [m["role"] for m in kept["messages"]] == ["user", "assistant"] * 2
    assert kept["messages"][3]["hits"] == ["s2"]
    health = requests.get(f"{agent.base_url}/healthz").json()
    assert health["persist"] is False and health["searchProxyUrl"] == stack.proxy.base_url
    gone = requests.delete(f"{agent.base_url}/conversations/c1")
    assert gone.ok and history(agent, "c1").status_code == 404


def test_bad_input_is_a_4xx_naming_the_problem(stack: Stack) -> None:
    agent = stack.agent()
    cases: list[tuple[str, Any, str | None, int, str]] = [
        ("c2", {"message": "x", "index": "shop"}, None, 401, "x-api-key"),
        ("c2", b"{oops", stack.key, 400, "malformed JSON"),
        ("c2", [1, 2], stack.key, 400, "JSON object"),
        ("c2", {"index": "shop"}, stack.key, 400, "'message'"),
        ("c2", {"message": 5, "index": "shop"}, stack.key, 400, "'message'"),
        ("c2", {"message": "x"}, stack.key, 400, "'index'"),
        ("c2", {"message": "x", "index": "shop", "limit": "many"}, stack.key, 400, "'limit'"),
        ("c2", {"message": "x", "index": "-bad"}, stack.key, 400, "index name"),
        ("-c2", {"message": "x", "index": "shop"}, stack.key, 400, "conversation id"),
        ("c2", {"message": "x", "index": "nope"}, stack.key, 404, "nope"),
        ("c2", {"message": "x", "index": "shop"}, "hk_wrong", 401, ""),
    ]
    for cid, body, key, status, words in cases:
        answer = say(agent, cid, body, key)
        assert answer.status_code == status, (body, answer.text)
        assert words in answer.json()["error"], (body, answer.text)
    assert history(agent, "c2").status_code == 404, "failed messages leave no conversation"
    missing = history(agent, "never").json()["error"]
    assert "persistence is off" in missing and "--persist" in missing
    assert requests.get(f"{agent.base_url}/conversations/c2/messages").status_code == 405


def test_a_down_search_proxy_is_a_502_naming_it(stack: Stack, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with ServiceStarter(tmp_path) as start:
        agent = start.start("agentic_search", env={"SEARCH_PROXY_URL": dead})
        answer = say(agent, "c3", {"message": "x", "index": "shop"}, stack.key)
        assert answer.status_code == 502
        error = answer.json()["error"]
        assert "search_proxy" in error and "SEARCH_PROXY_URL" in error and dead in error
        assert agent.terminate() == 0


def test_persisted_conversations_survive_a_restart_even_kill_9(stack: Stack,
                                                               tmp_path: Path) -> None:
    state = tmp_path / "state"
    agent = stack.agent("--persist", "--state-dir", str(state))
    port = agent.port
    assert say(agent, "keep", {"message": "shoes", "index": "shop"}, stack.key).ok
    assert requests.get(f"{agent.base_url}/healthz").json()["stateFile"].startswith(str(state))
    agent.kill()  # nothing flushed on the way out: the turn was written when answered
    again = stack.agent("--persist", "--state-dir", str(state), port=port)
    kept = history(again, "keep")
    assert kept.status_code == 200, kept.text
    assert [m["content"] for m in kept.json()["messages"]][0] == "shoes"
    assert say(again, "keep", {"message": "socks"}, stack.key).json()["turns"] == 4
    assert again.terminate() == 0
    third = stack.agent("--persist", "--state-dir", str(state))
    assert len(history(third, "keep").json()["messages"]) == 4
    third.stop()
    plain = stack.agent()  # no persistence: a restart starts empty, as wrangler dev does
    assert say(plain, "lost", {"message": "shoes", "index": "shop"}, stack.key).ok
    plain.signal(signal.SIGTERM)
    plain.wait_exit()
    fresh = stack.agent(port=plain.port)
    assert history(fresh, "lost").status_code == 404


def test_the_persist_env_flag_uses_the_stack_state_dir(stack: Stack, tmp_path: Path) -> None:
    env = {"SEARCH_PROXY_URL": stack.proxy.base_url, "AGENTIC_SEARCH_PERSIST": "1",
           "HIPPODROME_STATE_DIR": str(tmp_path / "state")}
    with ServiceStarter(tmp_path) as start:
        agent = start.start("agentic_search", env=env)
        assert say(agent, "e1", {"message": "shoes", "index": "shop"}, stack.key).ok
        assert (tmp_path / "state" / "agentic_search" / "conversations.json").exists()
        second = start.spawn("agentic_search", env=env, port=free_port())
        assert second.wait_exit() == EXIT_CONFIG, "one state folder, one writer"
        assert "another agentic_search" in second.output()
        assert get_status(agent.port) == 200


def test_a_corrupt_state_file_is_moved_aside(stack: Stack, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "conversations.json").write_text("{not json")
    agent = stack.agent("--persist", "--state-dir", str(state))
    assert requests.get(f"{agent.base_url}/healthz").json()["conversations"] == 0
    aside = list(state.glob("conversations.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{not json"
    assert "unreadable" in wait_for(lambda: "unreadable" in agent.output() and agent.output())
