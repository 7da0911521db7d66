"""The stack file: validation errors name file, service and field; merging; rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from hippo_tasks.errors import StackFileError, UsageError
from hippo_tasks.model.loader import load_stack, load_stack_text
from hippo_tasks.model.plan import Options, build_plan

BASE = """
[services.db]
command = ["db"]
port = 7001

[services.api]
command = ["api", "--db", "${url:db}"]
port = 7002
depends_on = ["db"]
readiness = { http = "/healthz" }
env = { A = "1", B = "2" }
"""


def err(text: str) -> StackFileError:
    with pytest.raises(StackFileError) as info:
        load_stack_text(text, "stack.toml")
    return info.value


def test_malformed_toml_names_file_and_line() -> None:
    e = err('[services.a]\ncommand = ["x"\nport = 1\n')
    assert e.path == "stack.toml"
    assert e.line == 2 or e.line == 3
    assert "not valid TOML" in str(e)


def test_unknown_field_suggests_the_right_one() -> None:
    e = err('[services.api]\ncommand = ["x"]\nprot = 80\n')
    assert (e.service, e.field_name, e.line) == ("api", "prot", 3)
    assert "did you mean 'port'" in str(e)


@pytest.mark.parametrize("field,value,words", [
    ("port", '"80"', "must be an integer"),
    ("port", "70000", "between 1 and 65535"),
    ("command", '"python app.py"', "list of strings"),
    ("blocking", '"yes"', "true or false"),
    ("readiness", '{ http = "healthz" }', "readiness"),
    ("readiness", '{ log = "([" }', "not a valid regex"),
    # Matched by the daemon against each line a service prints: no pattern that can
    # stall it (a line of 35 a's and a b took (a+)+$ minutes).
    ("readiness", '{ log = "^(a+)+$" }', "the log pattern repeats something that itself"),
    ("readiness", '{ log = "(a|ab)*c" }', "the log pattern repeats an alternation"),
    ("readiness", "{ log = '(x)\\1' }", "the log pattern uses a backreference"),
    ("readiness", '{ log = "' + ".?" * 34 + '.ready" }', "too many optional"),
    ("kind", '"daemon"', '"service" or "job"'),
    ("cells", '["moon"]', "not one of"),
    ("start_timeout", "-1", "at least"),
    ("setup", '{ command = ["npm", "ci"] }', "creates"),
    ("setup", '{ command = ["npm", "ci"], creates = "" }', "creates must name"),  # never ran
    ("setup", '{ command = ["npm", "ci"], creates = "n", timeout = 0 }', "setup.timeout"),
    ("setup", '{ command = ["npm", "ci"], creates = "n", timeout = "1m" }', "setup.timeout"),
    ("setup", '{ command = ["npm", "ci"], creates = "n", limit = 5 }', "timeout = seconds"),
    # taken as text, these matched nothing, and nothing said so
    ("watch", '["${cwd}/src/*.py"]', "variables (${...}) are not expanded in watch"),
    ("watch", '["src/*.{ts,tsx}"]', "braces ({a,b}) are not glob syntax here"),
    ("readiness", '{ http = "/${port}/healthz" }', "not expanded in a path"),
    ("depends_on", '["db", { name = "db", condition = "started" }]', "names 'db' twice"),
])
def test_wrong_types_are_named(field: str, value: str, words: str) -> None:
    base = "" if field == "command" else 'command = ["x"]\n'
    e = err(f'[services.api]\n{base}{field} = {value}\n')
    assert e.service == "api" and e.field_name in (field, f"{field}.command", f"{field}.creates",
                                                   f"{field}.timeout")
    assert words in str(e)
    assert "stack.toml" in str(e)


@pytest.mark.parametrize("external,field", [("external = true", "external"),
                                            ('external_in = ["core"]', "external_in")])
def test_an_external_job_is_a_load_error(external: str, field: str) -> None:
    """An external service is not run, so a job that is one never completes: a
    dependant waiting for `completed_successfully` held `hd up` for ever."""
    e = err(f'[services.j]\nkind = "job"\n{external}\n'
            '[services.a]\ncommand = ["a"]\n'
            'depends_on = [{ name = "j", condition = "completed_successfully" }]\n')
    assert (e.service, e.field_name, e.line) == ("j", field, 3)
    assert "nothing would ever complete it" in str(e) and "enabled = false" in str(e)


def test_duplicate_ports_name_both_services() -> None:
    e = err(BASE + '\n[services.web]\ncommand = ["w"]\nport = 7001\n')
    assert "duplicate port 7001" in str(e) and "'db'" in str(e) and "'web'" in str(e)


def test_same_port_allowed_when_never_together() -> None:
    spec = load_stack_text(
        '[services.a]\ncommand=["a"]\nport=7001\nprofiles=["core"]\n'
        '[services.b]\ncommand=["b"]\nport=7001\nprofiles=["full"]\n')
    assert {s.name for s in spec.services} == {"a", "b"}


def test_unknown_dependency() -> None:
    e = err(BASE.replace('depends_on = ["db"]', 'depends_on = ["dbb"]'))
    assert e.service == "api" and e.field_name == "depends_on" and "'dbb'" in str(e)


def test_cycle_names_its_services() -> None:
    e = err(BASE.replace('[services.db]\ncommand = ["db"]',
                         '[services.db]\ncommand = ["db"]\ndepends_on = ["api"]'))
    assert "cycle" in str(e)
    assert "api" in str(e) and "db" in str(e)


def test_missing_command() -> None:
    e = err("[services.a]\nport = 9\n")
    assert e.field_name == "command"


def test_project_file_overrides_bundle(tmp_path: Path) -> None:
    (tmp_path / "hippodrome.toml").write_text(
        '[services.api]\nport = 7100\nenv = { B = "override", C = "3" }\n'
        '[services.db]\nenabled = false\n'
        '[services.extra]\ncommand = ["e"]\n')
    spec = load_stack(tmp_path, bundled=BASE)
    api = spec.service("api")
    assert api.port == 7100 and api.command[0] == "api"
    assert api.env_dict == {"A": "1", "B": "override", "C": "3"}
    assert not spec.service("db").enabled
    assert spec.service("extra").command == ("e",)
    assert str(tmp_path / "hippodrome.toml") in spec.files


def test_defaults_false_drops_the_bundle(tmp_path: Path) -> None:
    (tmp_path / "hippodrome.toml").write_text(
        '[stack]\ndefaults = false\n[services.solo]\ncommand = ["s"]\n')
    spec = load_stack(tmp_path, bundled=BASE)
    assert spec.names == ("solo",)


def test_errors_in_project_file_name_it(tmp_path: Path) -> None:
    (tmp_path / "hippodrome.toml").write_text('[services.api]\nstart_timeout = "soon"\n')
    with pytest.raises(StackFileError) as info:
        load_stack(tmp_path, bundled=BASE)
    assert info.value.path == str(tmp_path / "hippodrome.toml")
    assert info.value.line == 2


def test_bundled_default_stack_loads() -> None:
    spec = load_stack(None)
    assert spec.settings.dashboard_port == 9000


def plan(text: str, **kw: object) -> object:
    return build_plan(load_stack_text(text), Options(project_root=Path("/p"), **kw))  # type: ignore[arg-type]


def test_plan_renders_ports_urls_with_offset_and_order() -> None:
    p = build_plan(load_stack_text(BASE), Options(project_root=Path("/p"), port_offset=100))
    assert p.names == ("db", "api")
    api = p.service("api")
    assert api.port == 7102 and api.argv == ("api", "--db", "http://127.0.0.1:7101")
    assert p.dashboard_port == 9100


def test_profiles_cells_and_only() -> None:
    text = (BASE + '\n[services.ui]\ncommand=["ui"]\nprofiles=["ecom"]\ncells=["local"]\n'
            '[cells.staging]\n')
    core = build_plan(load_stack_text(text), Options(project_root=Path("/p")))
    assert "ui" not in core.names
    ecom = build_plan(load_stack_text(text), Options(project_root=Path("/p"), profile="ecom"))
    assert "ui" in ecom.names
    staging = build_plan(load_stack_text(text),
                         Options(project_root=Path("/p"), profile="ecom", cell="staging"))
    assert "ui" not in staging.names
    only = build_plan(load_stack_text(text), Options(project_root=Path("/p"), only=("api",)))
    assert only.names == ("db", "api")
    with pytest.raises(UsageError):
        build_plan(load_stack_text(text), Options(project_root=Path("/p"), only=("nope",)))
    with pytest.raises(UsageError):
        build_plan(load_stack_text(text), Options(project_root=Path("/p"), profile="huge"))


def test_unknown_template_variable_is_a_load_error() -> None:
    with pytest.raises(StackFileError) as info:
        build_plan(load_stack_text('[services.a]\ncommand = ["${nope}"]\n'),
                   Options(project_root=Path("/p")))
    assert "unknown variable ${nope}" in str(info.value) and info.value.service == "a"
    with pytest.raises(StackFileError):
        build_plan(load_stack_text('[services.a]\ncommand = ["${env:HIPPO_NOT_SET_X}"]\n'),
                   Options(project_root=Path("/p"), env={}))
    ok = build_plan(load_stack_text('[services.a]\ncommand = ["$${literal}", "${table_prefix}"]\n'),
                    Options(project_root=Path("/p"), table_prefix="dev-x-"))
    assert ok.service("a").argv == ("${literal}", "dev-x-")


def test_bundled_profiles_and_cells() -> None:
    spec = load_stack(None)
    core = build_plan(spec, Options(project_root=Path("/p")))
    assert {"fake_cell", "controller", "console"} <= set(core.names)
    assert "moto" not in core.names
    ecom = build_plan(spec, Options(project_root=Path("/p"), profile="ecom"))
    assert ecom.service("global_worker").spec.external
    full = build_plan(spec, Options(project_root=Path("/p"), profile="full"))
    assert not full.service("global_worker").spec.external
    ports = {s.name: s.port for s in ecom.services}
    assert ports["moto"] == 9003 and ports["fake_cognito"] == 9013 and ports["ecom_ingest"] == 9019
    # the choice of cell lacks a URL, not the (bundled) file: exit 2, no file:line
    with pytest.raises(UsageError) as usage:
        build_plan(spec, Options(project_root=Path("/p"), cell="staging", env={}))
    assert usage.value.message().startswith("--cell staging needs the cell's URL (service ")
    assert "HIPPODROME_CELL_URL_STAGING" in usage.value.message()
    staging = build_plan(spec, Options(project_root=Path("/p"), cell="staging",
                                       env={"HIPPODROME_CELL_URL_STAGING": "https://cell.test"}))
    assert "fake_cell" not in staging.names
    assert staging.service("controller").env["CONTROL_PLANE_URL_OVERRIDE"] == "https://cell.test"
    seedless = build_plan(spec, Options(project_root=Path("/p"), skip=("seed",)))
    assert "seed" not in seedless.names
    shifted = build_plan(spec, Options(project_root=Path("/p"), profile="ecom", port_offset=100))
    assert shifted.service("admin_server").env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9103"
    assert shifted.dashboard_port == 9100


def test_bind_host_is_loopback_except_in_docker_mode() -> None:
    spec = load_stack(None)
    local = build_plan(spec, Options(project_root=Path("/p"), env={}))
    assert "127.0.0.1" in local.service("fake_cell").argv
    docker = build_plan(spec, Options(project_root=Path("/p"), profile="ecom",
                                      env={"HIPPODROME_PEX_DIR": "/opt/pex"}))
    for svc in docker.services:
        if svc.port is not None and not svc.spec.external:
            assert "0.0.0.0" in svc.argv, svc.name
    chosen = build_plan(spec, Options(project_root=Path("/p"),
                                      env={"HIPPODROME_BIND_HOST": "127.0.0.2"}))
    assert "127.0.0.2" in chosen.service("controller").argv


@pytest.mark.parametrize("name", ["hippodrome", "Dashboard"])
def test_hippodromes_own_names_are_not_service_names(name: str) -> None:
    """A service named `hippodrome` printed lines that read as Hippodrome's own."""
    e = err(f'[services.{name}]\ncommand = ["x"]\n')
    assert e.service == name and "is Hippodrome's own name in its output" in str(e)


