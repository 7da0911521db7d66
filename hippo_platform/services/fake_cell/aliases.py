"""Index aliases for fake_cell: a name of an account that stands for one of its indexes.

Why: the reference's aliasing flow builds a new index beside the live one and then
moves the alias in one step, so readers and writers that use the alias switch at once,
never seeing a half-built index. Here an alias is one journaled op (`alias.put`
creates or repoints it, `alias.delete` removes it); every index route accepts an alias
in place of the index name (searches, reads and document writes go to its index),
while deleting goes by the real name only. An index that an alias points at cannot be
deleted (409) until the alias is moved or removed, so an alias never dangles.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from hippo_platform.services.common.errors import Conflict, NotFound
from hippo_platform.services.common.shapes import index_name

Key = tuple[str, str]


class AliasOps:
    """Mixed into `Cell`, which provides the lock, the maps and `_commit`."""

    lock: threading.Lock
    aliases: dict[Key, str]
    indexes: dict[Key, Any]
    _commit: Callable[[dict[str, Any]], None]
    _authenticate: Callable[[str | None], Any]

    def aliases_of(self, account_id: str, index: str) -> list[str]:
        return sorted(a for (owner, a), target in self.aliases.items()
                      if owner == account_id and target == index)

    def put_alias(self, api_key: str | None, alias: str,
                  index: str) -> tuple[dict[str, Any], bool]:
        """Create or repoint; (view, created)."""
        index_name(alias, "alias name")
        with self.lock:
            account = self._authenticate(api_key).account_id
            if (account, alias) in self.indexes:
                raise Conflict(f"'{alias}' is an index; an alias needs a name of its own")
            if (account, index) not in self.indexes:
                hint = " (aliases point at indexes, not at other aliases)" if (
                    (account, index) in self.aliases) else ""
                raise NotFound(f"index '{index}' not found{hint}")
            previous = self.aliases.get((account, alias))
            if previous != index:
                self._commit({"op": "alias.put", "accountId": account, "name": alias,
                              "index": index})
            return {"alias": alias, "index": index, "previousIndex": previous}, previous is None

    def get_alias(self, api_key: str | None, alias: str) -> dict[str, Any]:
        with self.lock:
            account = self._authenticate(api_key).account_id
            target = self.aliases.get((account, alias))
            if target is None:
                raise NotFound(f"alias '{alias}' not found")
            return {"alias": alias, "index": target}

    def list_aliases(self, api_key: str | None) -> list[dict[str, Any]]:
        with self.lock:
            account = self._authenticate(api_key).account_id
            return [{"alias": a, "index": t} for (owner, a), t in sorted(self.aliases.items())
                    if owner == account]

    def delete_alias(self, api_key: str | None, alias: str) -> None:
        with self.lock:
            account = self._authenticate(api_key).account_id
            if (account, alias) not in self.aliases:
                raise NotFound(f"alias '{alias}' not found")
            self._commit({"op": "alias.delete", "accountId": account, "name": alias})

    def apply_alias(self, op: dict[str, Any]) -> None:
        key = (op["accountId"], op["name"])
        if op["op"] == "alias.put":
            self.aliases[key] = op["index"]
        else:
            self.aliases.pop(key, None)
