"""Index forks with real processes: fake_cell, controller, moto running the fork state
machine, and fork_action_worker answering its task. A fork holds exactly its source's
settings and documents; bad input is a 4xx JSON; a worker killed after copying but
before answering leaves a task that the next worker finishes, never a half copy."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from moto_server import free_port, running_moto
from service_process import ServiceProcess, ServiceStarter

from hippo_platform.services.common.aws_lite import AwsClient
from hippo_platform.services.fork_action_worker import workflow

DOCS = [{"_id": f"d{i}", "title": f"item {i} blue", "n": i} for i in range(25)]


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from running_moto(tmp_path_factory.mktemp("moto") / "moto.log")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[ServiceStarter]:
    with ServiceStarter(tmp_path) as starter:
        yield starter


def aws_env(moto_url: str, cell: ServiceProcess, prefix: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "HIPPODROME_TABLE_PREFIX": prefix, "HIPPODROME_PROFILE": "ecom",
            "CONTROL_PLANE_URL_OVERRIDE": cell.base_url}


def tenant(controller: str) -> dict[str, str]:
    made = requests.post(f"{controller}/api/v2/accounts", json={"name": "t"}, timeout=10)
    assert made.status_code == 201, made.text
    key = {"x-api-key": made.json()["apiKey"]}
    index = requests.post(f"{controller}/api/v2/indexes", headers=key, timeout=10,
                          json={"indexName": "src", "settings": {"model": "lexical", "k": 3}})
    assert index.status_code == 201, index.text
    return key


def add_docs(cell: str, key: dict[str, str], index: str = "src") -> None:
    added = requests.post(f"{cell}/indexes/{index}/documents", headers=key,
                          json={"documents": DOCS}, timeout=10)
    assert added.status_code == 200, added.text


def ask_fork(controller: str, key: dict[str, str], target: str,
             timeout: float = 10) -> requests.Response:
    """POST a fork of the test's index `src` to `target`, through the controller."""
    return requests.post(f"{controller}/api/v2/indexes/src/fork", headers=key,
                         json={"target": target}, timeout=timeout)


def all_docs(cell: str, key: dict[str, str], index: str) -> list[dict[str, Any]]:
    found = requests.post(f"{cell}/indexes/{index}/search", headers=key,
                          json={"q": "", "limit": 1000}, timeout=10)
    assert found.status_code == 200, found.text
    return sorted(({k: v for k, v in h.items() if k != "_score"} for h in found.json()["hits"]),
                  key=lambda d: str(d["_id"]))