@pytest.mark.parametrize(("text", "line"), [
    # fields outside [services.X] were put at the [stack] header, or at line 1
    ('[stack]\ndefaults = false\n\n[profiles.web]\nx = 1\n', 5),
    ('[stack]\ndefaults = false\n\n[profiles.web]\n\ndescription = 5\n', 6),
    ('[stack]\ndefaults = false\n[env]\nA = [1]\n', 3),  # its table at least
    ('[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\n'
     'setup = { command = ["y"], creates = "" }\n', 5),
    ('[stack]\ndefaults = false\n\n[services."a b"]\ncommand = ["x"]\n', 4),
])
def test_errors_outside_a_services_plain_fields_name_their_line(text: str, line: int) -> None:
    e = err(text)
    assert e.line == line, str(e)


ROUTES = """[stack]
defaults = false
[services.a]
command = ["x"]
port = 7000
[services.j]
kind = "job"
command = ["x"]
[[routes]]
detail_type_prefix = "X."
service = "a"
path = "/e"
[[routes]]
"""


@pytest.mark.parametrize(("entry", "field", "line", "words"), [
    # the second entry (its header is line 13): errors named line 1, the first [[routes]]
    # (line 9) or no line, and 'field routes' whichever field it was
    ('detail_type_prefix = "Y."\nservice = "a"\npathh = "/e"\n', "routes[1].pathh", 16,
     "did you mean 'path'"),
    ('detail_type_prefix = "Y."\npath = "/e"\n', "routes[1]", 13, "missing service"),
    ('detail_type_prefix = "Y."\nservice = "a"\npath = "no-slash"\n', "routes[1].path", 16,
     "URL path"),
    ('service = "a"\npath = "/e"\ndetail_type_prefix = 5\n',
     "routes[1].detail_type_prefix", 16, "must be a string"),
    ('detail_type_prefix = "Y."\npath = "/e"\nservice = "nosuch"\n', "routes[1].service", 16,
     "names unknown service 'nosuch'"),
    ('detail_type_prefix = "Y."\n\nservice = "j"\n', "routes[1].service", 16,
     "which has no port"),
    ('detail_type_prefix = "Y\\u0000"\nservice = "a"\n', "routes[1].detail_type_prefix", 14,
     "NUL byte"),
])
def test_a_routes_error_names_its_entrys_line_and_field(entry: str, field: str, line: int,
                                                        words: str) -> None:
    e = err(ROUTES + entry)
    assert (e.field_name, e.line) == (field, line), str(e)
    assert words in str(e) and f"stack.toml:{line}: field '{field}'" in str(e)


