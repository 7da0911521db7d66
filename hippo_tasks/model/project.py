"""Where a project lives and what it is called: root detection and the table prefix."""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from hippo_tasks.errors import UsageError

ROOT_MARKERS = ("hippodrome.toml", "tasks.py")


def find_project_root(
    start: Path | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """Nearest parent holding a marker, else HIPPODROME_SRC_DIR, else the start folder.

    A HIPPODROME_SRC_DIR that is not a folder is refused as `-p` is: taken as it was,
    `up` made it and brought the bundled stack up there, so a typo in the variable
    started a stack somewhere new."""
    env = os.environ if env is None else env
    here = (start or current_folder()).resolve()
    for folder in (here, *here.parents):
        found = [folder / m for m in ROOT_MARKERS if os.path.lexists(folder / m)]
        if found:
            _not_a_strangers(found)
            return folder
    src = env.get("HIPPODROME_SRC_DIR")
    if src:
        root = Path(src).expanduser().resolve()
        if not root.is_dir():
            raise UsageError(f"HIPPODROME_SRC_DIR={src}: no such folder (and no "
                             f"hippodrome.toml or tasks.py in {here} or above it); fix or "
                             "unset the variable, or run from your stack's folder")
        return root
    return here


def _not_a_strangers(markers: list[Path]) -> None:
    """A marker found by looking (this folder or a parent) must be this user's or
    root's, and so must the file a link there leads to: one planted by another user in
    a shared folder (`/tmp/hippodrome.toml`) made `hd up` there, or in any folder below
    it, run that user's commands as this one, as git's "dubious ownership" check guards
    against (adv24 c/6, adv25 d/8). --project-root says which folder is meant, and is
    trusted."""
    me = os.geteuid()
    for marker in markers:
        owners: set[int] = set()
        for look in (os.lstat, os.stat):
            with contextlib.suppress(OSError):
                owners.add(look(marker).st_uid)
        for owner in owners - {me, 0}:
            try:
                import pwd

                name = pwd.getpwuid(owner).pw_name
            except (ImportError, KeyError):
                name = f"uid {owner}"
            raise UsageError(
                f"{marker} (or the file it links to) belongs to another user ({name}), so "
                "it is not taken as this folder's stack (a file another user put in a "
                "shared folder would run their commands as you): run from a folder with "
                f"your own hippodrome.toml, or pass --project-root {marker.parent} if you "
                "trust it")


def current_folder() -> Path:
    """The current folder, or a sentence when it was deleted under the shell (a stack
    folder removed with rm -rf, a git worktree pruned): getcwd() fails then."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise UsageError("the current folder no longer exists (it was deleted or moved "
                         "while this shell was in it): cd into your stack's folder, or "
                         "pass --project-root DIR") from None


DIGEST_LIMIT = 1 << 20
"""Files up to this size carry a checksum of their bytes in their stamp."""


def file_stamp(path: Path) -> str | None:
    """A file as it was read, `<mtime_ns>:<size>:<crc32>`; None without one. Compared for
    equality, not order (same_stamp): a file with a future time (unpacked from an
    archive, a clock ahead) read as changed after every `up` when it was compared with
    the daemon's start. The checksum is empty for a file too large, or one that is not
    a regular file (a pipe would hang the read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    digest = ""
    if stat.S_ISREG(st.st_mode) and st.st_size <= DIGEST_LIMIT:
        import zlib  # 0.1 MB of the daemon's memory, which stamps only on a reload

        try:
            with open(path, "rb") as fh:
                digest = format(zlib.crc32(fh.read(DIGEST_LIMIT + 1)), "08x")
        except OSError:
            pass
    return f"{st.st_mtime_ns}:{st.st_size}:{digest}"


def same_stamp(then: str | None, now: str | None) -> bool:
    """The same file content: the same stamp, or, with another time, the same size and
    checksum. A file saved back to its bytes (`git stash` and `pop`, an editor's save
    with no change, `touch`) read as an edit that `hd down` and `hd up` would apply,
    for the rest of the run (adv24 a/6)."""
    if then == now:
        return True
    if then is None or now is None:
        return False
    t, n = then.split(":"), now.split(":")
    return len(t) == 3 == len(n) and t[1:] == n[1:] and bool(t[2])


def stack_file_stamp(root: Path) -> str | None:
    """The stack file as the daemon read it (file_stamp)."""
    return file_stamp(root / ROOT_MARKERS[0])


STAMP_PARTS = "\n"
"""Between the stack file's stamp and each env file's (`path\tstamp`), in the one
`stack_file` string the registry keeps (plan.with_env_file_stamps)."""


def removed_since(root: Path, stamp: str | None) -> bool:
    """Whether the stack file the running stack read (its registry `stack_file` stamp)
    is gone now (deleted or renamed); False for a stack that started without one."""
    return stamp is not None and stack_file_stamp(root) is None


def changed_since(root: Path, stamp: str | None) -> str:
    """A sentence when the stack file, or an env_file it names, was saved since the
    running stack read it (its registry `stack_file` stamp), else ''. The daemon runs
    the stack as read at `up`: an edit then was silently ignored by `restart`, and `up`
    only said a daemon ran; an edited `.env` still was."""
    if stamp is None:
        return ""
    own, *env_files = stamp.split(STAMP_PARTS)
    now = stack_file_stamp(root)
    if now is None and os.path.lexists(root / ROOT_MARKERS[0]):  # a link to nothing
        return (f"{ROOT_MARKERS[0]} is now a symbolic link that leads nowhere (a loop, or "
                "a target that does not exist); the running stack (and a restart) uses "
                "it as it was then, and the next `hd up` here refuses it until it is "
                "fixed")  # it said "removed ... runs the bundled stack" (z/10)
    if now is not None and not os.path.isfile(root / ROOT_MARKERS[0]):  # a folder, a pipe
        return (f"{ROOT_MARKERS[0]} is no longer a regular file (a folder or a pipe stands "
                "there); the running stack (and a restart) uses it as it was then, and the "
                "next `hd up` here refuses it until it is a file again")  # s/3
    if now is None:  # deleted (or renamed): an edit was said, this was not
        return (f"{ROOT_MARKERS[0]} was removed after this stack started; the running "
                "stack (and a restart) uses it as it was then, and the next `hd up` here "
                "runs the bundled stack unless the file is back")
    saved = [] if same_stamp(own, now) else [ROOT_MARKERS[0]]
    gone = []
    for part in env_files:
        path, _, then = part.partition("\t")
        shown = os.path.relpath(path, root) if path.startswith(str(root)) else path
        stamp_now = file_stamp(Path(path))
        if then and (stamp_now is None or not os.path.isfile(path)):  # removed, or a
            gone.append(shown)  # folder in its place (s/3): `down` + `up` refuses
        elif not same_stamp(then or None, stamp_now):
            saved.append(shown)
    if gone:
        return (f"{' and '.join(gone)} (an env_file) {'are' if len(gone) > 1 else 'is'} "
                "gone or unreadable since this stack started; the running stack (and a "
                "restart) uses it as it was then, and the next `hd up` here refuses the "
                "stack file until it is back")
    if not saved:
        return ""
    what = " and ".join(saved)
    them = 'them' if len(saved) > 1 else 'it'
    refused = _refused_now(root)
    if refused:  # "`hd down` then `hd up` applies the change", and that up refused it
        return (f"{what} {'were' if len(saved) > 1 else 'was'} saved after this stack "
                f"started, and the next `hd up` here refuses the stack file as it is now: "
                f"{refused}. The running stack (and a restart) uses {them} as it was then; "
                "fix the file before `hd down`")
    return (f"{what} {'were' if len(saved) > 1 else 'was'} saved after this stack started; "
            f"the running stack (and a restart) uses {them} as it was then: `hd down` then "
            "`hd up` applies the change")


def _refused_now(root: Path) -> str:
    """Why `up` would refuse the stack file as it is now (its load error), or ''. Read
    only once an edit is seen: a cycle or a TOML error was said as a change `down` and
    `up` apply, and the user took the running stack down for an `up` that refused."""
    from hippo_tasks.errors import HippoError, StackFileError
    from hippo_tasks.model.loader import load_stack
    from hippo_tasks.model.plan import Options, build_plan

    try:
        spec = load_stack(root)
    except HippoError as exc:
        return exc.message().rstrip(".")
    except OSError as exc:
        return str(exc)
    try:  # env_files and ${...} are read when planned: a bad .env line, an unset
        # ${env:X} (adv25 d/5). With the default choices and this shell's environment,
        # as a plain `hd up` here; a choice's own refusal (a cell's URL) is not the file's.
        build_plan(spec, Options(project_root=root, env=dict(os.environ)))
    except StackFileError as exc:
        return exc.message().rstrip(".")
    except (HippoError, OSError):
        pass
    return ""


def sanitize_branch(branch: str) -> str:
    """`feature/add-auth` -> `feature-add-auth`: safe in AWS resource names."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", branch).strip("-").lower()
    return cleaned or "local"


def git_branch(root: Path) -> str | None:
    """The checked-out branch, also on an unborn one (`git init -b x`, no commit yet);
    None outside git and on a detached HEAD. Read from HEAD where the layout is plain
    (a `.git` folder, or a worktree's `gitdir:` file): starting git cost 5-10 ms of
    every `up`, before any service could start. Anything else asks git."""
    if not any(k in os.environ for k in GIT_LOCATION_VARS):
        head = _head_text(root)
        if head is None:
            return None
        ref = head.strip()
        if ref.startswith("ref: refs/heads/") and ref != "ref: refs/heads/.invalid":
            return ref.removeprefix("ref: refs/heads/")
        if len(ref) in (40, 64) and all(c in "0123456789abcdef" for c in ref):
            return None  # detached
    return _git_branch_from_git(root)


GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_CEILING_DIRECTORIES",
                     "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_COMMON_DIR")
"""Set, they change which repository git finds: then git itself is asked."""


def _head_text(root: Path) -> str | None:
    """HEAD's text of the repository holding `root`; None when there is none."""
    for folder in (root, *root.parents):
        dot = folder / ".git"
        try:
            if dot.is_dir():
                return (dot / "HEAD").read_text(encoding="utf-8", errors="replace")
            if dot.is_file():
                line = dot.read_text(encoding="utf-8", errors="replace").strip()
                if not line.startswith("gitdir:"):
                    return ""
                gitdir = Path(line.removeprefix("gitdir:").strip())
                gitdir = gitdir if gitdir.is_absolute() else folder / gitdir
                return (gitdir / "HEAD").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""  # unreadable: let git decide
    return None


def _git_branch_from_git(root: Path) -> str | None:
    import subprocess  # here: every command finds its project root, few ask git

    try:
        out = subprocess.run(
            ["git", "symbolic-ref", "--quiet", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    branch = out.stdout.strip()
    if out.returncode != 0 or not branch or branch == "HEAD":
        return None
    return branch


def default_table_prefix(root: Path) -> str:
    branch = git_branch(root)
    return f"dev-{sanitize_branch(branch)}-" if branch else "dev-local-"
