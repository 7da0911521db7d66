"""Docker mode without a container: the PEX files, copied to an empty folder, run a
stack with no source tree anywhere on the path.

The PEX files are built once per session (about a minute warm, a few cold), or reused
when `dist/pex/inputs.sha256` matches the current sources and lock. Each stack runs at a
free port offset, on loopback (HIPPODROME_DASHBOARD_HOST overrides Docker mode's
0.0.0.0), and is torn down from its registry even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stackutil import free_offset

from hippo_tasks.packaging import pexbuild
from hippo_tasks.registry.cleanup import force_down
from hippo_tasks.registry.store import Registry

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 900  # a cold build on a loaded 2-core machine took ~4.5 min
STACK_TIMEOUT = 240

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + STACK_TIMEOUT)


@pytest.fixture(scope="session")
def pex_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hd.pex and services.pex, alone in a folder of their own."""
    out = REPO / pexbuild.OUT_DIR
    if not pexbuild.is_fresh(REPO, out):
        pexbuild.build(REPO, out)
    folder = tmp_path_factory.mktemp("pexbin")
    for name in pexbuild.PEX_FILES:
        shutil.copy2(out / name, folder / name)
    return folder


def _clean_env(**extra: str) -> dict[str, str]:
    """Our environment minus anything that could let a child find the source tree or
    this test venv's packages: PYTHON*, PEX_*, HIPPODROME_*, and virtualenv bin dirs."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "PEX_", "HIPPODROME_", "VIRTUAL_ENV"))
    }
    venv_bins = {str(Path(sys.prefix) / "bin")} if sys.prefix != sys.base_prefix else set()
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and p not in venv_bins
    )
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


class PexStack:
    """`hd.pex` run from an empty working folder against an empty project folder."""

    def __init__(self, pex_dir: Path, tmp: Path, hd: list[str] | None = None) -> None:
        self.hd = hd or [str(pex_dir / "hd.pex")]
        self.cwd = tmp / "cwd"
        self.project = tmp / "project"
        self.cwd.mkdir()
        self.project.mkdir()
        self.env = _clean_env(
            HIPPODROME_PEX_DIR=str(pex_dir),
            HIPPODROME_SRC_DIR=str(self.project),
            HIPPODROME_DASHBOARD_HOST="127.0.0.1",
        )
        self.offset = free_offset()

    def run(self, *args: str, timeout: float = STACK_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.hd, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )

    def up(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("up", "--detach", "--port-offset", str(self.offset), *args)

    def status(self) -> dict[str, Any]:
        out = self.run("status", "--json", timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        doc: dict[str, Any] = json.loads(out.stdout)
        return doc

    def cleanup(self) -> None:
        if (self.project / ".hippodrome" / "registry.json").exists():
            force_down(Registry(self.project))


@pytest.fixture
def stack(pex_dir: Path, tmp_path: Path) -> Iterator[PexStack]:
    s = PexStack(pex_dir, tmp_path)
    try:
        yield s
    finally:
        s.cleanup()


def _assert_all_blocking_ready(doc: dict[str, Any]) -> None:
    for svc in doc["services"]:
        if not svc["blocking"] or svc["external"]:
            continue
        if svc["kind"] == "job":
            assert (svc["state"], svc["exit_code"]) == ("stopped", 0), svc
        else:
            assert svc["state"] == "running" and svc["healthy"], svc


def test_services_pex_is_an_interpreter_without_the_source_tree(pex_dir: Path,
                                                                tmp_path: Path) -> None:
    code = (
        "import sys, hippo_tasks, moto, boto3, psycopg, requests, psutil, colorama, invoke;"
        "import hypothesis.stateful;"  # hd probes --full/--fuzz run with services.pex
        "print(sys.version_info[:2] == (3, 11), hippo_tasks.__file__)"
    )
    out = subprocess.run(
        [str(pex_dir / "services.pex"), "-c", code], cwd=tmp_path, env=_clean_env(),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    is_311, where = out.stdout.split()
    assert is_311 == "True"
    assert not Path(where).is_relative_to(REPO), where
    mod = subprocess.run(
        [str(pex_dir / "services.pex"), "-m", "hippo_platform.services.fake_cell", "--help"],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert mod.returncode == 0 and "usage" in mod.stdout, mod.stderr


def test_package_data_is_inside_the_pex(pex_dir: Path) -> None:
    """Every non-Python file of the packages (stack file, pages) is in both PEX files:
    a miss here is a missing pyproject package-data pattern."""
    wanted = {
        str(rel) for rel in pexbuild.source_files(REPO)
        if rel.parts[0] in pexbuild.PACKAGES and rel.suffix not in (".py", ".typed")
    }
    assert {"hippo_platform/default_stack.toml", "hippo_tasks/daemon/page.html",
            "hippo_platform/services/console/index.html"} <= wanted
    for name in pexbuild.PEX_FILES:
        names = zipfile.ZipFile(pex_dir / name).namelist()
        prefix = next(n.split("hippo_tasks/")[0] for n in names if "/hippo_tasks/" in n)
        inside = {n[len(prefix):] for n in names if n.startswith(prefix)}
        assert wanted <= inside, f"{name} lacks {sorted(wanted - inside)}"


def test_core_stack_runs_from_pex_files(stack: PexStack) -> None:
    up = stack.up("--profile", "core")
    assert up.returncode == 0, up.stdout + up.stderr
    doc = stack.status()
    assert doc["profile"] == "core"
    assert Path(doc["project_root"]) == stack.project.resolve()
    _assert_all_blocking_ready(doc)
    names = {s["name"] for s in doc["services"]}
    assert {"fake_cell", "controller"} <= names
    down = stack.run("down", timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not _registry_has_live_daemon(stack.project)


def test_the_images_hd_runs_from_services_pex_alone(pex_dir: Path, tmp_path: Path) -> None:
    """The image carries services.pex only, and its `hd` (build/image/hd) runs it as
    `services.pex -m hippo_tasks`: that runs the core stack as hd.pex does."""
    script = (REPO / "build" / "image" / "hd").read_text()
    assert 'exec /opt/hippodrome/pex/services.pex -m hippo_tasks "$@"' in script
    alone = tmp_path / "pex"
    alone.mkdir()
    shutil.copy2(pex_dir / "services.pex", alone / "services.pex")
    s = PexStack(alone, tmp_path, hd=[str(alone / "services.pex"), "-m", "hippo_tasks"])
    try:
        assert s.run("--version", timeout=60).stdout.strip().startswith("hd ")
        up = s.up("--profile", "core")
        assert up.returncode == 0, up.stdout + up.stderr
        _assert_all_blocking_ready(s.status())
        down = s.run("down", timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not _registry_has_live_daemon(s.project)
    finally:
        s.cleanup()


@pytest.mark.skipif(
    not (REPO / "hippo_platform" / "services" / "ecom_ingest").is_dir(),
    reason="the ecom services are not in this tree yet",
)
def test_ecom_stack_runs_from_pex_files(stack: PexStack) -> None:
    up = stack.up("--profile", "ecom", "--no-seed")
    assert up.returncode == 0, up.stdout + up.stderr
    doc = stack.status()
    _assert_all_blocking_ready(doc)
    by_name = {s["name"]: s for s in doc["services"]}
    assert by_name["moto"]["state"] == "running"
    assert by_name["aws_provision"]["exit_code"] == 0
    down = stack.run("down", timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr


def test_missing_services_pex_is_named(pex_dir: Path, tmp_path: Path) -> None:
    """HIPPODROME_PEX_DIR at a folder without services.pex: the failing service's
    reason names the missing file, and `up` exits non-zero."""
    empty = tmp_path / "no-pex-here"
    empty.mkdir()
    s = PexStack(pex_dir, tmp_path)
    s.env["HIPPODROME_PEX_DIR"] = str(empty)
    try:
        up = s.up("--profile", "core")
        assert up.returncode != 0
        assert f"command '{empty / 'services.pex'}' not found" in up.stdout + up.stderr
    finally:
        s.cleanup()


def _other_python() -> str | None:
    """A CPython that is not 3.11, if this machine has one (pyenv siblings, PATH)."""
    candidates = [shutil.which(f"python3.{minor}") for minor in (12, 13, 10, 9)]
    base = Path(sys.base_prefix)
    candidates += [str(p) for p in sorted(base.parent.glob("3.1[023]*/bin/python3.1[023]"))]
    for path in filter(None, candidates):
        try:
            ver = subprocess.run([path, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            continue
        if ver.returncode == 0 and ver.stdout.strip() != "(3, 11)":
            return path
    return None


def test_wrong_interpreter_is_a_clear_error(pex_dir: Path, tmp_path: Path) -> None:
    other = _other_python()
    if other is None:
        pytest.skip("no Python other than 3.11 on this machine (docs/packaging.md shows "
                    "what PEX prints)")
    out = subprocess.run(
        [str(pex_dir / "services.pex"), "-c", "print('ran')"], cwd=tmp_path,
        env=_clean_env(PEX_PYTHON=other), capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert "ran" not in out.stdout
    assert f"Failed to find a compatible PEX_PYTHON={other}" in out.stderr, out.stderr
    assert "CPython==3.11.*" in out.stderr


def _registry_has_live_daemon(root: Path) -> bool:
    path = root / ".hippodrome" / "registry.json"
    if not path.exists():
        return False
    data = json.loads(path.read_text() or "{}")
    pid = (data.get("daemon") or {}).get("pid")
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    return True
