"""hd export k8s: what a cluster cannot run is named with what to do; bad options are
one sentence and exit 2, never a traceback; the manifests land where -o says."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from export_helpers import documents, export, validate_all

from hippo_tasks.errors import StackFileError, UsageError
from hippo_tasks.export import sizing
from hippo_tasks.export.problems import UnsupportedStackError
from hippo_tasks.export.write import write_manifests
from hippo_tasks.tasks.program import dotted

REPO = Path(__file__).resolve().parents[1]

UNSUPPORTED = """
[stack]
defaults = false

[services.db]
command = ["${python}", "-m", "http.server", "${port}"]
port = 8401

[services.web]
command = ["node", "server.js"]
port = 8402
depends_on = ["db"]

[services.script]
command = ["${python}", "app.py"]
port = 8403

[services.front]
command = ["/usr/bin/env", "true"]
depends_on = ["web"]

[services.assets]
command = ["${python}", "-m", "http.server", "${port}"]
port = 8404
cwd = "frontend"
setup = { command = ["npm", "ci"], creates = "node_modules" }

[services.reload]
command = ["${python}", "-m", "http.server", "${port}"]
port = 8405
watch = ["src/**/*.py"]

[services.dotenv]
command = ["${python}", "-m", "http.server", "${port}"]
port = 8406
env_file = [".env"]
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "hippodrome.toml").write_text(UNSUPPORTED)
    (tmp_path / ".env").write_text("TOKEN=from-dotenv\n")
    return tmp_path


@pytest.mark.parametrize("layout", ["stack", "services"])
def test_every_unsupported_service_is_named_with_what_to_do(root: Path, layout: str) -> None:
    with pytest.raises(UnsupportedStackError) as caught:
        export(root, layout=layout)
    text = str(caught.value)
    for expected in ("'web' runs 'node'", "absolute path", "'script' runs the script "
                     "'app.py'", "${python} -m", "'assets' runs in cwd = 'frontend'",
                     "'assets' has a setup step (npm ci)", "RUN line",
                     "'dotenv' reads env_file .env", "hippodrome-env", "--allow-partial"):
        assert expected in text, expected
    assert "'db'" not in text and "'front'" not in text  # runnable as written
    # The stack layout's pod runs the daemon, which watches its project volume as on a
    # laptop: only a pod per service loses hot reload (adv49 B/1).
    assert ("'reload' has watch" in text) == (layout == "services"), text


@pytest.mark.parametrize("layout", ["stack", "services"])
def test_allow_partial_leaves_out_what_cannot_run_and_what_needs_it(root: Path,
                                                                    layout: str) -> None:
    said: list[str] = []
    made = export(root, layout=layout, allow_partial=True, said=said)
    validate_all(made.text)
    assert set(made.image_plan.left_out) == {"web", "script", "assets", "dotenv", "front"}
    assert made.image_plan.left_out["front"] == "depends on 'web', which is left out"
    assert any("left out 'front'" in line for line in said)
    assert any("'reload' exported without watch" in line for line in said) == \
        (layout == "services"), said
    assert [s.name for s in made.image_plan.plan.services] == ["db", "reload"]
    assert "from-dotenv" not in made.text
    if layout == "stack":
        args = next(d for d in documents(made.text) if d["kind"] == "Deployment")[
            "spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--only") + 1] == "db,reload"


def test_nothing_left_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "hippodrome.toml").write_text(
        '[stack]\ndefaults = false\n[services.x]\ncommand = ["node", "x.js"]\n'
        '[services.y]\ncommand = ["/bin/true"]\ndepends_on = ["x"]\n')
    with pytest.raises(UnsupportedStackError) as caught:
        export(tmp_path, allow_partial=True)
    text = str(caught.value)
    # It once ended "or pass --allow-partial to export the rest", which was passed.
    assert "pass --allow-partial" not in text
    assert "--allow-partial leaves nothing to export" in text
    assert "'x' runs 'node'" in text and "'y' depends on 'x'" in text


