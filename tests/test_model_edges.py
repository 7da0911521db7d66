"""Values the runtime cannot use are refused at load or plan time, naming what is wrong.

Each case here once got through the loader and failed later: a hang in `pending`, an
OverflowError traceback, a daemon on a random port, or a misleading message.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hippo_tasks.errors import StackFileError, UsageError
from hippo_tasks.model.loader import load_stack, load_stack_text
from hippo_tasks.model.plan import Options, StackPlan, build_plan

ROOT = Path("/p")


def refused(text: str) -> StackFileError:
    with pytest.raises(StackFileError) as info:
        load_stack_text(text, "stack.toml")
    assert "stack.toml" in str(info.value)
    return info.value


def planned(text: str, **opts: object) -> StackPlan:
    return build_plan(load_stack_text(text, "stack.toml"),
                      Options(project_root=ROOT, **opts))  # type: ignore[arg-type]


@pytest.mark.parametrize("table,field", [
    ('command = ["app", "a\\u0000b"]', "command"),
    ('command = ["x"]\ncwd = "sub\\u0000dir"', "cwd"),
    ('command = ["x"]\nenv = { A = "1\\u0000" }', "env"),
    ('command = ["x"]\nenv = { "A\\u0000" = "1" }', "env"),
    ('command = ["x"]\nwatch = ["src/\\u0000.py"]', "watch"),
    ('command = ["x"]\nsetup = { command = ["npm"], creates = "n\\u0000m" }', "setup"),
    ('command = ["x"]\nreadiness = { log = "up\\u0000" }', "readiness"),
    ('command = ["x"]\nprofiles = ["co\\u0000re"]', "profiles"),
])
def test_nul_bytes_are_refused_naming_service_and_field(table: str, field: str) -> None:
    e = refused(f"[services.api]\n{table}\n")
    assert (e.service, e.field_name) == ("api", field)
    assert "NUL byte" in e.problem
    assert "\x00" not in str(e)


@pytest.mark.parametrize("text,words", [
    ('env = { A = "\\u0000" }\n[services.a]\ncommand = ["x"]\n', "env.A contains a NUL"),
    ('[services.a]\ncommand = ["x"]\n[cells.staging]\nurl = "https://c\\u0000"\n',
     "cells.staging.url contains a NUL"),
    ('[services.a]\ncommand = ["x"]\n[[routes]]\ndetail_type_prefix = "X\\u0000"\n'
     'service = "a"\n', "routes[0].detail_type_prefix contains a NUL"),
])
def test_nul_bytes_outside_services_name_their_key(text: str, words: str) -> None:
    assert words in str(refused(text))


@pytest.mark.parametrize("field", ["start_timeout", "stop_timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
def test_non_finite_timeouts_are_refused(field: str, value: str) -> None:
    e = refused(f'[services.api]\ncommand = ["x"]\n{field} = {value}\n')
    assert (e.service, e.field_name, e.line) == ("api", field, 3)
    assert "finite number" in e.problem


@pytest.mark.parametrize("field", ["liveness_interval", "backoff_initial", "backoff_max"])
def test_non_finite_stack_settings_are_refused(field: str) -> None:
    e = refused(f'[stack]\n{field} = nan\n[services.a]\ncommand = ["x"]\n')
    assert e.field_name == field and "finite number" in e.problem


def test_non_finite_env_value_is_refused() -> None:
    e = refused('[services.api]\ncommand = ["x"]\nenv = { RATE = inf }\n')
    assert e.field_name == "env" and "finite" in e.problem


@pytest.mark.parametrize("field,value,words", [
    ("start_timeout", "86401", "at most 86400 (one day)"),
    ("stop_timeout", "1e300", "at most 86400"),
    ("stop_timeout", "9" * 400, "hundreds of digits"),
    ("start_timeout", "-5", "at least 0.1"),
    ("stop_timeout", "-0.5", "at least 0"),
])
def test_absurd_timeouts_are_refused(field: str, value: str, words: str) -> None:
    e = refused(f'[services.api]\ncommand = ["x"]\n{field} = {value}\n')
    assert e.field_name == field and words in e.problem


def test_a_day_is_the_longest_timeout() -> None:
    spec = load_stack_text('[services.api]\ncommand = ["x"]\nstart_timeout = 86400\n'
                           "stop_timeout = 86400.0\n")
    assert spec.service("api").start_timeout == 86400.0


@pytest.mark.parametrize("env,words", [
    ('{ "" = "x" }', "empty variable name"),
    ('{ "A=B" = "x" }', "contains '='"),
])
def test_unusable_env_names_are_refused(env: str, words: str) -> None:
    e = refused(f'[services.api]\ncommand = ["x"]\nenv = {env}\n')
    assert (e.service, e.field_name) == ("api", "env") and words in e.problem
    top = refused(f'env = {env}\n[services.api]\ncommand = ["x"]\n')
    assert top.field_name == "env" and words in top.problem


@pytest.mark.parametrize("table,field,words", [
    ('command = [""]', "command", "must not be empty"),
    ('command = ["x"]\nsetup = { command = [" "], creates = "n" }', "setup.command",
     "must not be empty"),
    ('command = ["x"]\nwatch = ["/etc/*.conf"]', "watch", "relative"),
    ('command = ["x"]\nwatch = [""]', "watch", "matches nothing"),
    ('command = ["x"]\nwatch = ["src/**.py"]', "watch", "whole path component"),
    # accepted, and did nothing: a completed job is not run again by a change
    ('kind = "job"\ncommand = ["x"]\nwatch = ["assets/*.css"]', "watch", "a job runs once"),
    ('command = ["x"]\nport = 7000\nreadiness = { http = "/a b" }', "readiness", "URL path"),
    ('command = ["x"]\nport = 7000\nreadiness = { http = "/a\\r\\nX: y" }', "readiness",
     "URL path"),
    ('command = ["x"]\nreadiness = { log = "' + "(" * 3000 + ")" * 3000 + '" }', "readiness",
     "regex"),
    # a profile or cell no --profile/--cell could choose: the service silently ran nowhere
    ('command = ["x"]\nprofiles = [""]', "profiles", "'' is not a name"),
    ('command = ["x"]\nprofiles = ["web "]', "profiles", "'web ' is not a name"),
    ('command = ["x"]\ncells = ["eu\\u001b[2J"]', "cells", "is not a name"),
    ('command = ["x"]\nexternal_in = ["-x"]', "external_in", "'-x' is not a name"),
])
def test_values_the_runtime_would_choke_on(table: str, field: str, words: str) -> None:
    e = refused(f"[services.api]\n{table}\n")
    assert (e.service, e.field_name) == ("api", field) and words in e.problem


@pytest.mark.parametrize("table,words", [
    ('command = ["python3", "-m", "http.server", 8080]',
     'must be a list of strings; item 4 is an integer (write it in quotes, as a string)'),
    ('command = ["sleep", 1.50]', 'item 2 is a number (quote it: "1.50")'),
    ('command = ["x", 1e3]', 'item 2 is a number (quote it: "1e3")'),
    # an integer's spelling is not kept: "493" for 0o755 changed the command (adv32 u/2)
    ('command = ["chmod", 0o755]', 'item 2 is an integer (write it in quotes, as a string)'),
    ('command = ["x"]\nwatch = ["src", 12]', 'item 2 is an integer (write it in quotes'),
    ('command = ["x"]\nprofiles = ["core", true]', "must be a list of strings; item 2 is "
     "true/false"),
    ('command = ["x"]\nwatch = ["src", ["a"]]', "must be a list of strings; item 2 is a list"),
    ('command = "python3 app.py"', "must be a list of strings, not a string (write a list"),
])
def test_a_list_with_one_wrong_item_names_the_item(table: str, words: str) -> None:
    """`command = ["python3", "-m", "http.server", 8080]` was refused as "must be a list
    of strings, not a list", of a list (adv30 q's notes)."""
    e = refused(f"[services.api]\n{table}\n")
    assert words in e.problem, e.problem