SERVICE_A = '[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\nport = 7000\n'


@pytest.mark.parametrize(("head", "field", "line"), [
    # an inline array names its entry's key, not the `routes =` line (x/4)
    ('routes = [{ detail_type_prefix = "X.", service = "a" },\n'
     '          { detail_type_prefix = "Y.", service = "b" }]\n', "routes[1].service", 2),
    ('routes = [\n  { detail_type_prefix = "{X.", service = "a", path = "/a" },  # {\n\n'
     '  { service = "a", detail_type_prefix = 5 },\n]\n',
     "routes[1].detail_type_prefix", 4),
    ('routes = [{ service = "a", detail_type_prefix = "X." }, { service = "a", '
     'detail_type_prefix = 5 }]\n', "routes[1].detail_type_prefix", 1),
    ('routes = [\n  { detail_type_prefix = "X." },\n]\n', "routes[0]", 2),
    # a [[routes]] entry's sub-table names its own header
    ('[[routes]]\ndetail_type_prefix = "X."\nservice = "a"\n[routes.extra]\nb = 1\n',
     "routes[0].extra", 4),
])
def test_routes_written_inline_or_with_a_sub_table_name_their_entrys_line(
        head: str, field: str, line: int) -> None:
    text = head + SERVICE_A if head.startswith("routes") else SERVICE_A + head
    offset = 0 if head.startswith("routes") else SERVICE_A.count("\n")
    e = err(text)
    assert (e.field_name, e.line) == (field, line + offset), str(e)


