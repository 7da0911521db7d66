"""The registry is read through its schema: a file of the wrong shape is moved aside with
a warning, like one that is not JSON, and never reaches the code that acts on it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_tasks.events.bridge_records import recorded
from hippo_tasks.registry.schema import PID_MAX, Invalid, validate
from hippo_tasks.registry.store import Registry, daemon_alive, live_services

DAEMON = {"pid": 4242, "create_time": 1.7e9, "url": "http://127.0.0.1:9000", "port": 9000,
          "guard_pid": 4243, "started_at": 1.7e9, "profile": "core", "cell": "local",
          "table_prefix": "dev-x-", "logs_dir": "/p/.logs/20240101-000000"}
SERVICE = {"pid": 4250, "pgid": 4250, "create_time": 1.7e9, "port": 9002,
           "state": "running", "started_at": 1.7e9, "reason": "", "ready": True,
           "blocking": True, "kind": "service"}
TUNNEL = {"session": "s1", "kind": "tunnel", "name": "cloudflared", "bus": None,
          "created_at": "2024-01-01T00:00:00+00:00", "owner": {"pid": 4242, "create_time": 1.7e9},
          "tool": "cloudflared", "pid": 4300, "pgid": 4300, "create_time": 1.7e9,
          "log": "/p/.hippodrome/tunnel-s1.log"}


def written(**over: Any) -> dict[str, Any]:
    """A registry as the daemon writes it today, with fields replaced."""
    doc: dict[str, Any] = {"version": 1, "project_root": "/p", "daemon": dict(DAEMON),
                           "services": {"controller": dict(SERVICE)}, "failure": None,
                           "resources": [dict(TUNNEL)]}
    doc.update(over)
    return doc


def here(content: bytes, root: Path) -> bytes:
    """The document as written for `root`: a registry naming another folder is moved
    aside unread (test_foreign_state.py), before its shape matters."""
    return content.replace(b'"project_root": "/p"',
                           b'"project_root": ' + json.dumps(str(root)).encode())


def read_after(tmp_path: Path, content: bytes) -> tuple[Registry, dict[str, Any]]:
    reg = Registry(tmp_path)
    reg.dir.mkdir(exist_ok=True)
    reg.path.write_bytes(here(content, tmp_path))
    return reg, reg.read()


def assert_moved_aside(tmp_path: Path, content: bytes, words: str) -> None:
    reg, data = read_after(tmp_path, content)
    assert data["daemon"] is None and data["services"] == {} and data["resources"] == []
    assert len(reg.warnings) == 1, reg.warnings
    assert "was corrupt" in reg.warnings[0] and words in reg.warnings[0]
    assert not reg.path.exists()
    assert list(reg.dir.glob("registry.json.corrupt-*"))


def test_what_the_daemon_writes_reads_back_unchanged(tmp_path: Path) -> None:
    doc = written(failure={"service": "api", "reason": "exited with code 1",
                           "last_lines": ["boom"], "log_path": "/p/.logs/x/api.log",
                           "final": True})
    reg, data = read_after(tmp_path, json.dumps(doc).encode())
    assert data == {**doc, "project_root": str(tmp_path)}
    assert reg.warnings == [] and reg.path.exists()


def test_fields_of_the_supervision_rewrite_and_unknown_keys_are_accepted(
        tmp_path: Path) -> None:
    daemon = {**DAEMON, "token": "abc123", "cgroup": None, "mode": "process-group",
              "from_the_future": [1, {"x": None}]}
    service = {**SERVICE, "cgroup": "/sys/fs/cgroup/h/api", "token": None,
               "members": [[4250, 1.7e9], [4251, 1700000000]], "restarts": 3}
    doc = written(daemon=daemon, services={"api": service, "idle": {"pid": None, "pgid": None,
                                                                     "state": "stopped"}},
                  extra_top_level={"anything": True})
    reg, data = read_after(tmp_path, json.dumps(doc).encode())
    assert data == {**doc, "project_root": str(tmp_path)} and reg.warnings == []


@pytest.mark.parametrize("doc,words", [
    ({"services": {"x": None}}, "services.x must be an object, not null"),
    (written(services={"x": {**SERVICE, "pgid": "abc"}}),
     "services.x.pgid must be a process id"),
    (written(services={"x": {**SERVICE, "pid": 1e30}}), "services.x.pid must be a process id"),
    (written(services={"x": {**SERVICE, "pid": True}}), "not true"),
    (written(services={"x": {**SERVICE, "pid": PID_MAX + 1}}), "services.x.pid"),
    (written(services={"x": {**SERVICE, "pgid": 0}}), "services.x.pgid"),
    (written(services={"x": {**SERVICE, "pgid": -1}}), "services.x.pgid"),
    (written(services={"x": {**SERVICE, "port": 70000}}), "services.x.port must be a port"),
    (written(services={"x": {**SERVICE, "ready": 1}}), "services.x.ready must be true or false"),
    (written(services={"x": {k: v for k, v in SERVICE.items() if k != "state"}}),
     "services.x has no 'state'"),
    (written(services={"x": {**SERVICE, "members": [[1, 2, 3]]}}), "services.x.members[0]"),
    (written(services={"x": {**SERVICE, "members": [["1", 2.0]]}}),
     "services.x.members[0][0]"),
    (written(services=[]), "services must be an object, not a list"),
    (written(daemon={**DAEMON, "pid": "4242"}),
     "daemon.pid must be a process id (an integer from 1 to 2147483647), not '4242'"),
    (written(daemon={**DAEMON, "pid": 1e30}), "daemon.pid"),
    # a number with a fraction was shown as the integer it was refused for (adv58)
    (written(daemon={**DAEMON, "pid": 1.0}), "daemon.pid must be a process id (an integer "
                                              "from 1 to 2147483647), not 1.0"),
    (written(daemon={**DAEMON, "port": 0}), "daemon.port"),
    (written(daemon={**DAEMON, "url": 9000}), "daemon.url must be a string"),
    (written(daemon={**DAEMON, "token": None}), "daemon.token"),
    (written(daemon=[4242]), "daemon must be an object, not a list"),
    (written(daemon={"url": "http://x", "port": 9000}), "daemon has no 'pid'"),
    (written(failure="boom"), "failure must be an object"),
    (written(failure={"service": "a", "last_lines": [1]}), "failure.last_lines[0]"),
    (written(resources={}), "resources must be a list"),
    (written(resources=["w1"]), "resources[0] must be an object"),
    (written(resources=[{**TUNNEL, "owner": {"pid": "me"}}]), "resources[0].owner.pid"),
    (written(resources=[{k: v for k, v in TUNNEL.items() if k != "pgid"}]),
     "resources[0] (tunnel) has no 'pgid'"),
    (written(resources=[{"session": "s", "kind": "rule", "name": "r", "region": "eu-west-1",
                         "bus": None}]), "resources[0].bus must be a string"),
    (written(version="1"), "version must be an integer"),
    ([1, 2], "the file must be an object, not a list"),
    ({"deep": json.loads("[" * 40 + "]" * 40)}, "nested more than 16 levels deep"),
])
def test_wrong_shapes_are_moved_aside_naming_the_key(tmp_path: Path, doc: Any,
                                                     words: str) -> None:
    assert_moved_aside(tmp_path, json.dumps(doc).encode(), words)


@pytest.mark.parametrize("content,words", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"daemon": {"pid": 1, "crea', "Unterminated string"),
    (b"\xff\xfe{}", "utf-8"),
    (b'{"services": {"x": {"state": "running", "create_time": NaN}}}', "create_time"),
    (b'{"services": {"x": {"state": "running", "started_at": Infinity}}}', "started_at"),
    (b'{"version": ' + b"9" * 5000 + b"}", "integer string conversion"),
])
def test_unreadable_bytes_are_moved_aside(tmp_path: Path, content: bytes, words: str) -> None:
    assert_moved_aside(tmp_path, content, words)


def test_an_update_after_a_wrong_shape_starts_from_empty(tmp_path: Path) -> None:
    reg, _ = read_after(tmp_path, b'{"services": {"x": null}}')
    reg.warnings.clear()
    reg.path.write_bytes(b'{"services": {"x": null}}')
    data = reg.update(lambda d: d.__setitem__("failure", None))
    assert data["services"] == {} and len(reg.warnings) == 1
    assert validate(json.loads(reg.path.read_text())) == data


def test_validate_raises_a_value_error_subclass() -> None:
    with pytest.raises(ValueError):
        validate({"services": {"x": None}})
    assert issubclass(Invalid, ValueError)


# ---- property: any JSON value gives a validated registry, or a moved-aside file ----------

KEYS = ["version", "project_root", "daemon", "services", "failure", "resources", "pid",
        "pgid", "create_time", "port", "state", "url", "token", "members", "kind",
        "session", "name", "owner", "bus", "region", "rule", "ready", "x"]
json_scalar = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**70), 2**70), st.sampled_from([0, 1, 4242, PID_MAX, PID_MAX + 1, 65536]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.sampled_from(["running", "tunnel", "rule", "abc"]),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=4)), inner,
                        max_size=4)),
    max_leaves=12,
)


def near(value: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The object with some of its values replaced by anything: near misses of the
    schema reach its deeper checks far more often than random JSON does."""
    return st.fixed_dictionaries({k: st.one_of(st.just(v), st.just(v), json_value)
                                  for k, v in value.items()})