def test_route_path_must_be_a_url_path() -> None:
    e = refused('[services.a]\ncommand = ["x"]\nport = 7000\n[[routes]]\n'
                'detail_type_prefix = "X."\nservice = "a"\npath = "events"\n')
    assert e.field_name == "routes[0].path" and e.line == 7 and "URL path" in e.problem


@pytest.mark.parametrize("path", ["/e#frag", "/e%zz", "/e%4", "/../../x", "/a/./b",
                                  "/a/..?x=1", "/a/%2e%2e/admin", "/a/%2E/b", "/a\\\\..\\\\b",
                                  "/a{b}|c^d", "/a`b"])
def test_a_path_a_request_would_not_send_as_written_is_refused(path: str) -> None:
    """A fragment (never sent), a `%` that is no escape and `.`/`..` parts loaded, and
    each service's server read them its own way (adv41 I/4)."""
    e = refused('[services.a]\ncommand = ["x"]\nport = 7000\n[[routes]]\n'
                f'detail_type_prefix = "X."\nservice = "a"\npath = "{path}"\n')
    assert e.field_name == "routes[0].path" and "URL path as a request sends it" in e.problem
    e = refused(f'[services.a]\ncommand = ["x"]\nport = 7000\nreadiness = {{ http = "{path}" }}\n')
    assert e.field_name == "readiness" and "URL path as a request sends it" in e.problem


