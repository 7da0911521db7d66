"""hd export k8s: every manifest validates against the Kubernetes schemas, and what it
says matches what `up` runs for the same options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from export_helpers import containers, documents, env_of, export, k8s_expand, validate_all

from hippo_tasks.export.hosts import rewrite
from hippo_tasks.export.naming import PREFIX_LABEL, PROFILE_LABEL, PROJECT_LABEL, port_name
from hippo_tasks.export.pipeline import Request, build
from hippo_tasks.export.stack_layout import up_args
from hippo_tasks.export.target import IMAGE_PYTHON, IMAGE_SRC_DIR
from hippo_tasks.model.loader import load_stack
from hippo_tasks.model.plan import StackPlan, build_plan
from hippo_tasks.tasks.context import build_options

PROFILES = ("core", "ecom", "full")
LAYOUTS = ("stack", "services")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_manifest_validates(root: Path, layout: str, profile: str) -> None:
    made = export(root, profile=profile, layout=layout)
    assert validate_all(made.text) == len(made.objects) >= 4
    assert validate_all(export(root, profile=profile, layout=layout, seed=False).text)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_staging_cell_and_offset_validate(root: Path, layout: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPPODROME_CELL_URL_STAGING", "https://cell.example.invalid")
    made = export(root, profile="ecom", cell="staging", layout=layout, offset=300)
    validate_all(made.text)
    text = made.text
    assert "AWS_SECRET_ACCESS_KEY" in text and "hippodrome-aws" in text


def _break(doc: dict[str, Any], how: str) -> dict[str, Any]:
    if how == "no containers":
        del doc["spec"]["template"]["spec"]["containers"]
    elif how == "port as text":
        doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "x"
    elif how == "unknown field":
        doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    return doc


@pytest.mark.parametrize("how", ["no containers", "port as text", "unknown field"])
def test_a_broken_manifest_fails_validation(root: Path, how: str) -> None:
    made = export(root, layout="stack")
    deployment = next(d for d in documents(made.text) if d["kind"] == "Deployment")
    kubernetes_validate.validate(deployment, "1.37.0", strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(_break(deployment, how), "1.37.0", strict=True)


def _up_plan(root: Path, profile: str, **kw: Any) -> StackPlan:
    opts = build_options(root=root, profile=profile, cell=kw.get("cell", "local"),
                         table_prefix="", only=None, offset=kw.get("offset", 0))
    return build_plan(load_stack(root), opts)


@pytest.mark.parametrize("profile", PROFILES)
def test_services_env_contract_matches_up_key_by_key(root: Path, profile: str) -> None:
    up = _up_plan(root, profile, offset=40)
    made = export(root, profile=profile, layout="services", offset=40)
    docs = {d["metadata"]["labels"].get("hippodrome.dev/service"): d
            for d in documents(made.text) if d["kind"] in ("Deployment", "Job")}
    # Every service of the stack file has an in-cluster name, selected or not.
    owners = {s.port + 40: s.name.replace("_", "-") for s in load_stack(root).services
              if s.port}
    checked = 0
    for svc in up.services:
        if svc.spec.external:
            assert svc.name not in docs
            continue
        env = env_of(next(c for c in containers(docs[svc.name])
                          if c["name"] == svc.name.replace("_", "-")))
        assert set(env) == set(svc.env) | {"PYTHONUNBUFFERED"} | (
            {"PORT"} if svc.port else set()), svc.name
        for key, value in svc.env.items():
            expected = rewrite(value.replace(str(root), IMAGE_SRC_DIR), owners)
            if str(up.dashboard_port) in value and "127.0.0.1" in value:
                expected = ""  # no dashboard in this layout (said as a warning)
            assert env[key] == expected, (svc.name, key)
            checked += 1
        assert env.get("PORT") == (str(svc.port) if svc.port else None)
    assert checked > 20


@pytest.mark.parametrize("profile", PROFILES)
def test_stack_layout_runs_up_with_the_same_options(root: Path, profile: str) -> None:
    made = export(root, profile=profile, offset=20, seed=False)
    deployment = next(d for d in documents(made.text) if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "up"
    flags = dict(zip(args[1::2], args[2::2], strict=False))
    assert "--no-seed" in args
    opts = build_options(root=root, profile=flags["--profile"], cell=flags["--cell"],
                         table_prefix=flags["--table-prefix"], only=None,
                         offset=flags["--port-offset"], skip=("seed",))
    inside = build_plan(load_stack(root), opts)
    up = _up_plan(root, profile, offset=20)
    up_names = [s.name for s in up.services if s.name != "seed"]
    assert [s.name for s in inside.services] == up_names
    for a, b in zip(inside.services, (s for s in up.services if s.name != "seed"),
                    strict=True):
        assert dict(a.env) == dict(b.env) and a.port == b.port
    ports = {p["containerPort"] for p in
             deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports == {up.dashboard_port} | {s.port for s in up.services
                                          if s.port and not s.spec.external}


def test_every_object_carries_project_profile_and_prefix(root: Path) -> None:
    for layout in LAYOUTS:
        made = export(root, profile="ecom", layout=layout)
        for doc in documents(made.text):
            labels = doc["metadata"]["labels"]
            assert labels[PROJECT_LABEL] == "shop"
            assert labels[PROFILE_LABEL] == "ecom"
            assert labels[PREFIX_LABEL] == "dev-local"
            assert doc["metadata"]["annotations"]["hippodrome.dev/table-prefix"] == \
                "dev-local-"
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "dev-local"
            if doc["kind"] in ("Deployment", "Service"):
                selector = (doc["spec"]["selector"].get("matchLabels")
                            or doc["spec"]["selector"])
                pods = [d for d in documents(made.text) if d["kind"] == "Deployment"
                        and d["metadata"]["name"] == doc["metadata"]["name"]]
                pod_labels = pods[0]["spec"]["template"]["metadata"]["labels"]
                assert selector.items() <= pod_labels.items()


def test_services_layout_orders_by_readiness_and_jobs(root: Path) -> None:
    made = export(root, profile="ecom", layout="services")
    docs = {(d["kind"], d["metadata"]["name"]): d for d in documents(made.text)}
    admin = docs[("Deployment", "admin-server")]["spec"]["template"]["spec"]
    waits = admin["initContainers"][0]["command"]
    assert waits[:3] == [IMAGE_PYTHON, "-m", "hippo_tasks.export.wait"]
    assert "job/aws-provision" in waits
    assert "http://fake-cell:9001/healthz" in waits
    assert admin["serviceAccountName"] == "hippodrome-waiter"
    assert ("Role", "hippodrome-waiter") in docs
    job = docs[("Job", "seed")]["spec"]
    assert job["backoffLimit"] == 0
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert job["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == \
        "seed-output"
    assert ("PersistentVolumeClaim", "seed-output") in docs
    moto = docs[("Deployment", "moto")]["spec"]["template"]["spec"]["containers"][0]
    assert moto["readinessProbe"]["httpGet"]["path"] == "/moto-api/"
    assert moto["livenessProbe"]["failureThreshold"] == 3
    assert moto["resources"]["requests"]["memory"] == "112Mi"  # 87.3 MB measured, +25 %
    assert ("Deployment", "global-worker") not in docs  # external in ecom
    assert ("Service", "controller") in docs


def test_no_secret_is_ever_inline(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "hippodrome.toml").write_text(
        '[services.api]\ncommand = ["${python}", "-m", "api", "--db", "${env:DB_URL}"]\n'
        'port = 8080\nenv = { DB_PASSWORD = "${env:DB_PASSWORD}", '
        'DSN = "postgres://u:${env:DB_PASSWORD}@db/x", LITERAL = "$(not a ref)" }\n')
    monkeypatch.setenv("DB_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("DB_URL", "postgres://leak")
    monkeypatch.setenv("HIPPODROME_CELL_URL_STAGING", "https://cell.example.invalid")
    for layout in LAYOUTS:
        made = export(root, layout=layout, cell="staging")
        assert "hunter2" not in made.text and "leak" not in made.text
        validate_all(made.text)
    made = export(root, layout="services", cell="staging")
    api = next(d for d in documents(made.text) if d["metadata"]["name"] == "api"
               and d["kind"] == "Deployment")
    main = api["spec"]["template"]["spec"]["containers"][0]
    env = env_of(main)
    names = [e["name"] for e in main["env"]]
    assert env["DB_PASSWORD"] == {"secretKeyRef": {"name": "hippodrome-env",
                                                   "key": "DB_PASSWORD"}}
    assert names.index("DB_PASSWORD") < names.index("DSN")  # defined before use
    assert env["DSN"] == "postgres://u:$(DB_PASSWORD)@db/x"
    assert env["LITERAL"] == "$$(not a ref)"  # Kubernetes would expand it otherwise
    assert "$(DB_URL)" in main["command"]
    assert env["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "hippodrome-aws"
    assert env["AWS_SESSION_TOKEN"]["secretKeyRef"]["optional"] is True
    stack = export(root, layout="stack", cell="staging")
    hd = next(d for d in documents(stack.text) if d["kind"] == "Deployment")
    env = env_of(hd["spec"]["template"]["spec"]["containers"][0])
    assert env["HIPPODROME_WEBHOOK_TOKEN"]["secretKeyRef"] == {
        "name": "hippodrome-webhook", "key": "token", "optional": True}
    assert env["DB_URL"]["secretKeyRef"]["name"] == "hippodrome-env"
    assert env["HIPPODROME_CELL_URL_STAGING"] == "https://cell.example.invalid"
    maps = [d for d in documents(stack.text) if d["kind"] == "ConfigMap"]
    assert "[services.api]" in maps[0]["data"]["hippodrome.toml"]


def test_prod_cell_passes_yes_to_up(root: Path) -> None:
    opts = build_options(root=root, profile="core", cell="prod", table_prefix="t-",
                         only=None, offset=0)
    assert up_args(opts, [], [])[-1] == "--yes"


def test_only_is_kept_with_its_dependencies(root: Path) -> None:
    made = export(root, profile="ecom", layout="services", only="controller")
    names = {d["metadata"]["name"] for d in documents(made.text) if d["kind"] == "Deployment"}
    assert names == {"controller", "fake-cell"}
    stack = export(root, profile="ecom", only="controller")
    args = next(d for d in documents(stack.text) if d["kind"] == "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--only") + 1].split(",") == ["fake_cell", "controller"]


def test_namespace_and_image_are_used(root: Path) -> None:
    made = export(root, namespace="hd-feature-x", image="registry.example/t/hd:feature-x")
    docs = documents(made.text)
    assert docs[0] == {**docs[0], "kind": "Namespace"}
    assert docs[0]["metadata"]["name"] == "hd-feature-x"
    assert all(d["metadata"].get("namespace", "hd-feature-x") == "hd-feature-x" for d in docs)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.example/t/hd:feature-x"


IANA_SVC_NAME = re.compile(r"(?=.{1,15}\Z)(?=[^a-z]*[a-z])[a-z0-9]+(?:-[a-z0-9]+)*")
"""What Kubernetes accepts as a port's name (validation.IsValidPortName): at most 15
lower-case letters, digits and single hyphens, alphanumeric at both ends, a letter in it."""
ODD_NAMES = {"web-_api": 8701, "a-b": 8702, "p8704": 8703, "a--b": 8704,
             "x_-_y_-_z": 8705, "Long_Name-With--Many__Parts": 8706, "ab_c_d_e_f_g_h_i_j": 8707}


def _port_names(text: str) -> list[list[str]]:
    """The names of each `ports` list in the manifests (a Service's or a container's)."""
    found: list[list[str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "ports":
                    found.append([p["name"] for p in value])
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for doc in documents(text):
        walk(doc)
    return found


def test_port_names_are_valid_and_unique_for_any_service_name() -> None:
    taken: set[str] = set()
    names = [port_name(n, p, taken) for n, p in [("dashboard", 9000), *ODD_NAMES.items()]]
    assert all(IANA_SVC_NAME.fullmatch(n) for n in names), names
    assert len(set(names)) == len(names), names


@pytest.mark.parametrize("layout", LAYOUTS)
def test_exported_port_names_are_iana_service_names(root: Path, layout: str) -> None:
    """`web-_api` once gave the port name `web--api`, which kubectl apply refuses."""
    (root / "hippodrome.toml").write_text("[stack]\ndefaults = false\n" + "".join(
        f'[services.{name}]\ncommand = ["${{python}}", "-m", "http.server", "${{port}}"]\n'
        f"port = {port}\n" for name, port in ODD_NAMES.items()))
    made = export(root, layout=layout)
    validate_all(made.text)
    lists = _port_names(made.text)
    assert lists and all(IANA_SVC_NAME.fullmatch(n) for names in lists for n in names), lists
    assert all(len(set(names)) == len(names) for names in lists), lists


DOLLARS = """
[stack]
defaults = false
[services.api]
command = ["${python}", "-m", "http.server", "${port}", "pa$$$$word", "$$(x)", "$$HOME",
           "end$$", "$$${env:TOKEN}", "$$$$(y)", "$$$$$$"]
