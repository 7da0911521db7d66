"""Links in a watched folder that lead where no watch should go: `/`, a folder holding
the project, the kernel's /proc. notify adds its watches with the GIL held and follows
every link: `ln -s / src/root` under a running stack kept the daemon from answering for
good while its memory grew (adv55 2). Such a link is named and passed by; the rest is
still watched.

Through a real `hd up` daemon: what broke was the daemon's answer to `hd status`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from stackutil import free_ports, hd, stack_header, wait_for, write_stack


def pid_of_w(project: Path) -> int | None:
    said = hd(project, "status", "--json", timeout=60)
    assert said.returncode == 0, said.stdout + said.stderr  # 6: the daemon did not answer
    row = next(r for r in json.loads(said.stdout)["services"] if r["name"] == "w")
    return row["pid"] if row["state"] == "running" else None


@pytest.mark.parametrize(("when", "target"), [("while running", "/proc"),
                                              ("while running", "/"), ("at start", "/proc")])
def test_a_link_to_root_or_proc_in_a_watched_folder_is_passed_by(project: Path, when: str,
                                                                target: str) -> None:
    """Before: with /proc linked while running, `hd status` timed out (exit 6) from
    about a second on, for ~17 s; with `/` linked, for good."""
    (dash,) = free_ports(1)
    write_stack(project, stack_header(dash) + '[services.w]\nshell = "exec sleep 600"\n'
                + 'watch = ["src/**/*.py"]\n')
    src = project / "src"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    link = src / "linked"
    if when == "at start":
        link.symlink_to(target)
    hd(project, "up", "--detach", check=True, timeout=120)
    try:
        if when == "while running":
            link.symlink_to(target)
        first = pid_of_w(project)
        for _ in range(6):  # the daemon answers all along (each within its 10 s)
            assert pid_of_w(project) == first is not None
            time.sleep(1)
        (src / "a.py").write_text("x = 2\n")  # hot reload still works beside it
        wait_for(lambda: pid_of_w(project) not in (first, None), 30,
                 what="w restarted by the save")
        log = hd(project, "logs", "-s", "w", "-l", "200", timeout=60).stdout
        why = "a folder that holds it" if target == "/" else "the kernel's own tree"
        assert f"file watching: not following src/linked (leads to {target}, {why})" \
            in log, log
        if when == "at start":
            assert "the watched folders are scanned every 0.3 s instead" in log, log
    finally:
        hd(project, "down", timeout=120)