@pytest.mark.parametrize("path", ["/events?source=eb", "/a%20b", "/.well-known/x", "/a..b/"])
def test_a_query_escapes_and_dots_inside_names_are_a_url_path(path: str) -> None:
    planned('[services.a]\ncommand = ["x"]\nport = 7000\n'
            f'readiness = {{ http = "{path}" }}\n[[routes]]\n'
            f'detail_type_prefix = "X."\nservice = "a"\npath = "{path}"\n')


def test_a_route_to_a_service_without_a_port_is_refused() -> None:
    """Every event it matched was a 503 at delivery, long after `up` said all was well."""
    e = refused('[services.a]\nkind = "job"\ncommand = ["x"]\n[[routes]]\n'
                'detail_type_prefix = "Order."\nservice = "a"\n')
    assert e.field_name == "routes[0].service" and e.line == 6
    assert "'Order.' names 'a', which has no port" in e.problem and "`port`" in e.problem


@pytest.mark.parametrize("text,words", [
    ("a = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("a = " + "9" * 5000, "not usable TOML"),
])
def test_toml_the_parser_itself_cannot_take(text: str, words: str) -> None:
    assert words in refused(text).problem


def test_dashboard_pushed_past_65535_by_the_offset() -> None:
    text = '[stack]\ndashboard_port = 65535\n[services.a]\ncommand = ["x"]\n'
    with pytest.raises(UsageError) as info:
        planned(text, port_offset=300)
    message = str(info.value)
    assert "--port-offset 300" in message and "dashboard" in message
    assert "65535" in message and "65835" in message and "1-65535" in message


def test_offset_moving_the_dashboard_to_port_0_is_refused() -> None:
    with pytest.raises(UsageError) as info:
        planned('[services.a]\ncommand = ["x"]\nport = 9500\n', port_offset=-9000)
    assert "dashboard" in str(info.value) and "to port 0" in str(info.value)


def test_offset_moving_a_service_out_of_range_names_it() -> None:
    with pytest.raises(UsageError) as info:
        planned('[services.web]\ncommand = ["x"]\nport = 65000\n', port_offset=1000)
    assert "'web' from port 65000 to port 66000" in str(info.value)


def test_url_of_an_unknown_service_says_so_and_suggests() -> None:
    text = ('[services.database]\ncommand = ["db"]\nport = 7001\n'
            '[services.api]\ncommand = ["api", "${url:databse}"]\n')
    with pytest.raises(StackFileError) as info:
        planned(text)
    e = info.value
    assert (e.service, e.field_name) == ("api", "command")
    assert "no such service 'databse'" in e.problem and "did you mean 'database'?" in e.problem


def test_a_variable_error_names_the_line_like_every_load_error(tmp_path: Path) -> None:
    """Found when `${...}` is rendered, after loading: the message named the file, the
    service and the field, but no line."""
    (tmp_path / "hippodrome.toml").write_text(
        '[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\nport = 7001\n\n'
        '[services.b]\ncommand = ["y"]\nenv = { X = "${url:aa}" }\n')
    with pytest.raises(StackFileError) as info:
        build_plan(load_stack(tmp_path), Options(project_root=tmp_path))
    assert info.value.message().startswith(
        f"{tmp_path / 'hippodrome.toml'}:9: service 'b': field 'env.X': ${{url:aa}}: no such "
        "service 'aa'"), info.value.message()


HEAD = '[stack]\ndefaults = false\n\n[services.b]\nshell = "sleep 1"\n\n\n'


@pytest.mark.parametrize(("body", "line", "said"), [
    ('[services.b.env]\nA = "1"\nX = "${nope}"\n', 10, "field 'env.X': unknown variable"),
    ('env.A = "1"\n\nenv.X = "${nope}"\n', 10, "field 'env.X': unknown variable"),
    ('env."X" = "${nope}"\n', 8, "field 'env.X': unknown variable"),
    ('[services.b.env]\nA = "1"\nX = 5.5e400\n', 10, "field 'env': env.X is inf"),
    ('[services.b.env]\nA = "1"\nX = true\n', 10, "field 'env.X': value of 'X' must be"),
    ('env = { A = "1", X = "${nope}" }\n', 8, "field 'env.X': unknown variable"),
    ('[services.b.env]\nA = "1"\n"B=C" = "2"\n', 10, "field 'env': variable name 'B=C'"),
    ('env.A = "1"\nenv."" = "2"\n', 9, "field 'env': has an empty variable name"),
])
def test_an_env_key_written_in_a_sub_table_or_dotted_is_named_at_its_line(
        tmp_path: Path, body: str, line: int, said: str) -> None:
    """`[services.b.env]` or `env.X = ...` lines below `[services.b]`: every error in a
    key there named the line of `[services.b]` (adv55 4)."""
    (tmp_path / "hippodrome.toml").write_text(HEAD + body)
    with pytest.raises(StackFileError) as info:
        build_plan(load_stack(tmp_path), Options(project_root=tmp_path))
    message = info.value.message()
    assert message.startswith(f"{tmp_path / 'hippodrome.toml'}:{line}: service 'b': "), message
    assert said in message, message


def test_url_of_a_service_without_port_says_that() -> None:
    text = '[services.job]\ncommand = ["j"]\n[services.api]\ncommand = ["a", "${port:job}"]\n'
    with pytest.raises(StackFileError) as info:
        planned(text)
    assert "names service 'job', which has no port" in info.value.problem


@pytest.mark.parametrize(("literal", "said"), [
    ("43778", "${port:43778} is port 43778, service 'a''s own port"),
    ("43775", "${port:43775} is port 43775, the dashboard's port"),
])
def test_a_literal_port_on_another_services_port_is_a_load_error(literal: str,
                                                                said: str) -> None:
    """`${port:N}` on a port another service of the run listens on (or the dashboard's):
    a's readiness met b's socket, up said ready, and a crash-looped (adv24 c/16)."""
    text = ('[stack]\ndashboard_port = 43775\n[services.a]\ncommand = ["x"]\nport = 43778\n'
            f'[services.b]\ncommand = ["y", "--inspect=${{port:{literal}}}"]\n')
    with pytest.raises(StackFileError) as info:
        planned(text)
    assert said in info.value.problem and info.value.service == "b", info.value.message()
    moved = planned(text.replace(f"${{port:{literal}}}", "${port:9229}"), port_offset=100)
    assert "--inspect=9329" in moved.services[1].argv or "--inspect=9329" in \
        moved.services[0].argv


def test_unknown_variable_suggests_the_closest() -> None:
    with pytest.raises(StackFileError) as info:
        planned('[services.a]\ncommand = ["${projet_root}"]\n')
    assert "did you mean ${project_root}?" in info.value.problem


def test_misspelt_bundled_service_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "hippodrome.toml").write_text("[services.controler]\nport = 9100\n")
    with pytest.raises(StackFileError) as info:
        load_stack(tmp_path)
    e = info.value
    assert e.service == "controler" and e.path == str(tmp_path / "hippodrome.toml")
    assert "not a bundled service (did you mean 'controller'?)" in e.problem
    assert "command" in e.problem  # how to add a new service instead
    assert "has no command" not in e.problem


