"""Search analytics at the gateway: every search it forwards is an event, and clients
post what users did with the results (click, add_to_cart, purchase) against its
`queryId`; a summary per index counts them.

Why at search_proxy: it is the one door every search goes through (as the reference's
analytics tracking sits at the edge), so nothing needs to be instrumented twice.
Events are scoped by a hash of the API key (the proxy knows no accounts; one tenant
never sees another's numbers) and appended to a JSON Lines file under the state folder
before they are acknowledged, so they survive restarts; a cut-short last line (a
kill -9 mid-write) is skipped on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from hippo_platform.services.common.errors import BadRequest, NotFound
from hippo_platform.services.common.log import log_line
from hippo_platform.services.common.state import append_whole, open_own, own_folder

ACTIONS = ("click", "add_to_cart", "purchase")
MAX_EVENTS = 500


def scope_of(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class IndexStats:
    __slots__ = ("searches", "zero_results", "queries", "actions", "documents",
                 "clicked_queries")

    def __init__(self) -> None:
        self.searches = 0
        self.zero_results: Counter[str] = Counter()
        self.queries: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.documents: Counter[str] = Counter()
        self.clicked_queries: set[str] = set()


class Analytics:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.queries: dict[str, tuple[str, str]] = {}  # queryId -> (scope, index)
        self.stats: dict[tuple[str, str], IndexStats] = {}
        self.skipped = 0
        if path is not None:
            own_folder(path.parent)
            if os.path.lexists(path):
                self._load(path)

    def _load(self, path: Path) -> None:
        # never through a link: it read the file it led to, and wrote into it (adv54 F8)
        with os.fdopen(open_own(path, os.O_RDWR | os.O_APPEND), "r+b") as handle:
            text = handle.read().decode("utf-8", errors="replace")
            if text and not text.endswith("\n"):
                handle.write(b"\n")  # end a cut-short line: the next event is not glued on
        for line in text.splitlines():
            try:
                event = json.loads(line)
                self._apply(event)
            except (ValueError, KeyError, TypeError):
                self.skipped += 1

    def _append(self, events: list[dict[str, Any]]) -> None:
        if self.path is None:
            return
        # All or nothing: a disk that filled mid-write left a partial line, and the next
        # acknowledged event, glued onto it, was dropped with it at the next start (q/2).
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        try:
            append_whole(self.path, data.encode("utf-8"))
        except FileNotFoundError:  # its folder deleted under it (`git clean -xdf`): every
            self.path.parent.mkdir(parents=True, exist_ok=True)  # search answered 500
            log_line(f"search_proxy: {self.path.parent} was deleted: analytics start "
                     "again in a new file there")  # for the rest of the run (q/11)
            append_whole(self.path, data.encode("utf-8"))

    def _apply(self, event: dict[str, Any]) -> None:
        key = (event["scope"], event["index"])
        stats = self.stats.setdefault(key, IndexStats())
        if event["type"] == "search":
            self.queries[event["queryId"]] = key
            stats.searches += 1
            query = str(event.get("q", "")).strip().lower()
            stats.queries[query] += 1
            if event.get("hits", 0) == 0:
                stats.zero_results[query] += 1
        else:
            stats.actions[event["type"]] += 1
            stats.documents[event["documentId"]] += 1
            if event["type"] == "click":
                stats.clicked_queries.add(event["queryId"])

    def record_search(self, api_key: str, index: str, query: str, hits: int) -> str:
        query_id = "q-" + secrets.token_hex(8)
        event = {"type": "search", "scope": scope_of(api_key), "index": index,
                 "queryId": query_id, "q": query[:500], "hits": hits}
        with self.lock:
            self._append([event])
            self._apply(event)
        return query_id

    def record_actions(self, api_key: str, raw: list[Any]) -> int:
        """All or nothing: every event is checked before any is kept."""
        if not raw or len(raw) > MAX_EVENTS:
            raise BadRequest(f"'events' must hold 1 to {MAX_EVENTS} events")
        scope = scope_of(api_key)
        events = []
        with self.lock:
            for n, item in enumerate(raw):
                if not isinstance(item, dict):
                    raise BadRequest(f"events[{n}] must be a JSON object")
                kind, query_id, doc = item.get("type"), item.get("queryId"), item.get("documentId")
                if kind not in ACTIONS:
                    raise BadRequest(f"events[{n}].type must be one of {', '.join(ACTIONS)}")
                if not isinstance(query_id, str) or not isinstance(doc, str) or not doc:
                    raise BadRequest(f"events[{n}] needs 'queryId' (from a search answer) "
                                     "and 'documentId' strings")
                owner = self.queries.get(query_id)
                if owner is None or owner[0] != scope:
                    raise NotFound(f"events[{n}]: query '{query_id}' not found; use the "
                                   "queryId a search through search_proxy answered")
                events.append({"type": kind, "scope": scope, "index": owner[1],
                               "queryId": query_id, "documentId": doc})
            self._append(events)
            for event in events:
                self._apply(event)
        return len(events)

    def summary(self, api_key: str, index: str) -> dict[str, Any]:
        with self.lock:
            stats = self.stats.get((scope_of(api_key), index))
            if stats is None:
                raise NotFound(f"no analytics for index '{index}': search it through "
                               "search_proxy first")
            return {
                "index": index,
                "searches": stats.searches,
                "clicks": stats.actions["click"],
                "addToCarts": stats.actions["add_to_cart"],
                "purchases": stats.actions["purchase"],
                "clickThroughRate": round(len(stats.clicked_queries) / stats.searches, 4)
                if stats.searches else 0.0,
                "topQueries": [{"q": q, "count": c} for q, c in stats.queries.most_common(10)],
                "zeroResultQueries": [{"q": q, "count": c}
                                      for q, c in stats.zero_results.most_common(10)],
                "topDocuments": [{"documentId": d, "count": c}
                                 for d, c in stats.documents.most_common(10)],
            }
