"""Conversation state, in memory or persisted: the stand-in's Durable Objects.

`wrangler dev` keeps Durable Object state in memory unless it runs with `--persist`,
and the reference's users lost conversation history on every restart until they found
the flag. This store behaves the same way: in memory by default, and with persistence
on, every change is written at once (atomically: old file or new, never half) to
`conversations.json` in the state folder, so a restart, even after kill -9, keeps
every conversation that was answered. The folder is locked while a process uses it:
two instances writing one file would lose each other's turns.

Bounded on purpose (conversations, turns per conversation), oldest dropped first, so a
long session cannot grow the process without limit.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

from hippo_platform.services.common.log import log_error
from hippo_platform.services.common.state import atomic_write_json, lock_folder, read_json

MAX_CONVERSATIONS = 500
MAX_TURNS = 100
STATE_FILE = "conversations.json"


class Conversations:
    def __init__(self, folder: Path | None = None) -> None:
        """`folder` None: in memory only, as `wrangler dev` without `--persist`."""
        self.folder = folder
        self._lock = threading.Lock()
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._held: IO[bytes] | None = None
        if folder is not None:
            self._held = lock_folder(folder)
            self._load(folder / STATE_FILE)

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / STATE_FILE

    def _load(self, path: Path) -> None:
        try:
            data = read_json(path, {"conversations": []})
            items = data["conversations"]
            for item in items:
                self._items[str(item["id"])] = item
        except (ValueError, KeyError, TypeError) as exc:
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            os.replace(path, aside)
            log_error(f"agentic_search: {path} is unreadable ({type(exc).__name__}: {exc}); "
                      f"moved it to {aside} and started with no conversations")
            self._items.clear()

    def count(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, conversation_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._items.get(conversation_id)
            return json.loads(json.dumps(found)) if found is not None else None

    def add_turn(self, conversation_id: str, index: str,
                 turns: list[dict[str, Any]]) -> dict[str, Any]:
        """Append the user's message and the reply as one change; the conversation."""
        with self._lock:
            item = self._items.pop(conversation_id, None) or {
                "id": conversation_id, "index": index, "messages": []}
            item["index"] = index
            item["messages"] = (item["messages"] + turns)[-MAX_TURNS:]
            self._items[conversation_id] = item  # most recently used last
            while len(self._items) > MAX_CONVERSATIONS:
                self._items.popitem(last=False)
            self._save()
            return {"id": item["id"], "index": index, "messages": len(item["messages"])}

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            if self._items.pop(conversation_id, None) is None:
                return False
            self._save()
            return True

    def _save(self) -> None:
        if self.path is not None:
            atomic_write_json(self.path, {"conversations": list(self._items.values())})

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
