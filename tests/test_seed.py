"""The seed job against real fake_cell and controller processes (and, for the admin
part, a real ecom stack): the same seed gives the same data, seeding twice changes
nothing, the files are written, and a missing service is one clear line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from data_stack import REPO, run_task
from service_process import ServiceStarter, free_port
from stackutil import (
    HD_CLI,
    free_offset,
    free_ports,
    hd,
    stack_header,
    toy_service,
    wait_for,
    write_stack,
)

from hippo_platform.seed import data
from hippo_platform.seed.files import read_env_file


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """fake_cell and controller; the env the stack's [env] contract would give the job."""
    folder = tmp_path_factory.mktemp("seed-plane")
    with ServiceStarter(folder) as start:
        cell = start.start("fake_cell", args=["--state-dir", str(folder / "state")])
        controller = start.start("controller",
                                 env={"CONTROL_PLANE_URL_OVERRIDE": cell.base_url})
        yield {"CONTROLLER_URL": controller.base_url, "MARQO_BASE_URL": cell.base_url,
               "HIPPODROME_CELL": "local", "HIPPODROME_PROFILE": "core",
               "STATE": str(folder / "state")}


def run_seed(root: Path, env: dict[str, str], *args: str,
             prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HIPPODROME_")}
    full.update({"PYTHONPATH": str(REPO), **env})
    return subprocess.run([*prefix, sys.executable, "-m", "hippo_platform.seed",
                           "--project-root", str(root), *args],
                          env=full, capture_output=True, text=True, timeout=60)


def seed_record(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / ".hippodrome" / "seed.json").read_text()))


def cell_docs(cell_url: str, key: str, index: str) -> list[dict[str, Any]]:
    answer = requests.post(f"{cell_url}/indexes/{index}/search", headers={"x-api-key": key},
                           json={"q": "*", "limit": 1000}, timeout=10)
    assert answer.ok, answer.text
    docs = [{k: v for k, v in h.items() if k != "_score"} for h in answer.json()["hits"]]
    return sorted(docs, key=lambda d: str(d["_id"]))


def test_same_seed_same_data_in_any_process() -> None:
    code = ("import json; from hippo_platform.seed import data; "
            "print(json.dumps([data.documents(42, i) + data.merchandising_rules(42, i) + "
            "[data.admin_settings(42, i)]"
            " for i in data.INDEXES]))")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": hs}).stdout
        for hs in ("1", "2")
    }
    assert len(outputs) == 1
    assert data.documents(42, "seed-home") != data.documents(43, "seed-home")
    assert data.documents(42, "seed-home") != data.documents(42, "seed-kitchen")
    docs = data.documents(42, "seed-apparel")
    assert [d["_id"] for d in docs] == [f"seed-apparel-{n:03d}" for n in range(24)]
    rules = data.merchandising_rules(42, "seed-apparel")
    assert {r["documentId"] for r in rules} <= {d["_id"] for d in docs}