port = 8601
readiness = { http = "/ready$(x)$$" }
[services.api.env]
DB_PASSWORD = "pa$$$$word"
PIDFILE = "/tmp/x.$$$$"
PAREN = "$$(not a ref)"
MIXED = "$$${env:TOKEN}$$$$"
TAIL = "5$$"
LONE = "$$"
DOUBLE_REF = "$$$$(X)"
[services.web]
command = ["${python}", "-m", "http.server", "${port}"]
port = 8602
depends_on = ["api"]
"""


def test_services_layout_passes_every_dollar_through_kubernetes_expansion(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kubernetes expands `$(VAR)` and turns `$$` into `$` in command, args and env
    values: `pa$$word` once reached the container as `pa$word`. What the container
    sees after that expansion must be exactly what `up` gives the process."""
    (root / "hippodrome.toml").write_text(DOLLARS)
    monkeypatch.setenv("TOKEN", "s3cret")
    up = _up_plan(root, "core").service("api")
    made = export(root, layout="services")
    validate_all(made.text)
    docs = {(d["kind"], d["metadata"]["name"]): d for d in documents(made.text)}
    api = docs[("Deployment", "api")]["spec"]["template"]["spec"]["containers"][0]
    secrets = {"TOKEN": "s3cret"}  # what the hippodrome-env Secret holds
    env = env_of(api)
    for key, value in up.env.items():
        assert k8s_expand(env[key], secrets) == value, key
    assert [k8s_expand(a, secrets) for a in api["command"][3:]] == list(up.argv[1:])
    web = docs[("Deployment", "web")]["spec"]["template"]["spec"]["initContainers"][0]
    assert k8s_expand(web["command"][-1], {}) == f"http://api:8601{up.readiness.value}"


