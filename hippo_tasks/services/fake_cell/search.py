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

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from hippo_tasks.services.common.errors import BadRequest

_TOKEN = re.compile(r"\w+")
_CLAUSE = re.compile(r'\s*([A-Za-z_][\w.\-]*):("(?:[^"\\]|\\.)*"|[^\s"]+)\s*')
_AND = re.compile(r"AND\b")
K1 = 1.2
B = 0.75


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


class SearchIndex:
    """Postings (term -> {doc id: term frequency}) plus document lengths."""

    def __init__(self) -> None:
        self.postings: dict[str, dict[str, int]] = {}
        self.lengths: dict[str, int] = {}
        self.terms: dict[str, tuple[str, ...]] = {}
        self.total_length = 0

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

    def remove(self, doc_id: str) -> None:
        if doc_id not in self.lengths:
            return
        for term in self.terms.pop(doc_id):
            plist = self.postings[term]
            del plist[doc_id]
            if not plist:
                del self.postings[term]
        self.total_length -= self.lengths.pop(doc_id)

    def score(self, query: str) -> dict[str, float]:
        """BM25 score of every document holding at least one query term."""
        n = len(self.lengths)
        if n == 0:
            return {}
        avg = (self.total_length / n) or 1.0
        lengths = self.lengths
        base = K1 * (1.0 - B)  # BM25's k1 * (1 - b + b * len / avg), split into two terms
        norm = K1 * B / avg
        scores: dict[str, float] = {}
        for term in set(tokenize(query)):
            plist = self.postings.get(term)
            if not plist:
                continue
            df = len(plist)
            idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
            for doc_id, tf in plist.items():
                gain = idf * tf * (K1 + 1.0) / (tf + base + norm * lengths[doc_id])
                scores[doc_id] = scores.get(doc_id, 0.0) + gain
        return scores


Clause = tuple[str, str]


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


def _value_matches(value: Any, wanted: str) -> bool:
    if isinstance(value, list):
        return any(_value_matches(item, wanted) for item in value)
    if isinstance(value, bool):
        return wanted == ("true" if value else "false")
    if isinstance(value, int | float):
        try:
            return float(wanted) == float(value)
        except ValueError:
            return False
    if isinstance(value, str):
        return value == wanted
    return False


def matches(doc: dict[str, Any], clauses: Iterable[Clause]) -> bool:
    return all(field in doc and _value_matches(doc[field], want) for field, want in clauses)
