"""Every service the reference documents name has a slot in the bundled stack file, at
its port and in its profiles, with a health probe; the Node workers' inspector ports
never clash with each other or with a service; and each has a row in the README table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hippo_tasks.errors import StackFileError
from hippo_tasks.model.loader import load_stack, load_stack_text
from hippo_tasks.model.plan import Options, build_plan

ROOT = Path(__file__).resolve().parents[1]

REFERENCE = {
    # name: (port, profiles it runs in); ports from the reference where it gives one
    # (agentic_search 9007), else a free one in the image's 9000-9019 block
    "admin_lambda": (9006, {"full"}),
    "agentic_search": (9007, {"full"}),
    "admin_worker": (9009, {"full"}),
    "ecom_indexer": (9015, {"ecom", "full"}),
    "fork_action_worker": (9016, {"ecom", "full"}),
    "ecom_indexer_trigger": (9017, {"full"}),
    "search_proxy": (9005, {"ecom", "full"}),
    "global_worker": (9012, {"ecom", "full"}),
    "admin_server": (9004, {"ecom", "full"}),
    "ecom_indexer_service": (9018, {"ecom", "full"}),
    "ecom_ingest": (9019, {"ecom", "full"}),
}
NODE_WORKERS = ("search_proxy", "global_worker", "agentic_search", "admin_worker")


def test_each_reference_service_has_its_slot(tmp_path: Path) -> None:
    spec = load_stack(tmp_path)
    by_name = {s.name: s for s in spec.services}
    for name, (port, profiles) in REFERENCE.items():
        svc = by_name.get(name)
        assert svc is not None, f"{name}: no row in the bundled stack file"
        assert svc.port == port, name
        assert set(svc.profiles) == profiles, name
        assert svc.readiness.kind == "http" and svc.readiness.value == "/healthz", name
    full = build_plan(spec, Options(project_root=tmp_path, profile="full"))
    started = {p.spec.name for p in full.services}
    assert set(REFERENCE) <= started, "every slot runs a stand-in in the full profile"


def test_node_workers_have_distinct_inspector_ports(tmp_path: Path) -> None:
    spec = load_stack(tmp_path)
    plan = build_plan(spec, Options(project_root=tmp_path, profile="full"))
    envs = {p.spec.name: p.env for p in plan.services}
    inspectors = [int(envs[name]["INSPECTOR_PORT"]) for name in NODE_WORKERS]
    assert len(set(inspectors)) == len(inspectors), inspectors
    service_ports = {s.port for s in spec.services if s.port} | {spec.settings.dashboard_port}
    assert not set(inspectors) & service_ports
    assert "INSPECTOR_PORT" not in envs["admin_server"], "only the Node workers get one"
    # a second stack side by side: every inspector port moves with the offset
    moved = build_plan(spec, Options(project_root=tmp_path, profile="full", port_offset=100))
    shifted = {p.spec.name: p.env for p in moved.services}
    assert [int(shifted[n]["INSPECTOR_PORT"]) for n in NODE_WORKERS] == \
        [p + 100 for p in inspectors]


def test_a_literal_port_outside_the_range_after_the_offset_is_a_load_error(
        tmp_path: Path) -> None:
    text = ('[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\n'
            'env = { DEBUG_PORT = "${port:65500}" }\n')
    ok = build_plan(load_stack_text(text), Options(project_root=tmp_path, port_offset=35))
    assert ok.service("a").env["DEBUG_PORT"] == "65535"
    with pytest.raises(StackFileError, match=r"\$\{port:65500\} is port 65536 with "
                                             r"--port-offset 36, outside 1-65535"):
        build_plan(load_stack_text(text), Options(project_root=tmp_path, port_offset=36))


def test_each_slot_has_a_readme_row() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## The bundled stack", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): int(m.group(2))
            for m in re.finditer(r"^\| ([a-z_]+) \| (\d+) \|", table, re.MULTILINE)}
    for name, (port, _profiles) in REFERENCE.items():
        assert rows.get(name) == port, f"{name}: no README row with port {port}"