def wait_fork(controller: str, key: dict[str, str], fork_id: str,
              timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got = requests.get(f"{controller}/api/v2/forks/{fork_id}", headers=key, timeout=10)
        assert got.status_code == 200, got.text
        if got.json()["status"] != "RUNNING" or time.monotonic() > deadline:
            return dict(got.json())
        time.sleep(0.1)


def workflow_stack(start: ServiceStarter, moto_url: str, prefix: str
                   ) -> tuple[ServiceProcess, dict[str, str], ServiceProcess, dict[str, str]]:
    """The cell, the fork worker and the controller on moto's workflow, with a tenant
    whose `src` index holds documents: (cell, env, controller, the tenant's key)."""
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    env = aws_env(moto_url, cell, prefix)
    start.start("fork_action_worker", env=env)
    ctl = start.start("controller", env=env)
    key = tenant(ctl.base_url)
    add_docs(cell.base_url, key)
    return cell, env, ctl, key


def test_direct_fork_in_core_copies_settings_and_documents(start: ServiceStarter) -> None:
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    ctl = start.start("controller", env={"CONTROL_PLANE_URL_OVERRIDE": cell.base_url,
                                         "HIPPODROME_PROFILE": "core"})
    key = tenant(ctl.base_url)
    add_docs(cell.base_url, key)
    made = ask_fork(ctl.base_url, key, "copy")
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "SUCCEEDED" and made.json()["numberOfDocuments"] == 25
    assert all_docs(cell.base_url, key, "copy") == all_docs(cell.base_url, key, "src")
    copy = requests.get(f"{ctl.base_url}/api/v2/indexes/copy", headers=key, timeout=10).json()
    assert copy["settings"] == {"model": "lexical", "k": 3} and copy["numberOfDocuments"] == 25
    again = wait_fork(ctl.base_url, key, made.json()["forkId"])
    assert again["status"] == "SUCCEEDED" and "accountId" not in again


def test_bad_fork_requests_are_4xx_json(start: ServiceStarter) -> None:
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    ctl = start.start("controller", env={"CONTROL_PLANE_URL_OVERRIDE": cell.base_url})
    key = tenant(ctl.base_url)
    url = f"{ctl.base_url}/api/v2/indexes"
    cases: list[tuple[str, dict[str, str], Any, int]] = [
        ("/src/fork", key, {"target": ""}, 400),
        ("/src/fork", key, {"target": 5}, 400),
        ("/src/fork", key, ["copy"], 400),
        ("/src/fork", key, {"target": "bad name!"}, 400),
        ("/src/fork", {}, {"target": "x"}, 401),
        ("/src/fork", {"x-api-key": "nope"}, {"target": "x"}, 401),
        ("/nosuch/fork", key, {"target": "x"}, 404),
        ("/src/fork", key, {"target": "src"}, 409),
    ]
    for path, headers, body, status in cases:
        got = requests.post(url + path, headers=headers, json=body, timeout=10)
        assert got.status_code == status, (path, body, got.text)
        assert isinstance(got.json()["error"], str)
    for fork_id in ("nosuch", "fork-0000000000000000", "..%2F..", "fork-" + "a" * 300):
        got = requests.get(f"{ctl.base_url}/api/v2/forks/{fork_id}", headers=key, timeout=10)
        assert got.status_code == 404 and "not found" in got.json()["error"], got.text
    # the cell's own route, as the probe suite calls it
    direct = requests.post(f"{cell.base_url}/indexes/src/fork", headers=key, timeout=10,
                           json={"target": "c2", "forkId": "f1"})
    assert direct.status_code == 201, direct.text
    same = requests.post(f"{cell.base_url}/indexes/src/fork", headers=key, timeout=10,
                         json={"target": "c2", "forkId": "f1"})
    assert same.status_code == 200 and same.json()["target"] == "c2"
    other = requests.post(f"{cell.base_url}/indexes/src/fork", headers=key, timeout=10,
                          json={"target": "c2", "forkId": "f2"})
    assert other.status_code == 409, other.text


def test_a_bad_target_name_is_the_same_400_in_every_profile(
        start: ServiceStarter, moto_url: str) -> None:
    """ecom/full answered 202 RUNNING and started a Step Functions execution that FAILED
    later; core refused it at once. Now both refuse it, in the same words, and ecom
    starts nothing (the one execution on moto is the good fork's)."""
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    core = start.start("controller", env={"CONTROL_PLANE_URL_OVERRIDE": cell.base_url,
                                          "HIPPODROME_PROFILE": "core"})
    env = aws_env(moto_url, cell, "badtarget-")
    ecom = start.start("controller", env=env)
    key = tenant(core.base_url)
    for target in ("-bad name", "ü", "bad name!", ".x"):
        answers = [ask_fork(ctl.base_url, key, target) for ctl in (core, ecom)]
        for answer in answers:
            assert answer.status_code == 400, (target, answer.text)
        assert answers[0].json() == answers[1].json() == {
            "error": f"bad target index name {target!r}: 1-128 letters, digits, '_', '-', "
                     "'.', starting with a letter or digit"}
    good = ask_fork(ecom.base_url, key, "good")
    assert good.status_code == 202 and good.json()["workflow"] == "stepfunctions", good.text
    aws = AwsClient.from_env(env)
    machine = workflow.state_machine_arn(aws, workflow.names(env)[0])
    runs = workflow.call(aws, "states", "ListExecutions", {"stateMachineArn": machine})
    assert [run["name"] for run in runs["executions"]] == [good.json()["forkId"]], runs


def test_fork_through_step_functions_and_the_worker(start: ServiceStarter, moto_url: str) -> None:
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    env = aws_env(moto_url, cell, "sfn1-")
    worker = start.start("fork_action_worker", env=env)
    ctl = start.start("controller", env=env)
    health = requests.get(f"{ctl.base_url}/healthz", timeout=10).json()
    assert health["forkWorkflow"] == "stepfunctions"
    key = tenant(ctl.base_url)
    add_docs(cell.base_url, key)
    made = ask_fork(ctl.base_url, key, "copy")
    assert made.status_code == 202 and made.json()["workflow"] == "stepfunctions", made.text
    done = wait_fork(ctl.base_url, key, made.json()["forkId"])
    assert done["status"] == "SUCCEEDED" and done["numberOfDocuments"] == 25, done
    assert all_docs(cell.base_url, key, "copy") == all_docs(cell.base_url, key, "src")
    # two forks racing for one target: one wins whole, the other fails, named
    with ThreadPoolExecutor(2) as pool:
        raced = list(pool.map(lambda _: ask_fork(ctl.base_url, key, "twin"), range(2)))
    outcomes = []
    for answer in raced:
        if answer.status_code == 409:
            outcomes.append("FAILED")
            continue
        assert answer.status_code == 202, answer.text
        ended = wait_fork(ctl.base_url, key, answer.json()["forkId"])
        assert ended["status"] == "SUCCEEDED" or "already exists" in ended["cause"], ended
        outcomes.append(ended["status"])
    assert sorted(outcomes) == ["FAILED", "SUCCEEDED"], outcomes
    assert all_docs(cell.base_url, key, "twin") == all_docs(cell.base_url, key, "src")
    # a target that appears while the fork waits in the queue: the execution FAILS, named
    assert worker.terminate() == 0  # SIGTERM: the task in hand finishes, then a clean exit
    late = ask_fork(ctl.base_url, key, "late")
    assert late.status_code == 202, late.text
    requests.post(f"{cell.base_url}/indexes/late", headers=key, json={}, timeout=10)
    start.start("fork_action_worker", env=env)
    failed = wait_fork(ctl.base_url, key, late.json()["forkId"])
    assert failed["status"] == "FAILED" and "already exists" in failed["cause"], repr(failed)
    other = requests.post(f"{ctl.base_url}/api/v2/accounts", json={"name": "o"}, timeout=10)
    stranger = {"x-api-key": other.json()["apiKey"]}
    hidden = requests.get(f"{ctl.base_url}/api/v2/forks/{made.json()['forkId']}",
                          headers=stranger, timeout=10)
    assert hidden.status_code == 404, hidden.text


def test_worker_killed_after_copying_is_finished_by_the_next(
    start: ServiceStarter, moto_url: str
) -> None:
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    env = aws_env(moto_url, cell, "sfn2-")
    crashing = start.start("fork_action_worker", args=["--visibility-timeout", "2"],
                           env={**env, "HIPPODROME_FORK_WORKER_CRASH_AFTER_COPY": "1"})
    ctl = start.start("controller", env=env)
    key = tenant(ctl.base_url)
    add_docs(cell.base_url, key)
    made = ask_fork(ctl.base_url, key, "copy")
    assert made.status_code == 202, made.text
    assert crashing.wait_exit(30) == 9  # copied, never answered
    running = wait_fork(ctl.base_url, key, made.json()["forkId"], timeout=0)
    assert running["status"] == "RUNNING"
    assert ctl.terminate() == 0  # the fork's record lives on moto, not in the controller
    ctl = start.start("controller", env=env)
    start.start("fork_action_worker", args=["--visibility-timeout", "2"], env=env)
    done = wait_fork(ctl.base_url, key, made.json()["forkId"])
    assert done["status"] == "SUCCEEDED" and done["numberOfDocuments"] == 25, done
    assert all_docs(cell.base_url, key, "copy") == all_docs(cell.base_url, key, "src")


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[str]:
    """A moto of this test alone: its execute switch is global to the server."""
    yield from running_moto(tmp_path / "own-moto.log")


def rss_mb(moto: str) -> float:
    """Resident memory of the moto serving this URL (its config API does not show the
    execute switch; what the switch costs is the point anyway)."""
    port = int(moto.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            assert conn.pid is not None
            return float(psutil.Process(conn.pid).memory_info().rss) / 2**20
    raise AssertionError(f"nothing listens on {moto}")


def test_moto_executes_from_the_first_fork_and_a_late_worker_finishes_it(
        start: ServiceStarter, own_moto: str) -> None:
    """Moto's executing Step Functions backend costs it ~140 MB once on: a worker's start
    leaves it off, the first fork turns it on. A fork asked while no worker runs waits
    in the queue, and the worker that starts later finishes it."""
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    env = aws_env(own_moto, cell, "lazy-")
    before = rss_mb(own_moto)
    assert start.start("fork_action_worker", env=env).terminate() == 0
    after_worker = rss_mb(own_moto)
    assert after_worker - before < 40, (before, after_worker)
    ctl = start.start("controller", env=env)
    key = tenant(ctl.base_url)
    add_docs(cell.base_url, key)
    made = ask_fork(ctl.base_url, key, "copy")
    assert made.status_code == 202, made.text
    assert rss_mb(own_moto) - after_worker > 60, (after_worker, rss_mb(own_moto))
    assert wait_fork(ctl.base_url, key, made.json()["forkId"], timeout=0)["status"] == "RUNNING"
    start.start("fork_action_worker", env=env)
    done = wait_fork(ctl.base_url, key, made.json()["forkId"])
    assert done["status"] == "SUCCEEDED" and done["numberOfDocuments"] == 25, done
    assert all_docs(cell.base_url, key, "copy") == all_docs(cell.base_url, key, "src")


def test_a_fork_with_moto_down_is_a_clear_503(start: ServiceStarter) -> None:
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    ctl = start.start("controller", env=aws_env(f"http://127.0.0.1:{free_port()}", cell,
                                                "nomoto-"))
    key = tenant(ctl.base_url)
    for _ in range(2):  # and again: nothing half-made is remembered
        got = ask_fork(ctl.base_url, key, "copy", timeout=30)
        assert got.status_code == 503, got.text
        assert got.json()["error"].startswith(
            "cannot set up the fork workflow on moto (POST http://127.0.0.1:"), got.text
        assert "/moto-api/config: Connection refused); is moto running?" in got.text


def test_a_fork_survives_a_cell_restart(start: ServiceStarter) -> None:
    state = str(start.folder / "cell")
    cell = start.start("fake_cell", args=["--state-dir", state])
    made = requests.post(f"{cell.base_url}/accounts", json={"name": "a"}, timeout=10).json()
    key = {"x-api-key": made["apiKey"]}
    requests.post(f"{cell.base_url}/indexes/src", headers=key, json={"m": 1}, timeout=10)
    add_docs(cell.base_url, key)
    forked = requests.post(f"{cell.base_url}/indexes/src/fork", headers=key, timeout=10,
                           json={"target": "copy", "forkId": "keep"})
    assert forked.status_code == 201
    cell.kill()  # journal replay, then a SIGTERM snapshot
    for stop in ("kill", "term"):
        again = start.start("fake_cell", args=["--state-dir", state])
        assert all_docs(again.base_url, key, "copy") == all_docs(again.base_url, key, "src")
        info = requests.get(f"{again.base_url}/indexes/copy", headers=key, timeout=10).json()
        assert info["forkedFrom"] == {"source": "src", "forkId": "keep",
                                      "numberOfDocuments": 25}
        assert info["settings"] == {"m": 1}
        if stop == "kill":
            again.terminate()


def test_a_finished_fork_is_found_after_moto_restarts(start: ServiceStarter, moto_url: str,
                                                       tmp_path: Path) -> None:
    """A fork's record lived only in moto's execution: after moto restarted (here: the
    controller asks a fresh moto) a fork that had SUCCEEDED was `404 not found`, which
    the guide reads as a wrong id, while the index it made was there. The cell keeps
    each forked index's origin; the fork is found through it, for its own account only."""
    cell, env, ctl, key = workflow_stack(start, moto_url, "sfn4-")
    fork_id = ask_fork(ctl.base_url, key, "copy").json()["forkId"]
    assert wait_fork(ctl.base_url, key, fork_id)["status"] == "SUCCEEDED"
    more = requests.post(f"{cell.base_url}/indexes/copy/documents", headers=key, timeout=10,
                         json={"documents": [{"_id": "later", "title": "added later"}]})
    assert more.status_code == 200, more.text  # the count reported is the fork's, not today's
    ctl.terminate()
    with contextlib.contextmanager(running_moto)(tmp_path / "moto-again.log") as fresh:
        again = start.start("controller", env=aws_env(fresh, cell, "sfn4-"))
        got = requests.get(f"{again.base_url}/api/v2/forks/{fork_id}", headers=key,
                           timeout=10)
        assert got.status_code == 200, got.text
        view = got.json()
        assert (view["status"], view["numberOfDocuments"], view["source"], view["target"],
                view["forkId"]) == ("SUCCEEDED", 25, "src", "copy", fork_id), view
        assert "moto or the controller restarted" in view["note"]
        other = requests.post(f"{again.base_url}/api/v2/accounts", json={"name": "o"},
                              timeout=10).json()["apiKey"]
        for headers, fid in (({"x-api-key": other}, fork_id), (key, "fork-" + "0" * 16)):
            hidden = requests.get(f"{again.base_url}/api/v2/forks/{fid}", headers=headers,
                                  timeout=10)
            assert hidden.status_code == 404, hidden.text


def test_a_direct_fork_is_found_after_the_controller_restarts(start: ServiceStarter) -> None:
    """In core the controller remembered a fork in memory only: after its restart the
    fork was `404 not found`. It is found through the index it made."""
    cell = start.start("fake_cell", args=["--state-dir", str(start.folder / "cell")])
    env = {"CONTROL_PLANE_URL_OVERRIDE": cell.base_url, "FORK_WORKFLOW": "direct"}
    ctl = start.start("controller", env=env)
    key = tenant(ctl.base_url)
    add_docs(cell.base_url, key)
    made = ask_fork(ctl.base_url, key, "copy")
    assert made.status_code == 201, made.text
    ctl.terminate()
    again = start.start("controller", env=env)
    got = requests.get(f"{again.base_url}/api/v2/forks/{made.json()['forkId']}",
                       headers=key, timeout=10)
    assert got.status_code == 200, got.text
    assert (got.json()["status"], got.json()["numberOfDocuments"]) == ("SUCCEEDED", 25)


def test_a_poison_message_on_the_fork_queue_never_ends_the_worker(
        start: ServiceStarter, moto_url: str) -> None:
    """A message nested 50,000 levels deep raised RecursionError out of the worker's
    thread: it ended, /healthz still said ok, and every later fork stayed RUNNING for
    ever (adv29 o/5). It is dropped as not a fork task, and the next fork goes through."""
    _, env, ctl, key = workflow_stack(start, moto_url, "poison-")
    aws = AwsClient.from_env(env)
    _, queue_url = workflow.ensure_queue(aws, env)
    for body in ("[" * 50_000 + "]" * 50_000, '{"token": "t", "input": 1}',
                 '{"n": ' + "1" * 5000 + "}"):
        workflow.call(aws, "sqs", "SendMessage", {"QueueUrl": queue_url, "MessageBody": body})
    made = ask_fork(ctl.base_url, key, "after")
    assert made.status_code == 202, made.text
    done = wait_fork(ctl.base_url, key, made.json()["forkId"])
    assert done["status"] == "SUCCEEDED", done
