"""A stack file or env_file that is not a regular file is a load error naming what it is.

`is_file()` took a directory, a dangling link or a link loop for "no stack file", and
`up` silently ran the bundled stack; a FIFO hung `up` forever and a link to /dev/zero
read until memory ran out. Each is created here for real.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from stackutil import HD_CLI

from hippo_tasks.errors import StackFileError
from hippo_tasks.model.loader import load_stack, load_stack_text
from hippo_tasks.model.plan import Options, build_plan
from hippo_tasks.model.textfile import MAX_BYTES


def directory(p: Path) -> None:
    p.mkdir()


def dangling(p: Path) -> None:
    p.symlink_to(p.parent / "gone" / "stack.toml")


def loop(p: Path) -> None:
    p.symlink_to(p.name)


def fifo(p: Path) -> None:
    os.mkfifo(p)


def zero(p: Path) -> None:
    p.symlink_to("/dev/zero")


def huge(p: Path) -> None:
    with p.open("wb") as fh:  # sparse: no disk used
        fh.truncate(MAX_BYTES + 1)


KINDS: list[tuple[Callable[[Path], None], str]] = [
    (directory, "is a directory, not a regular file"),
    (dangling, "is a symbolic link to"),
    (loop, "leads back to itself"),
    (fifo, "is a named pipe (FIFO)"),
    (zero, "is a device"),
    (huge, f"the limit is {MAX_BYTES} bytes"),
]


@pytest.mark.parametrize("make,words", KINDS, ids=[k[0].__name__ for k in KINDS])
def test_an_unusable_stack_file_is_refused_not_skipped(tmp_path: Path,
                                                       make: Callable[[Path], None],
                                                       words: str) -> None:
    make(tmp_path / "hippodrome.toml")
    with pytest.raises(StackFileError) as info:
        load_stack(tmp_path)
    assert info.value.path == str(tmp_path / "hippodrome.toml")
    assert words in info.value.problem and "fix or remove it" in info.value.problem


@pytest.mark.parametrize("make,words", KINDS, ids=[k[0].__name__ for k in KINDS])
def test_an_unusable_env_file_is_refused(tmp_path: Path, make: Callable[[Path], None],
                                         words: str) -> None:
    make(tmp_path / "vars.env")
    text = '[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\nenv_file = ["vars.env"]\n'
    with pytest.raises(StackFileError) as info:
        build_plan(load_stack_text(text), Options(project_root=tmp_path))
    assert info.value.service == "a" and info.value.field_name == "env_file"
    assert words in info.value.problem


def test_a_byte_order_mark_from_a_windows_editor_is_read_past(tmp_path: Path) -> None:
    """`not valid TOML: Invalid statement (at line 1, column 1)`, with nothing pointing
    at the invisible BOM a Windows editor put first; the env_file's first name got it."""
    bom = b"\xef\xbb\xbf"
    (tmp_path / "hippodrome.toml").write_bytes(
        bom + b'[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\n'
        b'env_file = ["vars.env"]\n')
    (tmp_path / "vars.env").write_bytes(bom + b"GREETING=hi\n")
    plan = build_plan(load_stack(tmp_path), Options(project_root=tmp_path))
    assert plan.service("a").env["GREETING"] == "hi"


def test_no_stack_file_at_all_is_the_bundled_stack(tmp_path: Path) -> None:
    assert "controller" in {s.name for s in load_stack(tmp_path).services}


def test_up_on_a_fifo_stack_file_exits_3_at_once(tmp_path: Path) -> None:
    """Through the CLI: a clear message and exit 3, not a hang nor the bundled stack."""
    os.mkfifo(tmp_path / "hippodrome.toml")
    up = subprocess.run([*HD_CLI, "up", "--detach", "--project-root", str(tmp_path)],
                        cwd=tmp_path, capture_output=True, text=True, timeout=60,
                        env={**os.environ, "NO_COLOR": "1"})
    said = up.stdout + up.stderr
    assert up.returncode == 3, said
    assert "named pipe (FIFO)" in said and "Traceback" not in said
    assert not (tmp_path / ".hippodrome" / "registry.json").exists(), "something started"


def test_a_small_file_is_read_into_a_small_buffer(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 KB registry was read with a 4 MiB request: a MemoryError traceback from every
    command under a tight `ulimit -v`."""
    from hippo_tasks.model import textfile

    path = tmp_path / "small.json"
    path.write_text("x" * 1000)
    asked: list[int] = []
    real_read = os.read

    def reading(fd: int, n: int) -> bytes:
        asked.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(textfile.os, "read", reading)
    assert textfile.read_small_text(path) == "x" * 1000
    assert asked and max(asked) <= 1000 + 4096, asked


@pytest.mark.parametrize(("data", "words"), [
    ("[stack]\ndefaults = false\n# café\n".encode("latin-1"),
     "is not UTF-8 text (line 3: byte 0xe9); save it as UTF-8"),
    ("[stack]\ndefaults = false\n".encode("utf-16"), "is UTF-16 text"),
])
def test_a_file_that_is_not_utf8_says_where_and_what_to_do(tmp_path: Path, data: bytes,
                                                           words: str) -> None:
    """It was Python's codec text: a byte offset, no line, nothing to do."""
    (tmp_path / "hippodrome.toml").write_bytes(data)
    with pytest.raises(StackFileError) as info:
        load_stack(tmp_path)
    assert words in str(info.value) and "codec" not in str(info.value)
    (tmp_path / "hippodrome.toml").write_text(
        '[stack]\ndefaults = false\n[services.a]\ncommand = ["x"]\nenv_file = [".env"]\n')
    (tmp_path / ".env").write_bytes(data)
    with pytest.raises(StackFileError) as info:
        build_plan(load_stack(tmp_path), Options(project_root=tmp_path))
    assert f"env_file {words}" in str(info.value)