def test_switching_off_a_misspelt_bundled_service_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hippodrome.toml").write_text("[services.consle]\nenabled = false\n")
    with pytest.raises(StackFileError) as info:
        load_stack(tmp_path)
    assert "did you mean 'console'?" in info.value.problem
    assert "switches nothing off" in info.value.problem


def test_new_service_without_command_in_a_file_of_its_own_still_says_no_command() -> None:
    e = refused("[services.fresh]\nport = 7000\n")
    assert e.field_name == "command" and "has no command" in e.problem


def test_a_long_dependency_chain_loads_and_plans() -> None:
    text = "".join(f'[services.s{i}]\ncommand = ["x"]\ndepends_on = ["s{i + 1}"]\n'
                   for i in range(1500)) + '[services.s1500]\ncommand = ["x"]\n'
    plan = planned(text)
    assert plan.names[0] == "s1500" and plan.names[-1] == "s0"
    e = refused(text.replace('[services.s1500]\ncommand = ["x"]\n',
                             '[services.s1500]\ncommand = ["x"]\ndepends_on = ["s3"]\n'))
    assert "dependency cycle" in e.problem


@pytest.mark.parametrize("value,words", [
    ("${python", "'${python' starts a variable that is not ${name}"),
    ("${url:${port}}", "'${url' starts a variable"),
    ("a ${port b", "'${port' starts a variable"),
    ("${}", "'${}' starts a variable"),
    ("${ python}", "'${ ' starts a variable"),
    ("abc${", "'${' starts a variable"),
])
def test_an_unclosed_or_nested_variable_is_refused(value: str, words: str) -> None:
    """It reached the process as text and failed at spawn, far from the typo."""
    with pytest.raises(StackFileError) as info:
        planned(f'[services.a]\nport = 7001\ncommand = ["{value}"]\n')
    assert words in info.value.problem and info.value.field_name == "command"


