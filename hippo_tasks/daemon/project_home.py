"""The project folder the daemon was started in, told apart from one made later at
its path: the registry and logs are written only into the first, and nothing starts in
the second."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


class ProjectHome:
    def __init__(self, root: Path, note: Callable[[str], None]) -> None:
        self.root = root
        self._note = note
        self._id = folder_id(root)
        self._moved_said = False

    def here(self) -> bool:
        """The project folder is where it was started. Moved (`mv proj new`), its
        registry and logs went with it, and they are used there; writing at the old path
        is wrong once a folder stands there again (a fresh clone): the daemon wrote its
        registry and every later log line into that other folder (q/4)."""
        now = folder_id(self.root)
        if now == self._id:
            return True
        if now is not None and not self._moved_said:
            self._moved_said = True
            self._note(f"hippodrome | {self.root} is another folder now (the project was "
                       "moved): its registry and logs are not written there; `hd status` "
                       "and `hd down` work where the project is now")
        return False

    def moved_away(self) -> str | None:
        """Why no process may start: the project was moved under the running stack and
        another folder stands at its old path (a fresh clone), where a restart ran the
        service with that folder's files and data, and said ok (adv30 q/4). A path
        with nothing there is left to the cwd check, which says as much."""
        now = folder_id(self.root)
        if now is None or now == self._id:
            return None
        return (f"the project folder {self.root} is another folder now (the project was "
                "moved or renamed under the running stack, and something else stands at "
                "its old path), so nothing of this stack starts there: `hd down`, then "
                "`hd up` where the project is now")


def folder_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
