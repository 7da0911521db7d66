"""[profiles.NAME], [cells.NAME] and [commands.NAME]: a platform's vocabulary as data.

The orchestrator knows only the default profile and cell; everything else, including
which service stands in for a cell and which programs `invoke seed` / `invoke probes`
run, comes from the stack file, and bad tables are refused naming file and field.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hippo_tasks.errors import StackFileError, UsageError
from hippo_tasks.model import bundle
from hippo_tasks.model.commands import plan_command
from hippo_tasks.model.loader import known_profiles, load_stack, load_stack_text
from hippo_tasks.model.plan import Options, StackPlan, build_plan

REPO = Path(__file__).resolve().parents[1]
ROOT = Path("/p")
DB = '[services.db]\ncommand = ["db"]\nport = 7001\n'


def plan(text: str, **kw: Any) -> StackPlan:
    return build_plan(load_stack_text(text), Options(project_root=ROOT, **kw))


def test_the_bundle_declares_its_profiles_cells_stand_in_and_commands() -> None:
    spec = load_stack(None)
    assert known_profiles(spec) == ("core", "ecom", "full")
    assert spec.cell_names == ("local", "staging", "prod")
    assert spec.cell("local").stand_in == "fake_cell"
    assert {c.name for c in spec.commands} == {"seed", "probes"}
    local = build_plan(spec, Options(project_root=ROOT, profile="ecom", port_offset=10))
    assert local.service("controller").env["CONTROL_PLANE_URL_OVERRIDE"] == \
        "http://127.0.0.1:9011"  # fake_cell's 9001, shifted


def test_a_stack_of_ones_own_knows_only_the_default_profile_and_cell() -> None:
    spec = load_stack_text(DB)
    assert spec.profiles == ("core",) and spec.cell_names == ("local",)
    assert spec.service("db").profiles == ("core",) and spec.service("db").cells == ("local",)
    with pytest.raises(UsageError, match="unknown cell 'staging'; choose one of local"):
        plan(DB, cell="staging")
    with pytest.raises(UsageError, match="unknown profile 'ecom'; choose one of core"):
        plan(DB, profile="ecom")


def test_every_profile_holds_every_service_that_names_none() -> None:
    """Declared or only named by a service, as Compose has it: `odd` ran `extra` alone,
    and adding a description-only [profiles.odd] table changed what ran."""
    text = DB + '[profiles.small]\n[profiles.big]\ndescription = "all"\n' \
        '[services.extra]\ncommand = ["x"]\nprofiles = ["big", "odd"]\n'
    spec = load_stack_text(text)
    assert known_profiles(spec) == ("core", "small", "big", "odd")
    assert spec.service("db").profiles == ("core", "small", "big", "odd")
    assert set(plan(text, profile="odd").names) == {"db", "extra"}
    assert set(plan(text, profile="big").names) == {"db", "extra"}
    assert plan(text, profile="small").names == ("db",)
    declared = text + '[profiles.odd]\ndescription = "the same"\n'
    assert set(plan(declared, profile="odd").names) == {"db", "extra"}


def test_an_empty_profiles_list_is_every_profile() -> None:
    """`profiles = []` put the service in no profile: it never ran, and nothing said so.
    As in Compose, it is every profile."""
    text = DB + '[profiles.big]\n[services.extra]\ncommand = ["x"]\nprofiles = []\n'
    assert set(plan(text).names) == set(plan(text, profile="big").names) == {"db", "extra"}
    cells = DB + '[services.extra]\ncommand = ["x"]\ncells = []\n'  # the same for cells
    assert set(plan(cells).names) == {"db", "extra"}


def test_external_in_must_name_a_profile() -> None:
    with pytest.raises(StackFileError) as info:
        load_stack_text(DB + '[profiles.staging]\n[services.x]\ncommand = ["x"]\n'
                        'external_in = ["stagign"]\n')
    assert "external_in names 'stagign', which no [profiles.NAME] table declares" in str(info.value)
    assert "did you mean 'staging'" in str(info.value)


def test_a_stand_in_is_the_cells_url_and_other_cells_use_their_url() -> None:
    text = DB + '[cells.local]\nstand_in = "db"\n[cells.shared]\nurl = "https://cell.test"\n' \
        '[services.app]\ncommand = ["app", "${cell_url}"]\n'
    assert plan(text).service("app").argv == ("app", "http://127.0.0.1:7001")
    shared = plan(text, cell="shared")
    assert shared.service("app").argv == ("app", "https://cell.test")
    env = {"HIPPODROME_CELL_URL_SHARED": "https://other.test"}
    assert plan(text, cell="shared", env=env).service("app").argv[1] == "https://other.test"


def test_a_missing_cell_url_names_the_stand_in_that_would_serve_it() -> None:
    with pytest.raises(UsageError) as info:  # the choice of cell, not the file (exit 2)
        build_plan(load_stack(None), Options(project_root=ROOT, cell="staging", env={}))
    assert "HIPPODROME_CELL_URL_STAGING" in str(info.value)
    assert "(fake_cell runs only with --cell local)" in str(info.value)


def test_a_missing_cell_url_does_not_say_an_unrestricted_stand_in_runs_in_one_cell() -> None:
    text = DB + '[cells.local]\nstand_in = "db"\n[cells.far]\n' \
        '[services.app]\ncommand = ["app", "${cell_url}"]\n'
    with pytest.raises(UsageError) as info:
        plan(text, cell="far")
    assert "(db stands in with --cell local)" in str(info.value)


@pytest.mark.parametrize(("text", "words"), [
    (DB + '[cells.local]\nstand_in = "dbx"\n', ["stand_in names 'dbx'", "did you mean 'db'"]),
    (DB + '[cells.local]\nstand_in = 3\n', ["cells.local.stand_in", "must be a string"]),
    ('[services.a]\ncommand = ["a"]\n[cells.local]\nstand_in = "a"\n',  # adv49 B/6
     ["cells.local.stand_in", "stand_in names 'a', which has no port, so it gives the cell "
      "no URL"]),
    (DB + '[cells.moon]\ncolour = "grey"\n', ["[cells.moon] has no field 'colour'"]),
    (DB + '[profiles.x]\nservices = ["db"]\n', ["[profiles.x] has no field 'services'"]),
    (DB + '[profiles]\nx = 1\n', ['[profiles."x"] must be a table']),
    ('profiles = ["a"]\n' + DB, ["[profiles.NAME] must be tables"]),
    (DB + '[cells."no way"]\n', ['[cells."no way"]: names start with a letter']),
    ('[services.db]\ncommand = ["db"]\ncells = ["moon"]\n',
     ["service 'db'", "'moon' is not one of local", "[cells.moon]"]),
    (DB + '[commands.seed]\ndescription = "x"\n', ["[commands.seed] has no command"]),
    (DB + '[commands.seed]\ncommand = "seed.sh"\n', ["commands.seed.command", "list"]),
    (DB + '[commands.seed]\ncommand = [""]\n', ["the program (the first item) must not be"]),
    (DB + '[commands.seed]\ncommand = ["x"]\nenv = { "A=B" = "1" }\n', ["commands.seed.env"]),
    (DB + '[commands.seed]\ncommand = ["x"]\nshell = "x"\n', ["has no field 'shell'"]),
])
def test_bad_tables_are_refused_naming_the_field(text: str, words: list[str]) -> None:
    with pytest.raises(StackFileError) as info:
        load_stack_text(text, "stack.toml")
    for word in words:
        assert word in str(info.value), str(info.value)
    assert str(info.value).startswith("stack.toml")


def test_a_command_renders_with_the_stack_contract_and_its_own_env() -> None:
    text = DB + '[env]\nDB_URL = "${url:db}"\nSEED = "${random_seed}"\n' \
        '[commands.load]\ncommand = ["${python}", "load.py", "${table_prefix}"]\n' \
        'cwd = "tools"\nenv = { SEED = "own", WHERE = "${cell}" }\n'
    opts = Options(project_root=ROOT, port_offset=5, random_seed=7, python="py",
                   table_prefix="t-")
    cmd = plan_command(load_stack_text(text), opts, "load")
    assert cmd.argv == ("py", "load.py", "t-") and cmd.cwd == ROOT / "tools"
    assert dict(cmd.env) == {"DB_URL": "http://127.0.0.1:7006", "SEED": "own", "WHERE": "local"}


def test_a_broken_command_is_an_error_naming_the_table_not_a_service() -> None:
    spec = load_stack_text(DB + '[commands.load]\ncommand = ["${url:nope}"]\n', "s.toml")
    with pytest.raises(StackFileError) as info:
        plan_command(spec, Options(project_root=ROOT), "load")
    assert str(info.value).startswith("s.toml: field 'commands.load.command': ${url:nope}")
    build_plan(spec, Options(project_root=ROOT))  # `up` does not render commands


def test_an_unknown_command_lists_what_the_stack_offers() -> None:
    with pytest.raises(UsageError) as info:
        plan_command(load_stack(None), Options(project_root=ROOT), "sede", "seed")
    assert "offers no 'sede' command" in str(info.value)
    assert "seed, probes" in str(info.value) and "did you mean 'seed'" in str(info.value)
    with pytest.raises(UsageError, match=r"tables: none\); add a \[commands.probes\]"):
        plan_command(load_stack_text(DB), Options(project_root=ROOT), "probes")


def test_a_project_file_overrides_a_bundled_command_field_by_field(tmp_path: Path) -> None:
    (tmp_path / "hippodrome.toml").write_text(
        '[commands.seed]\ncommand = ["${python}", "my_seed.py"]\nenv = { EXTRA = "1" }\n'
        '[cells.local]\ndescription = "mine"\n[profiles.mine]\n')
    spec = load_stack(tmp_path)
    seed = spec.command("seed")
    assert seed.command == ("${python}", "my_seed.py") and seed.description.startswith("Determ")
    assert spec.cell("local").stand_in == "fake_cell"  # kept: only description overridden
    assert known_profiles(spec) == ("core", "ecom", "full", "mine")
    assert plan_command(spec, Options(project_root=tmp_path), "seed").env["EXTRA"] == "1"


def test_the_orchestrator_finds_the_bundle_without_importing_the_platform() -> None:
    code = ("import sys; from pathlib import Path\n"
            "from hippo_tasks.model.loader import load_stack\n"
            "from hippo_tasks.model.plan import Options, StackPlan, build_plan\n"
            "import hippo_tasks.tasks.program, hippo_tasks.daemon.main\n"
            "build_plan(load_stack(None), Options(project_root=Path('/p'), profile='full'))\n"
            "print(sorted(m for m in sys.modules if m.startswith('hippo_platform')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_without_the_platform_installed_the_error_says_what_to_do(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bundle, "BUNDLE_PACKAGE", "hippo_platform_not_installed")
    with pytest.raises(StackFileError, match="defaults = false"):
        load_stack(None)
    (tmp_path / "hippodrome.toml").write_text("[stack]\ndefaults = false\n" + DB)
    assert load_stack(tmp_path).names == ("db",)  # one's own stack needs no platform