@pytest.mark.parametrize("value", ["${:}", "${:python}", "${.port}", "${é}", "a${/x}"])
def test_a_variable_no_shell_would_take_either_is_refused(value: str) -> None:
    """They reached the process as text (adv41 I/3): neither this file's variables nor
    a shell's parameters."""
    with pytest.raises(StackFileError) as info:
        planned(f'[services.a]\nport = 7001\ncommand = ["{value}"]\n')
    assert "starts a variable" in info.value.problem and info.value.field_name == "command"


@pytest.mark.parametrize("value,words", [
    ("${myVar}", "a shell's own ${...} is written $${...}"),
    ("${arr[0]}", "a shell's own ${...} is written $${...}"),
    ("${port:-8080}", "'${port:-8080}' is a shell's default-value form; Hippodrome's "
                      "${port:...} takes a name: for the shell's, write $${port:-8080}"),
])
def test_a_shells_lower_case_parameter_is_told_how_to_write_it(value: str, words: str) -> None:
    """Lower-case `${name}` is this file's; a shell's `${myVar}` got "a missing '}'?"
    alone, and `${port:-8080}` "no such service '-8080'" (adv42 T/3)."""
    with pytest.raises(StackFileError) as info:
        planned(f'[services.a]\nport = 7001\nshell = "echo {value}"\n')
    assert words in info.value.problem, info.value.problem
    assert info.value.field_name == "shell"  # as the file has it (it said command)


def test_what_a_shell_reads_as_a_parameter_stays_text() -> None:
    svc = planned('[services.a]\nport = 7001\n'
                  'shell = "echo ${1} ${#} ${-} ${!x} ${@} ${?} ${FOO:-y}"\n').service("a")
    assert svc.argv[-1] == "echo ${1} ${#} ${-} ${!x} ${@} ${?} ${FOO:-y}"


def test_upper_case_and_escaped_dollars_stay_text() -> None:
    """`${HOME}` is a shell's to expand; `$${x}` is the literal `${x}`."""
    svc = planned('[services.a]\nport = 7001\nshell = "echo ${HOME} $${x}"\n').service("a")
    assert svc.argv[-1] == "echo ${HOME} ${x}"


def test_backoff_max_below_backoff_initial_is_refused() -> None:
    e = refused("[stack]\nbackoff_initial = 5\nbackoff_max = 1\n")
    assert e.field_name == "backoff_max" and "below backoff_initial" in e.problem


@pytest.mark.parametrize("pattern,ok", [
    ("../../../**/*.py", False),  # from services/api up past the project root
    ("../../../../etc/*", False),
    ("../../**/*.py", True),  # the project root itself
    ("../common/**/*.py", True),  # a sibling folder of the project
    ("src/**/*.py", True),
])
def test_watch_patterns_stay_inside_the_project(pattern: str, ok: bool) -> None:
    text = f'[services.api]\ncommand = ["x"]\ncwd = "services/api"\nwatch = ["{pattern}"]\n'
    if ok:
        planned(text)
        return
    with pytest.raises(StackFileError) as info:
        planned(text)
    assert info.value.field_name == "watch" and "outside the project" in info.value.problem