registry_like = st.fixed_dictionaries({
    "version": st.one_of(st.just(1), json_value),
    "project_root": st.just("/p"),
    "daemon": st.one_of(st.none(), near(DAEMON), json_value),
    "services": st.one_of(st.dictionaries(st.sampled_from(["api", "db"]), near(SERVICE),
                                          max_size=2), json_value),
    "resources": st.one_of(st.lists(near(TUNNEL), max_size=2), json_value),
})
documents = st.one_of(
    json_value.map(lambda v: json.dumps(v).encode()),
    registry_like.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
)


def use_like_the_commands(reg: Registry, data: dict[str, Any]) -> None:
    """What `up`, `down`, `status` and `doctor` do with a registry they were given."""
    daemon_alive(data)
    live_services(data)
    daemon = data.get("daemon") or {}
    if daemon:
        int(daemon["pid"]), str(daemon["url"]), int(daemon["port"])
    for entry in (data.get("services") or {}).values():
        assert isinstance(entry["state"], str)
        if entry.get("pgid"):
            int(entry["pgid"])
        for pid, created in entry.get("members", []):
            assert isinstance(pid, int) and math.isfinite(created)
    for item in recorded(reg):
        (item.get("owner") or {}).get("pid")
        str(item["session"]), item["kind"], item["name"]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=documents)