def test_seed_writes_the_data_and_both_files(plane: dict[str, str], tmp_path: Path) -> None:
    done = run_seed(tmp_path, plane)
    assert done.returncode == 0, done.stderr
    assert "3 indexes, 72 documents" in done.stdout and "admin data skipped" in done.stdout
    record = seed_record(tmp_path)
    key = record["account"]["apiKey"]
    assert record["seed"] == 42 and record["account"]["name"] == "hippodrome-seed-42"
    assert [ix["indexName"] for ix in record["indexes"]] == list(data.INDEXES)
    for index in data.INDEXES:
        assert cell_docs(plane["MARQO_BASE_URL"], key, index) == data.documents(42, index)
    for name in (".hippodrome/seed.json", ".env.e2e"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600  # they hold the key
    env = read_env_file(tmp_path / ".env.e2e")
    assert env["ENVIRONMENT"] == "hippodrome" and env["HIPPODROME_RANDOM_SEED"] == "42"
    assert env["HIPPODROME_API_KEY"] == key
    assert env["HIPPODROME_ACCOUNT_ID"] == record["account"]["accountId"]
    assert env["CONTROLLER_URL"] == plane["CONTROLLER_URL"]
    assert env["MARQO_BASE_URL"] == plane["MARQO_BASE_URL"]
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    sourced = subprocess.run(["bash", "-c", f"source {tmp_path / '.env.e2e'} && env"],
                             capture_output=True, text=True, check=True).stdout
    assert f"HIPPODROME_API_KEY={key}" in sourced.splitlines()
    assert not list((tmp_path / ".hippodrome").glob(".*.tmp"))


def test_a_folder_where_a_file_goes_is_a_sentence_and_seeds_nothing(
        plane: dict[str, str], tmp_path: Path) -> None:
    """A folder named .env.e2e was a traceback, after seed.json had been written anew."""
    (tmp_path / ".env.e2e").mkdir()
    done = run_seed(tmp_path, plane)
    assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr
    assert ".env.e2e is a folder; seeding writes a file there" in done.stdout + done.stderr
    assert not (tmp_path / ".hippodrome" / "seed.json").exists()


@contextlib.contextmanager
def unreplaceable(path: Path) -> Iterator[tuple[list[str], str]]:
    """`path` made so that no rename can replace it, for real: immutable (`chattr +i`,
    as root); else its folder without write permission, for this user or, as root
    where chattr cannot, for root run without the capability that skips that check.
    Yields the command prefix the seed must run under and the error it meets."""
    if os.geteuid() == 0 and shutil.which("chattr") and \
            subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        try:
            yield [], "Operation not permitted"
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        return
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root with neither chattr +i nor setpriv cannot meet an unwritable file")
    drop = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override"] \
        if os.geteuid() == 0 else []
    path.parent.chmod(0o555)
    try:
        yield drop, "Permission denied"
    finally:
        path.parent.chmod(0o755)


@pytest.mark.parametrize("name", [".env.e2e", ".hippodrome/seed.json"])
def test_a_file_that_cannot_be_replaced_is_a_sentence_and_both_stay_as_they_were(
        plane: dict[str, str], tmp_path: Path, name: str) -> None:
    """An immutable .env.e2e (as EPERM, EACCES, EROFS or ENOSPC would) was a traceback
    after seed.json had been written anew: the two files named different seedings."""
    assert run_seed(tmp_path, plane).returncode == 0
    files = [tmp_path / ".hippodrome" / "seed.json", tmp_path / ".env.e2e"]
    before = [f.read_bytes() for f in files]
    with unreplaceable(tmp_path / name) as (prefix, why):
        done = run_seed(tmp_path, plane, "--seed", "7", prefix=prefix)
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    assert done.returncode == 10, out  # README's exit codes: a file it must write
    assert f"seed: cannot write {tmp_path / name}: {why}. " in done.stderr, out
    assert "were left as they were" in done.stderr, out
    if name == ".env.e2e":
        # seed.json took the account seed 7 made, under `accounts`, the moment it was
        # made; the seeding it names is still the last one that finished.
        now = json.loads(files[0].read_text())
        assert now.pop("accounts")["7"]["name"] == "hippodrome-seed-7"
        assert now == {k: v for k, v in json.loads(before[0]).items() if k != "accounts"}
        files, before = files[1:], before[1:]
    else:
        assert "could not be recorded" in done.stderr, out
    assert [f.read_bytes() for f in files] == before, "a file was replaced"
    assert not [p for f in files for p in f.parent.glob(".*.tmp")], "temp files left"


def test_seeding_twice_reuses_the_account_and_keeps_the_documents(
    plane: dict[str, str], tmp_path: Path
) -> None:
    assert run_seed(tmp_path, plane).returncode == 0
    first = seed_record(tmp_path)
    again = run_seed(tmp_path, plane)
    assert again.returncode == 0 and "(reused)" in again.stdout
    second = seed_record(tmp_path)
    assert second["account"]["accountId"] == first["account"]["accountId"]
    assert second["indexes"] == [{**ix, "created": False} for ix in first["indexes"]]
    key = second["account"]["apiKey"]
    assert len(cell_docs(plane["MARQO_BASE_URL"], key, "seed-home")) == data.DOCS_PER_INDEX


def test_the_seed_comes_from_the_environment_then_the_flag(
    plane: dict[str, str], tmp_path: Path
) -> None:
    done = run_seed(tmp_path, {**plane, "HIPPODROME_RANDOM_SEED": "7"})
    assert done.returncode == 0, done.stderr
    record = seed_record(tmp_path)
    assert record["seed"] == 7 and record["account"]["name"] == "hippodrome-seed-7"
    key = record["account"]["apiKey"]
    assert cell_docs(plane["MARQO_BASE_URL"], key, "seed-kitchen") == \
        data.documents(7, "seed-kitchen")
    flagged = run_seed(tmp_path, {**plane, "HIPPODROME_RANDOM_SEED": "7"}, "--seed", "8")
    assert flagged.returncode == 0
    assert seed_record(tmp_path)["seed"] == 8
    assert read_env_file(tmp_path / ".env.e2e")["HIPPODROME_RANDOM_SEED"] == "8"


def test_env_file_lines_do_not_depend_on_the_environments_order() -> None:
    """The seed job `up` runs and `hd seed` wrote the same variables in a different
    order: a noisy diff between two files that should be equal."""
    from hippo_platform.seed.endpoints import StackView
    from hippo_platform.seed.run import _env_values

    env = {"CONTROLLER_URL": "http://127.0.0.1:9002", "MARQO_BASE_URL": "http://127.0.0.1:9001",
           "HIPPODROME_PROFILE": "core", "HIPPODROME_CELL": "local",
           "HIPPODROME_TABLE_PREFIX": "dev-x-"}
    account = {"apiKey": "k", "accountId": "a"}
    forward = _env_values(42, StackView(env), account)
    backward = _env_values(42, StackView(dict(reversed(list(env.items())))), account)
    assert list(forward.items()) == list(backward.items())


def test_going_back_to_a_seed_reuses_its_account(plane: dict[str, str], tmp_path: Path) -> None:
    """Only the last seed's account was recorded: 42, then 7, then 42 again made a
    second hippodrome-seed-42 account with its own indexes and documents."""
    def account_id() -> str:
        return str(seed_record(tmp_path)["account"]["accountId"])

    assert run_seed(tmp_path, plane).returncode == 0
    first = account_id()
    assert run_seed(tmp_path, plane, "--seed", "7").returncode == 0
    seven = account_id()
    assert seven != first
    for seed, expected in (("42", first), ("7", seven)):
        back = run_seed(tmp_path, plane, "--seed", seed)
        assert back.returncode == 0 and "(reused)" in back.stdout, back.stdout
        assert account_id() == expected
    assert set(seed_record(tmp_path)["accounts"]) == {"42", "7"}


def test_one_seed_at_a_time_so_both_files_name_one_seeding(
        plane: dict[str, str], tmp_path: Path) -> None:
    """Six `hd seed --seed N` at once: seed.json ended with seed 103 and .env.e2e with
    104, each file whole, so a suite and a tool reading seed.json disagreed on the key.
    A seed now waits for the one before (a lock held here stands for it)."""
    import fcntl

    full = {k: v for k, v in os.environ.items() if not k.startswith("HIPPODROME_")}
    full.update({"PYTHONPATH": str(REPO), **plane})
    (tmp_path / ".hippodrome").mkdir()
    with open(tmp_path / ".hippodrome" / "seed.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = subprocess.Popen([sys.executable, "-m", "hippo_platform.seed",
                                    "--project-root", str(tmp_path), "--seed", "101"],
                                   env=full, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            with contextlib.suppress(subprocess.TimeoutExpired):
                waiting.wait(5)
            assert waiting.poll() is None, "it seeded while another seed held the lock"
            assert not (tmp_path / ".hippodrome" / "seed.json").exists()
        except BaseException:
            waiting.kill()
            waiting.wait()
            raise
    out, _ = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, out
    procs = [subprocess.Popen([sys.executable, "-m", "hippo_platform.seed", "--project-root",
                               str(tmp_path), "--seed", str(n)], env=full,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n in (102, 103, 104, 101)]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    record, env = seed_record(tmp_path), read_env_file(tmp_path / ".env.e2e")
    assert str(record["seed"]) == env["HIPPODROME_RANDOM_SEED"], (record["seed"], env)
    assert record["account"]["apiKey"] == env["HIPPODROME_API_KEY"]
    assert set(record["accounts"]) == {"101", "102", "103", "104"}


def test_an_account_gone_from_the_cell_is_made_again(plane: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / ".hippodrome").mkdir()
    (tmp_path / ".hippodrome" / "seed.json").write_text(json.dumps(
        {"seed": 42, "account": {"accountId": "acc_gone", "apiKey": "hk_gone"}}))
    done = run_seed(tmp_path, plane)
    assert done.returncode == 0, done.stderr
    assert "acc_gone is gone" in done.stdout
    assert seed_record(tmp_path)["account"]["accountId"] != "acc_gone"


def test_a_cell_that_cannot_be_reached_makes_no_second_account(tmp_path: Path) -> None:
    """The controller answers 502 (its cell down or restarting): the recorded account
    was taken for gone and a second one made, with new keys the e2e suites did not hold
    (adv24 b/1). Only the cell's 401/403/404 mean gone; this is a sentence, exit 1, and
    both files stay as they were."""
    root = tmp_path / "proj"
    (root / ".hippodrome").mkdir(parents=True)
    seed_json = root / ".hippodrome" / "seed.json"
    seed_json.write_text(json.dumps(
        {"seed": 42, "account": {"accountId": "acc_kept", "apiKey": "hk_kept"}}))
    before = seed_json.read_bytes()
    with ServiceStarter(tmp_path) as start:
        controller = start.start("controller", env={
            "CONTROL_PLANE_URL_OVERRIDE": f"http://127.0.0.1:{free_port()}"})
        done = run_seed(root, {"CONTROLLER_URL": controller.base_url,
                               "HIPPODROME_CELL": "local", "HIPPODROME_PROFILE": "core"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "is gone" not in done.stdout + done.stderr
    assert "answered 502 to GET /api/v2/accounts/acc_kept" in done.stderr, done.stderr
    assert "nothing was seeded" in done.stderr and "Traceback" not in done.stderr
    assert seed_json.read_bytes() == before
    assert not (root / ".env.e2e").exists()


@pytest.mark.parametrize(("account_id", "key"), [
    ("acc_x", "ключ"), ("acc_x", "a\nb"), ("acc_x", "a\u0000b"), ("acc_x", 42), ("acc_x", ["k"]),
    (5, None), ("acc_x", None), (None, "hk_x")])
def test_a_hand_edited_recorded_key_makes_a_new_account_and_says_so(
    plane: dict[str, str], tmp_path: Path, account_id: object, key: object
) -> None:
    """A key that cannot go in a header ended the seed job with a traceback; an id or
    key of the wrong type, or none, was replaced by a new account without a word
    (adv59 F7)."""
    (tmp_path / ".hippodrome").mkdir()
    (tmp_path / ".hippodrome" / "seed.json").write_text(json.dumps(
        {"seed": 42, "accounts": {"42": {"accountId": account_id, "apiKey": key}}}))
    done = run_seed(tmp_path, plane)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "the account recorded for seed 42 in seed.json is not usable" in done.stdout, \
        done.stdout
    assert seed_record(tmp_path)["account"]["accountId"] not in ("acc_x", 5, None)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"CONTROLLER_URL": "DEAD"}, "controller is not reachable at DEAD"),
        ({"HIPPODROME_PROFILE": "ecom", "ADMIN_SERVER_URL": "DEAD"},
         "admin_server is not reachable at DEAD"),
        ({"HIPPODROME_CELL": "staging"}, "'staging' cell"),
        ({"HIPPODROME_RANDOM_SEED": "lots"}, "must be an integer"),
    ],
)
def test_a_missing_service_is_one_clear_line(
    plane: dict[str, str], tmp_path: Path, change: dict[str, str], needle: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {**plane, **{k: v.replace("DEAD", dead) for k, v in change.items()}}
    done = run_seed(tmp_path, env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle.replace("DEAD", dead) in lines[0], done.stderr
    assert not (tmp_path / ".env.e2e").exists()


def test_admin_settings_and_rules_on_a_real_ecom_stack(project: Path) -> None:
    """The stack's own seed job, then `invoke seed` again, with admin_server running."""
    offset = free_offset()
    up = hd(project, "up", "--profile", "ecom", "--only", "seed", "--port-offset", str(offset),
            "--table-prefix", "seedtest-", "--detach", env={"HIPPODROME_RANDOM_SEED": "42"})
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        record = seed_record(project)
        assert record["admin"]["seeded"] is True, record["admin"]
        assert record["admin"]["settings"] == list(data.INDEXES)
        assert len(record["admin"]["rules"]) == 2 * len(data.INDEXES)
        admin = f"http://127.0.0.1:{9004 + offset}/api/v1/indexes"
        auth = {"Authorization": f"Bearer {record['account']['apiKey']}"}
        stored = requests.get(f"{admin}/seed-home/settings", headers=auth, timeout=10).json()
        assert stored["settings"] == data.admin_settings(42, "seed-home")
        rules = requests.get(f"{admin}/seed-home/merchandising/rules", headers=auth,
                             timeout=10).json()["rules"]
        expected = data.merchandising_rules(42, "seed-home")
        assert [(r["ruleId"], r["action"], r["documentId"]) for r in rules] == sorted(
            (r["ruleId"], r["action"], r["documentId"]) for r in expected)
        env = read_env_file(project / ".env.e2e")
        assert env["ADMIN_SERVER_URL"] == f"http://127.0.0.1:{9004 + offset}"
        assert env["MOTO_URL"] == env["AWS_ENDPOINT_URL"]
        assert env["ECOM_INDEX_SETTINGS_TABLE"] == "seedtest-EcomIndexSettingsTable"

        again = run_task(project, "seed")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "(reused)" in again.stdout and "settings and 6 rules" in again.stdout
        assert seed_record(project)["account"] == {**record["account"], "reused": True}
    finally:
        hd(project, "down", timeout=60)


def test_hd_seed_runs_one_at_a_time_whatever_the_program(project: Path) -> None:
    """The lock was the bundled seed program's own: two `hd seed` of a stack whose
    [commands.seed] is another program ran at once (`start start end end`). `hd seed`
    holds it now, and says that it waits."""
    dash, port = free_ports(2)
    write_stack(project, stack_header(dash) + toy_service("web", port)
                + '[commands.seed]\ncommand = ["sh", "-c", "echo start >> seed.log; '
                  'sleep 1.5; echo end >> seed.log"]\n')
    hd(project, "up", "--detach", check=True)
    try:
        first = subprocess.Popen([*HD_CLI, "seed"], cwd=project, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: (project / "seed.log").exists(), 20, what="the first seed began")
        second = subprocess.run([*HD_CLI, "seed"], cwd=project, capture_output=True,
                                text=True, timeout=60)
        out, _ = first.communicate(timeout=60)
        assert first.returncode == 0 and second.returncode == 0, out + second.stdout
        assert "waiting for another seed of this project to finish" in second.stdout
        assert (project / "seed.log").read_text().split() == ["start", "end", "start", "end"]
    finally:
        hd(project, "down")


def test_a_seed_refused_for_admin_server_makes_nothing_first(plane: dict[str, str],
                                                              tmp_path: Path) -> None:
    """admin_server stopped: the refusal came after the account, 3 indexes and their
    documents were made, recorded nowhere, and the next seed made a second account
    (adv24 b/7). It is said before anything is made."""
    from hippo_platform.seed.endpoints import StackView
    from hippo_platform.seed.run import SeedError, seed_stack

    view = StackView(env={**plane, "HIPPODROME_PROFILE": "ecom"},
                     rows={"admin_server": {"state": "stopped"}})
    made: list[str] = []
    with pytest.raises(SeedError) as info:
        seed_stack(tmp_path, 4242, view, made.append)
    assert "admin_server is stopped" in str(info.value) and "nothing was seeded" in \
        str(info.value), info.value
    assert made == [] and not (tmp_path / ".hippodrome" / "seed.json").exists()
    key = requests.post(f"{plane['CONTROLLER_URL']}/api/v2/accounts", timeout=10,
                        json={"name": "probe"}).json()["apiKey"]
    assert requests.get(f"{plane['CONTROLLER_URL']}/api/v2/indexes", timeout=10,
                        headers={"x-api-key": key}).ok
    journal = b"".join(p.read_bytes() for p in Path(plane["STATE"]).rglob("*")
                       if p.is_file())
    assert b'"probe"' in journal  # names are journalled: the check below can fail
    assert b"hippodrome-seed-4242" not in journal


def test_an_external_admin_server_is_seeded_through_while_it_answers() -> None:
    """Every external admin_server was refused ("is external ... hd start --service
    admin_server", which does nothing for one), a healthy one too (adv25 e/2)."""
    from hippo_platform.seed.endpoints import StackView
    from hippo_platform.seed.run import SeedError, _admin_can_take

    answers = StackView(env={}, rows={"admin_server": {"state": "external", "healthy": True}})
    _admin_can_take(answers)
    silent = StackView(env={}, rows={"admin_server": {"state": "external", "healthy": False}})
    with pytest.raises(SeedError, match="external .* does not answer.* start it yourself"):
        _admin_can_take(silent)


@pytest.mark.parametrize("kind,words", [
    ("fifo", "is a named pipe (FIFO), not a regular file"),
    ("deep", "is nested too deeply to be a seed record"),
    ("broken", "is not valid JSON ("),  # the parser's words differ by Python version
    ("list", "holds a JSON list, not the seed record"),
    ("accounts", "its 'accounts' is not an object of accounts by seed"),
])
def test_a_seed_json_that_cannot_be_the_record_is_a_sentence_and_kept(
        plane: dict[str, str], tmp_path: Path, kind: str, words: str) -> None:
    """A FIFO hung `hd seed` (and the stack's seed job) for ever; a deeply nested one was
    a RecursionError traceback; a hand-edited one was taken for "nothing seeded" and
    replaced, its `accounts` dropped in silence (adv26 g/3)."""
    from hippo_platform.seed.endpoints import StackView
    from hippo_platform.seed.run import SeedError, seed_stack

    path = tmp_path / ".hippodrome" / "seed.json"
    path.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_text({"deep": "[" * 100_000 + "]" * 100_000,
                         "broken": '{"accounts": {"42": {"apiKey": "k"}},}',
                         "list": "[]",
                         "accounts": '{"accounts": [{"accountId": "a", "apiKey": "k"}]}',
                         }[kind])
    before = path.read_text() if kind != "fifo" else None
    made: list[str] = []
    with pytest.raises(SeedError) as info:
        seed_stack(tmp_path, 4545, StackView(env=plane, rows={}), made.append)
    assert str(info.value).startswith(f"{path} {words}") or \
        str(info.value).startswith(f"{path}: {words}"), info.value
    assert "move it away" in str(info.value) and "nothing was seeded" in str(info.value)
    assert made == [] and not (tmp_path / ".env.e2e").exists()
    if before is not None:
        assert path.read_text() == before
    else:
        assert stat.S_ISFIFO(path.lstat().st_mode)


def test_an_account_made_by_a_seed_that_fails_later_is_reused(plane: dict[str, str],
                                                               tmp_path: Path) -> None:
    """An admin_server answering 500 mid-seed: the account made before it was recorded
    nowhere, and every seed after made another `hippodrome-seed-N` (the last stop's
    leftover). It is recorded the moment it is made; .env.e2e is not written."""
    import http.server
    import threading

    from hippo_platform.seed.endpoints import StackView
    from hippo_platform.seed.run import SeedError, seed_stack

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # noqa: N802 - http.server's name
            self.send_error(500, "broken on purpose")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        failing = StackView(
            env={**plane, "HIPPODROME_PROFILE": "ecom",
                 "ADMIN_SERVER_URL": f"http://127.0.0.1:{server.server_port}"},
            rows={"admin_server": {"state": "external", "healthy": True}})
        with pytest.raises(SeedError, match="500"):
            seed_stack(tmp_path, 4343, failing, lambda line: None)
    finally:
        server.shutdown()
        server.server_close()
    made = seed_record(tmp_path)["accounts"]["4343"]
    assert not (tmp_path / ".env.e2e").exists() and "seed" not in seed_record(tmp_path)
    said: list[str] = []
    again = seed_stack(tmp_path, 4343, StackView(env=plane, rows={}), said.append)
    assert again["account"]["accountId"] == made["accountId"], said
    assert again["account"]["reused"] is True, said
    assert read_env_file(tmp_path / ".env.e2e")["HIPPODROME_API_KEY"] == made["apiKey"]


@pytest.mark.parametrize("state,words", [
    ("pending", "still starting"),
    ("starting", "still starting"),
    ("stopped", "`hd start --service admin_server`, then `hd seed`"),
])
def test_a_seed_before_admin_server_runs_says_what_to_do(state: str, words: str) -> None:
    """While `up` still started it, the advice was to start admin_server by hand."""
    from hippo_platform.seed.endpoints import StackView
    from hippo_platform.seed.run import SeedError, _admin

    view = StackView(env={"HIPPODROME_PROFILE": "ecom"},
                     rows={"admin_server": {"state": state}})
    with pytest.raises(SeedError) as info:
        _admin(7, view, "key", lambda _line: None)
    assert words in str(info.value)
