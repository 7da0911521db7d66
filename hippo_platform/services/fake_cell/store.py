"""fake_cell's state: accounts with API keys, per-account indexes and their documents.

Every change is an "op", a small JSON dict, that is appended to the journal before it
is applied and acknowledged; recovery replays the same ops through the same `apply`,
so the live path and the restore path cannot drift apart. Ids and timestamps are
decided before the op is written, which keeps replay deterministic. One lock guards
everything: searches are CPU-bound under the GIL anyway, and a single lock makes
check -> journal -> apply atomic for writers.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from hippo_platform.services.common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from hippo_platform.services.common.log import log_error
from hippo_platform.services.common.shapes import index_name
from hippo_platform.services.fake_cell.aliases import AliasOps
from hippo_platform.services.fake_cell.journal import Journal
from hippo_platform.services.fake_cell.search import Clause, SearchIndex

Op = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Account:
    __slots__ = ("account_id", "name", "api_key", "created_at")

    def __init__(self, account_id: str, name: str, api_key: str, created_at: str) -> None:
        self.account_id = account_id
        self.name = name
        self.api_key = api_key
        self.created_at = created_at

    def __repr__(self) -> str:  # never the API key
        return f"Account({self.account_id}, {self.name})"

    def public(self) -> dict[str, Any]:
        return {"accountId": self.account_id, "name": self.name, "createdAt": self.created_at}


class Index:
    __slots__ = ("account_id", "name", "settings", "created_at", "docs", "search", "origin")

    def __init__(self, account_id: str, name: str, settings: dict[str, Any], created_at: str,
                 origin: dict[str, Any] | None = None) -> None:
        self.account_id = account_id
        self.name = name
        self.settings = settings
        self.created_at = created_at
        self.docs: dict[str, dict[str, Any]] = {}
        self.search = SearchIndex()
        self.origin = origin  # {"source": name, "forkId": id} for a fork

    def __repr__(self) -> str:
        return f"Index({self.account_id}, {self.name}, {len(self.docs)} documents)"

    def summary(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"forkedFrom": self.origin} if self.origin else {}
        return {
            "indexName": self.name,
            "createdAt": self.created_at,
            "numberOfDocuments": len(self.docs),
            **extra,
        }


class Cell(AliasOps):
    def __init__(self, journal: Journal | None = None) -> None:
        self.lock = threading.Lock()
        self.journal = journal
        self.accounts: dict[str, Account] = {}
        self.by_key: dict[str, str] = {}
        self.indexes: dict[tuple[str, str], Index] = {}
        self.aliases: dict[tuple[str, str], str] = {}
        self.closed = False

    # -- lookups; the caller holds the lock ------------------------------------

    def _authenticate(self, api_key: str | None) -> Account:
        if not api_key:
            raise Unauthorized("missing x-api-key header")
        account_id = self.by_key.get(api_key)
        if account_id is None:
            raise Unauthorized("invalid API key")
        return self.accounts[account_id]

    def _account(self, account_id: str) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            raise NotFound(f"account '{account_id}' not found")
        return account

    def _index(self, account_id: str, name: str) -> Index:
        """The index called `name`, or the one the alias `name` points at."""
        index = self.indexes.get((account_id, name))
        if index is None and (account_id, name) in self.aliases:
            index = self.indexes.get((account_id, self.aliases[(account_id, name)]))
        if index is None:
            raise NotFound(f"index '{name}' not found")
        return index

    def _indexes_of(self, account_id: str) -> list[Index]:
        return [ix for (owner, _), ix in self.indexes.items() if owner == account_id]

    # -- admin (no API key: the controller's side) -------------------------------

    def create_account(self, name: str) -> Account:
        with self.lock:
            op = {
                "op": "account.create",
                "accountId": "acc_" + secrets.token_hex(6),
                "name": name,
                "apiKey": "hk_" + secrets.token_hex(16),
                "createdAt": _now(),
            }
            self._commit(op)
            return self.accounts[op["accountId"]]

    def list_accounts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {**a.public(), "indexCount": len(self._indexes_of(a.account_id))}
                for a in self.accounts.values()
            ]

    def describe_account(self, account_id: str) -> dict[str, Any]:
        with self.lock:
            account = self._account(account_id)
            return {**account.public(), "indexCount": len(self._indexes_of(account_id))}

    def account_indexes(self, account_id: str) -> list[dict[str, Any]]:
        with self.lock:
            self._account(account_id)
            return [ix.summary() for ix in self._indexes_of(account_id)]

    # -- tenant operations, authorised by API key --------------------------------

    def whoami(self, api_key: str | None) -> dict[str, Any]:
        with self.lock:
            return self._authenticate(api_key).public()

    def list_indexes(self, api_key: str | None) -> list[dict[str, Any]]:
        with self.lock:
            account = self._authenticate(api_key)
            return [ix.summary() for ix in self._indexes_of(account.account_id)]

    def describe_index(self, api_key: str | None, name: str) -> dict[str, Any]:
        with self.lock:
            account_id = self._authenticate(api_key).account_id
            index = self._index(account_id, name)
            extra: dict[str, Any] = {"forkedFrom": index.origin} if index.origin else {}
            if self.aliases_of(account_id, index.name):
                extra["aliases"] = self.aliases_of(account_id, index.name)
            return {**index.summary(), "settings": index.settings, **extra}

    def index_stats(self, api_key: str | None, name: str) -> dict[str, Any]:
        with self.lock:
            index = self._index(self._authenticate(api_key).account_id, name)
            return {
                "numberOfDocuments": len(index.docs),
                "numberOfVectors": 0,
                "numberOfTerms": len(index.search.postings),
            }

    def create_index(self, api_key: str | None, name: str, settings: dict[str, Any]) -> Index:
        index_name(name)
        with self.lock:
            account = self._authenticate(api_key)
            if (account.account_id, name) in self.indexes:
                raise Conflict(f"index '{name}' already exists")
            if (account.account_id, name) in self.aliases:
                raise Conflict(f"'{name}' is an alias; an index needs a name of its own")
            op = {
                "op": "index.create",
                "accountId": account.account_id,
                "name": name,
                "settings": settings,
                "createdAt": _now(),
            }
            self._commit(op)
            return self.indexes[(account.account_id, name)]

    def fork_index(
        self, account_id: str, source: str, target: str, fork_id: str
    ) -> tuple[dict[str, Any], bool]:
        """Copy settings and documents to a new index in one journal op, so a fork is
        whole or absent, never half-copied. Idempotent per `fork_id`: a worker that
        copied and died before reporting gets the same answer when it retries."""
        index_name(target, "target index name")
        with self.lock:
            self._account(account_id)
            existing = self.indexes.get((account_id, target))
            if existing is not None and existing.origin and existing.origin["forkId"] == fork_id:
                done = {**existing.origin, "target": target}
                return {**done, "numberOfDocuments": existing.origin.get(
                    "numberOfDocuments", len(existing.docs))}, False
            src = self._index(account_id, source)  # an alias names its index
            origin = {"source": src.name, "forkId": fork_id}
            if existing is not None or (account_id, target) in self.aliases:
                raise Conflict(f"index '{target}' already exists; pick another fork target")
            self._commit({"op": "index.fork", "accountId": account_id, "name": target,
                          "source": src.name, "forkId": fork_id, "createdAt": _now()})
            return {**origin, "target": target, "numberOfDocuments": len(src.docs)}, True

    def export_index(self, api_key: str | None, name: str) -> dict[str, Any]:
        """Settings and every document, read under the lock: one consistent copy."""
        with self.lock:
            index = self._index(self._authenticate(api_key).account_id, name)
            return {"indexName": index.name, "settings": index.settings,
                    "documents": list(index.docs.values())}

    def account_of(self, api_key: str | None) -> str:
        with self.lock:
            return self._authenticate(api_key).account_id

    def delete_index(self, api_key: str | None, name: str) -> None:
        with self.lock:
            account = self._authenticate(api_key)
            if (account.account_id, name) in self.aliases:
                raise BadRequest(f"'{name}' is an alias: DELETE /aliases/{name}, or delete "
                                 "its index by its own name")
            self._index(account.account_id, name)
            held = self.aliases_of(account.account_id, name)
            if held:
                raise Conflict(f"index '{name}' is the target of alias(es) {', '.join(held)}; "
                               "repoint or delete them first")
            self._commit({"op": "index.delete", "accountId": account.account_id, "name": name})

    def put_documents(
        self, api_key: str | None, name: str, documents: list[dict[str, Any]]
    ) -> list[str]:
        """Upsert; a document without `_id` gets a generated one. Returns the ids."""
        docs = [d if "_id" in d else {"_id": str(uuid.uuid4()), **d} for d in documents]
        with self.lock:
            account = self._authenticate(api_key)
            real = self._index(account.account_id, name).name
            op = {"op": "docs.put", "accountId": account.account_id, "name": real}
            self._commit({**op, "documents": docs})
        return [d["_id"] for d in docs]

    def get_document(self, api_key: str | None, name: str, doc_id: str) -> dict[str, Any]:
        with self.lock:
            index = self._index(self._authenticate(api_key).account_id, name)
            doc = index.docs.get(doc_id)
            if doc is None:
                raise NotFound(f"document '{doc_id}' not found in index '{name}'")
            return doc

    def delete_documents(
        self, api_key: str | None, name: str, ids: list[str], *, must_exist: bool
    ) -> list[str]:
        """Delete the ids that exist; with `must_exist`, an absent one is a 404."""
        with self.lock:
            account = self._authenticate(api_key)
            index = self._index(account.account_id, name)
            present = [i for i in ids if i in index.docs]
            if must_exist and len(present) < len(ids):
                missing = next(i for i in ids if i not in index.docs)
                raise NotFound(f"document '{missing}' not found in index '{name}'")
            if present:
                op = {"op": "docs.delete", "accountId": account.account_id, "name": index.name}
                self._commit({**op, "ids": present})
            return present

    def search(
        self,
        api_key: str | None,
        name: str,
        query: str,
        clauses: list[Clause],
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        with self.lock:
            index = self._index(self._authenticate(api_key).account_id, name)
            wanted = limit + offset
            allowed = index.search.filter_ids(clauses) if clauses else None
            if query.strip() in ("", "*"):
                ids = (i for i in index.docs if allowed is None or i in allowed)
                ranked = [(index.docs[i], 0.0) for i, _ in zip(ids, range(wanted), strict=False)]
            else:
                best = index.search.top(query, wanted, allowed)
                ranked = [(index.docs[i], s) for i, s in best]
            return [{**doc, "_score": round(s, 6)} for doc, s in ranked[offset:]]

    # -- changes, persistence ----------------------------------------------------

    def _commit(self, op: Op) -> None:
        """Journal first, then apply: an acknowledged change is on disk."""
        if self.closed:
            raise ServiceUnavailable("fake_cell is shutting down")
        if self.journal is not None and self.journal.deleted():
            # Its state folder removed under it: the changes acknowledged from then on
            # went into the deleted journal, and a kill -9 lost them all (s/6).
            log_error(f"fake_cell: {self.journal.journal_path} was deleted: writing the "
                      "state there again (a snapshot and a new journal)")
            self.journal.compact(self.snapshot())
        if self.journal is not None:
            self.journal.append(op)
        self.apply(op)
        if self.journal is not None and self.journal.wants_compaction():
            try:
                self.journal.compact(self.snapshot())
            except OSError as exc:  # the change is journaled: compaction can wait
                log_error(f"fake_cell: compaction put off to the next change: {exc}")

    def apply(self, op: Op) -> None:
        """Apply one op; tolerant of ops that no longer fit (replay never aborts)."""
        kind = op.get("op")
        if kind == "account.create":
            account = Account(op["accountId"], op["name"], op["apiKey"], op["createdAt"])
            self.accounts[account.account_id] = account
            self.by_key[account.api_key] = account.account_id
            return
        if kind in ("alias.put", "alias.delete"):
            self.apply_alias(op)
            return
        key = (op["accountId"], op["name"])
        if kind == "index.create":
            self.indexes[key] = Index(key[0], key[1], op["settings"], op["createdAt"])
        elif kind == "index.fork" and (key[0], op["source"]) in self.indexes:
            src = self.indexes[(key[0], op["source"])]
            fork = Index(key[0], key[1], dict(src.settings), op["createdAt"],
                         origin={"source": op["source"], "forkId": op["forkId"],
                                 "numberOfDocuments": len(src.docs)})
            self.indexes[key] = fork
            for doc in src.docs.values():
                fork.docs[doc["_id"]] = doc
                fork.search.add(doc["_id"], doc)
        elif kind == "index.delete":
            self.indexes.pop(key, None)
        elif kind == "docs.put" and key in self.indexes:
            index = self.indexes[key]
            for doc in op["documents"]:
                index.docs.pop(doc["_id"], None)  # an upsert moves to the end, like a new doc
                index.docs[doc["_id"]] = doc
                index.search.add(doc["_id"], doc)
        elif kind == "docs.delete" and key in self.indexes:
            index = self.indexes[key]
            for doc_id in op["ids"]:
                index.docs.pop(doc_id, None)
                index.search.remove(doc_id)

    def snapshot(self) -> dict[str, Any]:
        return {
            "accounts": [{**a.public(), "apiKey": a.api_key} for a in self.accounts.values()],
            "indexes": [
                {
                    "accountId": ix.account_id,
                    "name": ix.name,
                    "settings": ix.settings,
                    "createdAt": ix.created_at,
                    "origin": ix.origin,
                    "documents": list(ix.docs.values()),
                }
                for ix in self.indexes.values()
            ],
            "aliases": [{"accountId": a, "name": n, "index": t}
                        for (a, n), t in self.aliases.items()],
        }

    def restore(self, snapshot: dict[str, Any], ops: list[Op]) -> None:
        """Rebuild from a snapshot plus the journal ops written after it."""
        for a in snapshot.get("accounts", []):
            self.apply({"op": "account.create", **a})
        for ix in snapshot.get("indexes", []):
            base = {"accountId": ix["accountId"], "name": ix["name"]}
            self.apply({"op": "index.create", **base, **ix})
            self.indexes[(ix["accountId"], ix["name"])].origin = ix.get("origin")
            self.apply({"op": "docs.put", **base, "documents": ix["documents"]})
        for alias in snapshot.get("aliases", []):
            self.apply({"op": "alias.put", **alias})
        for op in ops:
            self.apply(op)

    def close(self) -> None:
        """Refuse further writes, compact the journal into a snapshot, release files."""
        with self.lock:
            self.closed = True
            if self.journal is not None:
                if self.journal.has_entries():
                    self.journal.compact(self.snapshot())
                self.journal.close()

    def counts(self) -> dict[str, int]:
        return {"accounts": len(self.accounts), "indexes": len(self.indexes)}