def test_stack_layout_passes_every_dollar_through_kubernetes_expansion(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack layout's args (`hd up ... --table-prefix T`) and env values (a cell's
    URL) are expanded by Kubernetes just the same."""
    monkeypatch.setenv("HIPPODROME_CELL_URL_STAGING", "https://cell.example/$$(x)$")
    opts = build_options(root=root, profile="core", cell="staging", table_prefix="t-",
                         only=None, offset=0)  # (a prefix holds no `$`: AWS names refuse it)
    made = build(Request(opts, "stack", "ns", "hippodrome:latest"), [].append)
    validate_all(made.text)
    hd = next(d for d in documents(made.text) if d["kind"] == "Deployment")
    container = hd["spec"]["template"]["spec"]["containers"][0]
    args = [k8s_expand(a, {}) for a in container["args"]]
    assert args[args.index("--table-prefix") + 1] == "t-"
    cell_url = env_of(container)["HIPPODROME_CELL_URL_STAGING"]
    assert k8s_expand(cell_url, {}) == "https://cell.example/$$(x)$"


LOOPBACK_ARGS = """
[stack]
defaults = false
[services.db]
command = ["${python}", "-m", "http.server", "${port}"]
port = 8611
[services.app]
command = ["${python}", "-m", "myapp", "--db", "${url:db}", "--db-host", "localhost:${port:db}"]
port = 8612
env = { DB_URL = "${url:db}" }
depends_on = ["db"]
"""


def _commands(text: str) -> dict[str, list[str]]:
    """Each Deployment's or Job's main container command, by object name."""
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["command"]
            for d in documents(text) if d["kind"] in ("Deployment", "Job")}


def test_services_layout_points_command_urls_at_the_in_cluster_service(root: Path) -> None:
    """`${url:db}` in a command rendered to the pod's own loopback (`--endpoint-url
    http://127.0.0.1:9003` for aws_provision), where nothing listens: commands are
    rewritten as env values are."""
    (root / "hippodrome.toml").write_text(LOOPBACK_ARGS)
    made = export(root, layout="services")
    app = next(d for d in documents(made.text) if d["metadata"]["name"] == "app"
               and d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert app["command"][-4:] == ["--db", "http://db:8611", "--db-host", "db:8611"]
    assert env_of(app)["DB_URL"] == "http://db:8611"


@pytest.mark.parametrize("profile", PROFILES)
def test_no_bundled_command_points_at_its_own_pod_s_loopback(root: Path, profile: str) -> None:
    commands = _commands(export(root, profile=profile, layout="services").text)
    loopback = {n: c for n, c in commands.items()
                if any("127.0.0.1" in a or "localhost" in a for a in c)}
    assert loopback == {}
    if profile != "core":
        provision = commands["aws-provision"]
        assert provision[provision.index("--endpoint-url") + 1] == "http://moto:9003"


README = Path(__file__).resolve().parents[1] / "README.md"


def _memory_request(doc: dict[str, Any]) -> str:
    request: str = doc["spec"]["template"]["spec"]["containers"][0]["resources"][
        "requests"]["memory"]
    return request


def test_readme_memory_figures_are_what_the_export_writes(root: Path) -> None:
    """The README once said core 208, ecom 640, full 688 and moto 144 MiB, figures of
    an older measurement; these are read from it and compared with the manifests."""
    readme = " ".join(README.read_text(encoding="utf-8").split())
    stack = re.search(r"core (\d+) MiB, ecom (\d+) MiB, full (\d+) MiB requested", readme)
    assert stack is not None
    for profile, said in zip(PROFILES, stack.groups(), strict=True):
        made = export(root, profile=profile)
        hd = next(d for d in documents(made.text) if d["kind"] == "Deployment")
        assert _memory_request(hd) == f"{said}Mi", profile
    per_service = re.search(r"\(moto (\d+) MiB, the other bundled services (\d+) MiB, a "
                            r"service not measured there (\d+) MiB requested\)", readme)
    assert per_service is not None
    docs = {(d["kind"], d["metadata"]["name"]): d for d in documents(
        export(root, profile="ecom", layout="services").text)}
    moto, others, unmeasured = per_service.groups()
    assert _memory_request(docs[("Deployment", "moto")]) == f"{moto}Mi"
    assert {_memory_request(d) for (kind, name), d in docs.items()
            if kind == "Deployment" and name != "moto"} == {f"{others}Mi"}
    assert _memory_request(docs[("Job", "seed")]) == f"{unmeasured}Mi"