@pytest.mark.parametrize(("text", "line"), [
    ("# c\n# c\n\n[routes]\ndetail_type_prefix = \"X.\"\n" + SERVICE_A, 4),
    ('routes = "x"\n' + SERVICE_A, 1),
    (SERVICE_A + "[routes]\nservice = \"a\"\n", 6),
])
def test_routes_that_are_no_array_of_tables_name_their_own_line(text: str, line: int) -> None:
    """It named the [stack] header's line, or past the end of the `[routes]` table."""
    e = err(text)
    assert e.line == line and "must be written as [[routes]] tables" in str(e), str(e)


@pytest.mark.parametrize(("table", "said", "below"), [
    ('[profiles."bad name"]', '[profiles."bad name"]: names start with a letter', 0),
    ('[cells."bad name"]', '[cells."bad name"]: names start with a letter', 0),
    ('[services.""]\ncommand = ["x"]', 'service name "": service names start', 0),
    ('[services."../x"]\ncommand = ["x"]', 'service name "../x": service names start', 0),
    ('[services."a\\tb"]\ncommand = ["x"]', 'service name "a\\tb": service names start', 0),
    # written as keys of the table, not as headers: the key's own line (s/2)
    ('[profiles]\ndev = 5', '[profiles."dev"] must be a table', 1),
    ('[cells]\nstaging = "x"', '[cells."staging"] must be a table', 1),
    ('[services]\n"x y" = { command = ["x"] }', 'service name "x y": service names start', 1),
])
def test_a_bad_table_name_is_named_at_its_own_line(table: str, said: str,
                                                   below: int) -> None:
    """Each was said at line 1, or at no line ("../x" split at its dots), and a control
    character in the name was printed raw (z/4); `dev = 5` under `[profiles]` at the
    [stack] header's line (s/2). `below`: the lines from the table's header to it."""
    e = err(SERVICE_A + "\n" + table + "\n")
    assert e.line == SERVICE_A.count("\n") + 2 + below and said in str(e), str(e)