def test_a_log_readiness_is_probed_on_its_port(tmp_path: Path) -> None:
    (tmp_path / "hippodrome.toml").write_text(
        '[stack]\ndefaults = false\n[services.x]\ncommand = ["${python}", "-m", "x"]\n'
        'port = 8500\nreadiness = { log = "listening" }\nauto_restart = false\n')
    made = export(tmp_path, layout="services")
    main = next(d for d in documents(made.text) if d["kind"] == "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]
    assert main["readinessProbe"]["tcpSocket"] == {"port": 8500}
    assert "livenessProbe" not in main  # auto_restart = false: only marked unhealthy


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"layout": "helm"}, "--layout 'helm': choose one of stack, services"),
    ({"profile": "huge"}, "unknown profile 'huge'"),
    ({"cell": "mars"}, "unknown cell 'mars'"),
    ({"namespace": "Bad_NS"}, "is not a Kubernetes namespace name"),
    ({"namespace": "kube-system"}, "--namespace 'kube-system' is the cluster's own"),
    ({"namespace": "default"}, "--namespace 'default' is the cluster's own"),
    ({"namespace": "kube-anything"}, "the cluster's own (default, kube-*)"),
    ({"table_prefix": "kube-system-"}, "the table prefix 'kube-system-' makes the namespace "
                                       "'kube-system', which is the cluster's own"),
    ({"image": "not an image"}, "is not an image reference"),
    # the cluster refuses these only at pull time (InvalidImageName)
    ({"image": "Hippodrome:latest"}, "is not an image reference"),
    ({"image": "registry.example.com/Team/hd:1"}, "is not an image reference"),
    ({"image": "hd:-bad"}, "is not an image reference"),
    ({"image": "hd:" + "x" * 200}, "is not an image reference"),
    ({"image": "hd@sha256:zzz"}, "is not an image reference"),
    ({"image": "a/" * 200 + "b"}, "is not an image reference"),
    ({"only": "nosuch"}, "--only names 'nosuch'"),
    ({"cell": "staging"}, "HIPPODROME_CELL_URL_STAGING"),
])
def test_bad_options_are_one_sentence(tmp_path: Path, kwargs: dict[str, str],
                                      words: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIPPODROME_CELL_URL_STAGING", raising=False)
    with pytest.raises((UsageError, StackFileError)) as caught:
        export(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert words in str(caught.value)


@pytest.mark.parametrize("image", [
    "hippodrome:latest", "team/hd:1", "localhost:5000/hd:1", "[::1]:5000/hd",
    "registry.example.com/team/hd:1.2_a-b", "ghcr.io/org/x@sha256:" + "a" * 64,
    "hd:v1@sha256:" + "b" * 64])
def test_good_image_references_are_taken(tmp_path: Path, image: str) -> None:
    assert f"image: {image}" in export(tmp_path, image=image).text.replace('"', "")


def test_output_folder_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="exists and is not a folder"):
        write_manifests(blocker, "stack", "a: 1\n")
    with pytest.raises(UsageError, match="cannot make the folder"):
        write_manifests(blocker / "sub", "stack", "a: 1\n")
    out = write_manifests(tmp_path / "new" / "k8s", "services", "a: 1\n")
    assert out.read_text() == "a: 1\n" and out.name == "services.yaml"
    assert [p.name for p in out.parent.iterdir()] == ["services.yaml"]  # no temp left


def _hd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HIPPODROME_FAST_CLI": "1"}
    return subprocess.run([sys.executable, "-c", "from hippo_tasks.tasks.program import main;"
                           " main()", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_cli_two_words_write_the_file_and_bad_input_exits_2(tmp_path: Path) -> None:
    assert dotted(["export", "k8s", "-o", "x"]) == ["export.k8s", "-o", "x"]
    assert dotted(["export"]) == ["export"] and dotted(["up", "k8s"]) == ["up", "k8s"]
    (tmp_path / "tasks.py").write_text("")
    done = _hd("export", "k8s", "--profile", "ecom", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and (tmp_path / "out" / "stack.yaml").is_file()
    validate_all((tmp_path / "out" / "stack.yaml").read_text())
    bad = _hd("export.k8s", "--layout", "helm", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "choose one of stack, services" in bad.stderr + bad.stdout
    (tmp_path / "blocked").write_text("")
    bad = _hd("export", "k8s", "-o", "blocked", cwd=tmp_path)
    assert bad.returncode == 2 and "not a folder" in bad.stderr + bad.stdout
    # a script's unset variable wrote into the current folder (adv24 b/11)
    bad = _hd("export", "k8s", "-o", "", cwd=tmp_path)
    assert bad.returncode == 2 and "--output '' names no path" in bad.stderr, bad.stderr
    assert not (tmp_path / "stack.yaml").exists()
    # a folder made at the stack file's name (with the bundled stack running here) hid
    # the stack from every hd command after it (adv59); Hippodrome's own folders alike
    for out, own, what in (("hippodrome.toml", "hippodrome.toml", "the stack file's name"),
                           (".hippodrome/k8s", ".hippodrome", "Hippodrome's own state folder"),
                           (".logs", ".logs", "Hippodrome's own log folder")):
        bad = _hd("export", "k8s", "-o", out, cwd=tmp_path)
        assert bad.returncode == 2 and f"-o {out}: {tmp_path / own} is {what}" in \
            bad.stderr, bad.stderr
        assert not (tmp_path / out).exists()
    # an unset $NS or $IMAGE exported into the default namespace, the latest image (g/4)
    for flag, words in (("--namespace", "leave the flag out for the table prefix's"),
                        ("--image", "leave the flag out for hippodrome:latest")):
        bad = _hd("export", "k8s", flag, "", "-o", "empty", cwd=tmp_path)
        assert bad.returncode == 2 and f"{flag} '' names nothing: give one, or {words}" \
            in bad.stderr, bad.stderr
        assert not (tmp_path / "empty").exists()
    assert "clean up: kubectl delete namespace " in done.stdout
    # A namespace given may hold other work: the clean-up printed stays within the labels.
    shared = _hd("export", "k8s", "--namespace", "team-shared", "-o", "shared", cwd=tmp_path)
    assert shared.returncode == 0, shared.stderr
    assert "kubectl delete namespace team-shared`" in shared.stdout  # named as the danger
    assert "clean up: kubectl delete all,pvc,configmap,secret,serviceaccount,role,rolebinding" \
           " -n team-shared -l hippodrome.dev/" in shared.stdout, shared.stdout
    system = _hd("export", "k8s", "--namespace", "kube-system", "-o", "sys", cwd=tmp_path)
    assert system.returncode == 2 and "the cluster's own" in system.stderr + system.stdout
    assert not (tmp_path / "sys").exists()


def test_measured_figures_are_the_benchmark_s() -> None:
    results = json.loads((REPO / "benchmarks" / "results.json").read_text())
    stack = results["stack"]["results"]
    assert stack["rss_mb_by_service"] == sizing.MEASURED_RSS_MB
    assert stack["daemon_and_guard_mb"] == sizing.DAEMON_AND_GUARD_MB


def _in_mount_namespace(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`script` run by sh in a mount namespace of its own (root, or unprivileged user
    namespaces): a read-only mount made there is gone when it ends."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) here")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=20,
                           check=False)
    if probe.returncode != 0:
        pytest.skip("cannot make a mount namespace here (needs root)")
    env = {**os.environ, "HIPPODROME_FAST_CLI": "1"}
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_read_only_output_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """On a read-only filesystem the cleanup's own unlink raised EROFS: a traceback and
    exit 1 instead of the documented one line."""
    (tmp_path / "tasks.py").write_text("")
    (tmp_path / "rofs").mkdir()
    hd = shlex.join([sys.executable, "-c", "from hippo_tasks.tasks.program import main; "
                     "main()", "export", "k8s", "-o", "rofs"])
    done = _in_mount_namespace(
        f"mount -t tmpfs -o ro tmpfs rofs || exit 99; exec {hd}", tmp_path)
    if done.returncode == 99:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "-o rofs: cannot write stack.yaml (Read-only file system)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_failed_replace_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "stack.yaml").mkdir()  # os.replace cannot put a file there
    with pytest.raises(UsageError, match="cannot write stack.yaml"):
        write_manifests(tmp_path, "stack", "a: 1\n")
    assert [p.name for p in tmp_path.iterdir()] == ["stack.yaml"]


def test_a_non_utf8_argument_is_named_in_one_line(tmp_path: Path) -> None:
    """`--table-prefix $'dev-\\xff-'` (a byte that is not UTF-8) ended in a
    UnicodeEncodeError traceback and left an empty out/.stack.yaml.PID.tmp."""
    (tmp_path / "tasks.py").write_text("")
    done = subprocess.run(
        [sys.executable, "-c", "from hippo_tasks.tasks.program import main; main()",
         "export", "k8s", "--table-prefix", b"dev-\xff-", "-o", "out"],
        cwd=tmp_path, env={**os.environ, "HIPPODROME_FAST_CLI": "1"},
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "--table-prefix 'dev-\\xff-' cannot name AWS resources" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_a_non_utf8_output_folder_is_refused_writing_nothing(tmp_path: Path) -> None:
    """`-o $'out\\xff'` was written and printed as `out\\udcff`, a path found nowhere, in
    the `kubectl apply -f` line to paste (adv49 B/7)."""
    (tmp_path / "tasks.py").write_text("")
    done = subprocess.run(
        [sys.executable, "-c", "from hippo_tasks.tasks.program import main; main()",
         "export", "k8s", "-o", b"out\xff"],
        cwd=tmp_path, env={**os.environ, "HIPPODROME_FAST_CLI": "1"},
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "-o 'out\\xff' is not UTF-8 text" in done.stderr, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["tasks.py"]


def test_a_non_utf8_cell_url_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPPODROME_CELL_URL_STAGING", "https://cell-\udcff.example")
    with pytest.raises(UsageError) as caught:
        export(tmp_path, cell="staging")
    assert "HIPPODROME_CELL_URL_STAGING 'https://cell-\\xff.example' is not UTF-8 text" in \
        str(caught.value)