@pytest.mark.parametrize("pattern,words", [
    ("src/[z-a]", "is not a valid glob: bad character range z-a"),
    ("/".join(["**"] * 14) + "/*.py", "more than 3 '**'"),
    ("src/*/../x.py", "'..' after a wildcard"),
    ("*/../../*.py", "'..' after a wildcard"),  # the watcher reads it as ../*.py
    ("**/../../../../../../../*.py", "'..' after a wildcard"),  # ... and this as /
])
def test_watch_globs_the_watcher_could_not_use_are_refused(pattern: str, words: str) -> None:
    """`[z-a]` killed the watcher at its first event (and the daemon's shutdown with it);
    fourteen `**` backtracked for minutes on a deep path; a `..` after a wildcard reaches
    folders the load check could not see."""
    e = refused(f'[services.a]\ncommand = ["x"]\nwatch = ["{pattern}"]\n')
    assert e.field_name == "watch" and words in e.problem


def test_a_bad_variable_in_an_env_file_names_that_file(tmp_path: Path) -> None:
    """It named hippodrome.toml's field 'env', which the stack file does not have."""
    (tmp_path / "vars.env").write_text("GOOD=1\nBAD=${nope}\n")
    with pytest.raises(StackFileError) as info:
        build_plan(load_stack_text('[services.a]\ncommand = ["x"]\nenv_file = ["vars.env"]\n'),
                   Options(project_root=tmp_path))
    e = info.value
    assert (e.path, e.service, e.field_name) == (str(tmp_path / "vars.env"), "a", "env_file")
    assert "BAD: unknown variable ${nope}" in e.problem
    assert e.line == 2 and e.message().startswith(f"{tmp_path / 'vars.env'}:2: ")  # i/12


def test_a_service_name_over_63_characters_says_so() -> None:
    """Sixty-four letters got the rule about letters and digits, which they keep."""
    e = refused(f"[services.{'a' * 64}]\ncommand = [\"x\"]\n")
    assert "63 characters at most (this one has 64)" in e.problem
    load_stack_text(f"[services.{'a' * 63}]\ncommand = [\"x\"]\n", "stack.toml")


def test_only_naming_what_no_seed_leaves_out_says_so() -> None:
    """`--only seed --no-seed` said seed "is not in profile 'core'", which it is."""
    text = '[services.seed]\nkind = "job"\ncommand = ["x"]\n'
    with pytest.raises(UsageError) as info:
        planned(text, only=("seed",), skip=("seed",))
    assert "--only names 'seed', which --no-seed leaves out" in str(info.value)


BIG = "d" * 1_000_000


@pytest.mark.parametrize("service", [
    f'command = ["x"]\nenv = {{ DB = "${{url:{BIG}}}" }}',
    f'command = ["x"]\n{BIG} = 1',
    f'command = ["x"]\ndepends_on = ["{BIG}"]',
    f'command = ["x"]\nstop_signal = "{BIG}"',
    "env_file",
    "name",
])
def test_a_load_error_quotes_a_huge_value_cut_short(tmp_path: Path, service: str) -> None:
    """A 1 MB value was quoted whole, often twice: a 2 MB one-line "sentence", and the
    closest-name search over it took a second (adv26 g/5). An env_file's line and a
    service's name were cut at 80 characters with no mark (adv27 i/7)."""
    text = f'[stack]\ndefaults = false\n[services.a]\n{service}\n'
    if service == "env_file":
        (tmp_path / ".env").write_text(f'X="a"{BIG}\n')
        text = '[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\nenv_file = ".env"\n'
    elif service == "name":
        text = f'[stack]\ndefaults = false\n[services.{BIG}]\ncommand = ["x"]\n'
    with pytest.raises(StackFileError) as info:
        build_plan(load_stack_text(text), Options(project_root=tmp_path))
    said = info.value.message()
    assert len(said) < 2000 and re.search(r"d… \(10000\d\d characters\)", said), said[:3000]


def test_a_number_in_env_is_its_text_as_written() -> None:
    """`V = 3.10` reached the service as `3.1`, and `1e3` as `1000.0` (adv32 u/3): a float
    is passed as the file writes it; an integer as its decimal text (TOML keeps no other)."""
    spec = load_stack_text('env = { TOP = 2.50 }\n[services.api]\ncommand = ["x"]\n'
                           'env = { V = 3.10, E = 1e3, W = 4, N = -0.0 }\n'
                           'stop_timeout = 1.50\n', "stack.toml")
    (api,) = spec.services
    assert dict(api.env) == {"V": "3.10", "E": "1e3", "W": "4", "N": "-0.0"}
    assert dict(spec.env)["TOP"] == "2.50"
    assert api.stop_timeout == 1.5 and repr(api.stop_timeout) == "1.5"