def test_a_dashboard_port_on_a_bundled_services_port_blames_the_users_line(
        tmp_path: Path) -> None:
    """`dashboard_port = 9001` (fake_cell's): the error named a line of the installed
    package's stack file, which nobody edits (z/4)."""
    from hippo_tasks.model.loader import load_stack

    (tmp_path / "hippodrome.toml").write_text("# mine\n[stack]\ndashboard_port = 9001\n")
    with pytest.raises(StackFileError) as info:
        load_stack(tmp_path)
    assert info.value.path == str(tmp_path / "hippodrome.toml"), str(info.value)
    assert info.value.line == 3, str(info.value)
    assert "dashboard_port 9001 is the port of service 'fake_cell'" in str(info.value)



def test_a_bad_value_in_the_stack_wide_env_is_said_at_its_own_line(tmp_path: Path) -> None:
    """[env] `API_URL = "${url:apii}"` at line 3 was blamed on the first service's `env`
    field, at that service's header, though it has none (adv28 l/7)."""
    text = ('[stack]\ndefaults = false\n[env]\nAPI_URL = "${url:apii}"\nHERE = "${port}"\n'
            '[services.worker]\ncommand = ["w"]\n[services.api]\ncommand = ["a"]\nport = 7\n')
    path = tmp_path / "hippodrome.toml"
    path.write_text(text)
    with pytest.raises(StackFileError) as info:
        build_plan(load_stack_text(text, str(path)), Options(project_root=tmp_path))
    said = info.value.message()
    assert said.startswith(f"{path}:4: field 'env.API_URL': ${{url:apii}}: no such "
                           "service 'apii'"), said
    assert "worker" not in said
    path.write_text(text.replace('"${url:apii}"', '"${url:api}"'))
    with pytest.raises(StackFileError) as info:
        build_plan(load_stack_text(path.read_text(), str(path)), Options(project_root=tmp_path))
    said = info.value.message()
    assert said.startswith(f"{path}:5: field 'env.HERE': uses ${{port}} but has no port "
                           "(every service gets [env], and service 'worker' has no port"), said


@pytest.mark.parametrize(("text", "line", "field"), [
    ('env = { X = "${env:UNSET_FOR_THIS_TEST}" }\n[stack]\ndefaults = false\n'
     '[services.a]\ncommand = ["a"]\n', 1, "env.X"),
    ('[stack]\ndefaults = false\n\n[env.sub]\nx = "1"\n[services.a]\ncommand = ["a"]\n', 4,
     "env.sub"),
    ('[stack]\ndefaults = false\n[env]\nY = "1"\n"A.B" = "${oops}"\n[services.a]\n'
     'command = ["a"]\n', 5, "env.A.B"),
])
def test_env_errors_of_any_spelling_are_said_at_their_line(tmp_path: Path, text: str,
                                                           line: int, field: str) -> None:
    """Inline at the top, a table under [env], a quoted key with a dot: no line, line 1,
    and the [env] header (adv29 n/1)."""
    path = tmp_path / "hippodrome.toml"
    path.write_text(text)
    with pytest.raises(StackFileError) as info:
        build_plan(load_stack_text(text, str(path)), Options(project_root=tmp_path))
    assert info.value.message().startswith(f"{path}:{line}: field '{field}': "), \
        info.value.message()