def test_any_file_gives_a_registry_or_a_warning(tmp_path: Path, content: bytes) -> None:
    reg = Registry(tmp_path)
    reg.dir.mkdir(exist_ok=True)
    for old in reg.dir.glob("registry.json.corrupt-*"):
        old.unlink()
    content = here(content, tmp_path)
    reg.path.write_bytes(content)
    data = reg.read()
    if reg.warnings:
        assert len(reg.warnings) == 1 and "was corrupt" in reg.warnings[0]
        assert not reg.path.exists() and list(reg.dir.glob("registry.json.corrupt-*"))
        assert data["daemon"] is None and data["services"] == {}
    else:
        assert reg.path.exists()
        assert validate(json.loads(content)) is not None
    use_like_the_commands(reg, data)
    reg.update(lambda d: d.__setitem__("failure", None))  # and it can be written back


def test_two_corrupt_files_in_one_second_are_both_kept(tmp_path: Path) -> None:
    """The backup is named by the second: a second corrupt file within it replaced the
    first one's backup, and both warnings named the file that held only the second."""
    reg = Registry(tmp_path)
    reg.dir.mkdir(parents=True, exist_ok=True)
    kept = []
    for text in (b'{"first": ', b'{"second": ', b'{"third": '):
        reg.path.write_bytes(text)
        reg.warnings.clear()
        reg.read()
        (warning,) = reg.warnings
        name = warning.split("moved it to ")[1].split(" ")[0]
        kept.append((name, text))
    assert len({name for name, _ in kept}) == 3, kept
    for name, text in kept:
        assert (reg.dir / name).read_bytes() == text
