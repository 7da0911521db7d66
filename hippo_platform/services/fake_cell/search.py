"""Lexical search for fake_cell: tokenising, an inverted index with BM25, and filters.

Ranking is Okapi BM25 (k1=1.2, b=0.75) over one bag of words per document, built from
every string field (and strings inside list fields) except `_id` and other `_` fields.
Tokens are lower-cased runs of letters, digits and underscore (`\\w+`), no stemming:
enough for "a document matching more query terms ranks first" to hold, and
predictable for tests. The index is updated on every add and delete, so a search
costs only the postings of its query terms, not a scan of the documents.

Filter syntax (Marqo-like, equality only):
    field:value                  exact match; value without spaces
    field:"value with spaces"    quotes allow spaces; \\" and \\\\ escape
    a:x AND b:"y z"              clauses joined by AND (upper case), all must hold
A string field matches the text exactly (case-sensitive); a number matches when the
value parses to the same number (`price:10` matches 10 and 10.0); a boolean matches
`true`/`false`; a list field matches when any element does. An empty `q` or `*`
matches every document (score 0, insertion order), so a filter can be used alone.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from hippo_platform.services.common.errors import BadRequest

_TOKEN = re.compile(r"\w+")
_CLAUSE = re.compile(r'\s*([A-Za-z_][\w.\-]*):("(?:[^"\\]|\\.)*"|[^\s"]+)\s*')
_AND = re.compile(r"AND\b")
K1 = 1.2
B = 0.75


Clause = tuple[str, str]


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _strings(doc: dict[str, Any]) -> Iterator[str]:
    for key, value in doc.items():
        if key.startswith("_"):
            continue
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from (item for item in value if isinstance(item, str))


FilterKey = tuple[str, Any]


def _filter_keys(value: Any) -> Iterator[FilterKey]:
    """The keys under which a field value is found by an equality filter."""
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, list):
                yield from _filter_keys(item)
    elif isinstance(value, bool):
        yield ("s", "true" if value else "false")
    elif isinstance(value, int | float):
        yield ("n", float(value))
    elif isinstance(value, str):
        yield ("s", value)


class SearchIndex:
    """Postings (term -> {doc id: term frequency}), document lengths, and an equality
    index (field -> value key -> doc ids) so filters cost set operations, not scans."""

    def __init__(self) -> None:
        self.postings: dict[str, dict[str, int]] = {}
        self.lengths: dict[str, int] = {}
        self.terms: dict[str, tuple[str, ...]] = {}
        self.total_length = 0
        self.values: dict[str, dict[FilterKey, set[str]]] = {}
        self.value_keys: dict[str, list[tuple[str, FilterKey]]] = {}

    def add(self, doc_id: str, doc: dict[str, Any]) -> None:
        if doc_id in self.lengths:
            self.remove(doc_id)
        counts: Counter[str] = Counter()
        for text in _strings(doc):
            counts.update(tokenize(text))
        for term, tf in counts.items():
            self.postings.setdefault(term, {})[doc_id] = tf
        length = sum(counts.values())
        self.lengths[doc_id] = length
        self.terms[doc_id] = tuple(counts)
        self.total_length += length
        keys = [(f, k) for f, v in doc.items() for k in _filter_keys(v)]
        for field, key in keys:
            self.values.setdefault(field, {}).setdefault(key, set()).add(doc_id)
        self.value_keys[doc_id] = keys

    def remove(self, doc_id: str) -> None:
        if doc_id not in self.lengths:
            return
        for term in self.terms.pop(doc_id):
            plist = self.postings[term]
            del plist[doc_id]
            if not plist:
                del self.postings[term]
        self.total_length -= self.lengths.pop(doc_id)
        for field, key in self.value_keys.pop(doc_id):
            ids = self.values[field][key]
            ids.discard(doc_id)
            if not ids:
                del self.values[field][key]

    def filter_ids(self, clauses: list[Clause]) -> set[str]:
        """Ids of the documents matching every clause."""
        result: set[str] | None = None
        for field, wanted in clauses:
            by_key = self.values.get(field, {})
            ids = set(by_key.get(("s", wanted), ()))
            try:
                number = float(wanted)
            except ValueError:
                pass
            else:
                ids |= by_key.get(("n", number), set())
            result = ids if result is None else result & ids
            if not result:
                return set()
        return result if result is not None else set(self.lengths)

    def top(self, query: str, k: int, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """The k best (doc id, BM25 score) among docs holding a query term (and in
        `allowed`, when given).

        Exact, with MaxScore-style pruning: terms are taken rarest first, and once the
        k-th best score so far beats the most the remaining terms could add
        (idf * (k1 + 1) each), documents not yet seen cannot enter the top k, so the
        common terms only refine known candidates instead of walking postings that
        span most of the index.
        """
        n = len(self.lengths)
        if n == 0 or k <= 0:
            return []
        avg = (self.total_length / n) or 1.0
        base = K1 * (1.0 - B)  # BM25's k1 * (1 - b + b * len / avg), split into two terms
        norm = K1 * B / avg
        lengths = self.lengths
        terms: list[tuple[float, str, dict[str, int]]] = []
        for term in set(tokenize(query)):
            plist = self.postings.get(term)
            if plist:
                df = len(plist)
                weight = math.log(1.0 + (n - df + 0.5) / (df + 0.5)) * (K1 + 1.0)
                terms.append((weight, term, plist))
        terms.sort(key=lambda t: (-t[0], t[1]))
        remaining = sum(t[0] for t in terms)
        scores: dict[str, float] = {}
        pruned = False
        for weight, _term, plist in terms:
            if not pruned and len(scores) >= k:
                pruned = heapq.nlargest(k, scores.values())[-1] >= remaining
            remaining -= weight
            if pruned:
                for doc_id, score in scores.items():
                    tf = plist.get(doc_id)
                    if tf:
                        scores[doc_id] = score + weight * tf / (tf + base + norm * lengths[doc_id])
            elif allowed is not None and len(allowed) < len(plist):
                for doc_id in allowed:
                    tf = plist.get(doc_id)
                    if tf:
                        gain = weight * tf / (tf + base + norm * lengths[doc_id])
                        scores[doc_id] = scores.get(doc_id, 0.0) + gain
            else:
                for doc_id, tf in plist.items():
                    if allowed is None or doc_id in allowed:
                        gain = weight * tf / (tf + base + norm * lengths[doc_id])
                        scores[doc_id] = scores.get(doc_id, 0.0) + gain
        best = heapq.nlargest(k, scores, key=scores.__getitem__)
        return [(doc_id, scores[doc_id]) for doc_id in best]


def parse_filter(text: str) -> list[Clause]:
    """`field:value AND ...` into (field, value) pairs; anything else is a 400."""
    clauses: list[Clause] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        if clauses:
            joiner = _AND.match(text, pos)
            if joiner is None:
                raise BadRequest(f"bad filter {text!r}: expected AND at position {pos}")
            pos = joiner.end()
        clause = _CLAUSE.match(text, pos)
        if clause is None:
            raise BadRequest(
                f"bad filter {text!r} at position {pos}: "
                'expected field:value or field:"quoted value"'
            )
        field, raw = clause.group(1), clause.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        clauses.append((field, raw))
        pos = clause.end()
    return clauses
