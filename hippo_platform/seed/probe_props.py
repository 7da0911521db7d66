"""`probes --full`: properties of search that must hold for any documents, checked with
hypothesis against the running stack.

- found: a document added is found by each of its unique terms, and only it;
- filter: the hits with a filter are a subset of those without, and exactly the
  documents the filter names;
- pin: a pin rule stored through admin_server puts its document first in a search
  through search_proxy and global_worker (full profile; skipped when they do not run);
- deleted: a deleted document is never found, nor fetched;
- fork: a fork of an index holds exactly its source's documents (skipped when the cell
  has no fork route).

Documents are drawn with awkward ids (slashes, spaces, percent signs, any script) and
text in any script around the terms the property is about; those terms are made
unique per example, so earlier examples in the same index cannot change the answer.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from hippo_platform.seed.probe_runner import SKIP, Budget, Result, run_property
from hippo_platform.seed.probe_target import Target, seg

PIN_WAIT_S = 5.0  # global_worker caches rules for 1 s by default
_serial = itertools.count(1)
Prop = tuple[st.SearchStrategy[Any], Callable[[Any], None]]  # what to draw, what must hold

words = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=8)
filler = st.lists(words, max_size=5).map(" ".join)
doc_ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]),
                  min_size=1, max_size=12)
field_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
colors = st.text(st.sampled_from('ab "\\:'), min_size=1, max_size=5)


def term() -> str:
    """A term no other document has: ASCII, one token for the cell's tokenizer."""
    return f"hpz{next(_serial)}x{secrets.token_hex(5)}"


def unique_id(drawn: str) -> str:
    return f"{next(_serial)}-{drawn}"


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A document: an awkward id and up to four fields of text, lists or numbers."""
    fields = draw(st.dictionaries(field_names.filter(lambda f: f != "color"),
                                  st.one_of(filler, st.lists(words, max_size=3),
                                            st.integers(-10**6, 10**6), st.booleans()),
                                  max_size=4))
    return {"_id": draw(doc_ids), **fields}


def add(target: Target, index: str, docs: list[dict[str, Any]]) -> None:
    answer = target.cell("POST", f"/indexes/{seg(index)}/documents", {"documents": docs})
    body = target.need(answer)
    assert not body.get("errors"), f"adding documents reported errors: {body!r}"


def with_terms(doc: dict[str, Any], terms: list[str], before: str, after: str) -> dict[str, Any]:
    """The document with the terms placed in a text field between drawn text."""
    text = f"{before} {' '.join(terms)} {after}"
    return {**doc, "_id": unique_id(doc["_id"]), "probe_text": text}


def prop_found(target: Target, index: str) -> Prop:
    def check(case: tuple[dict[str, Any], int, str, str]) -> None:
        doc, n_terms, before, after = case
        terms = [term() for _ in range(n_terms)]
        doc = with_terms(doc, terms, before, after)
        add(target, index, [doc])
        for one in terms:
            ids = target.search_ids(index, one)
            assert ids == [doc["_id"]], (
                f"searching its unique term {one!r} gave {ids!r}, not [{doc['_id']!r}]")

    return st.tuples(documents(), st.integers(1, 3), filler, filler), check


def prop_filter(target: Target, index: str) -> Prop:
    def check(case: tuple[list[tuple[dict[str, Any], str]], str]) -> None:
        pairs, wanted = case
        shared = term()
        docs = [{**with_terms(d, [shared], "", ""), "color": c} for d, c in pairs]
        add(target, index, docs)
        everything = target.search_ids(index, shared)
        escaped = wanted.replace("\\", "\\\\").replace('"', '\\"')
        filtered = target.search_ids(index, shared, filter_text=f'color:"{escaped}"')
        extra = set(filtered) - set(everything)
        assert not extra, f"filtered hits {sorted(extra)!r} are not among the unfiltered hits"
        expected = {d["_id"] for d in docs if d["color"] == wanted}
        assert set(filtered) == expected, (
            f"filter color:{wanted!r} gave {sorted(filtered)!r}, expected {sorted(expected)!r}")

    pairs = st.lists(st.tuples(documents(), colors), min_size=1, max_size=6)
    return st.tuples(pairs, colors), check


def prop_pin(target: Target, index: str) -> Prop:
    admin = {"Authorization": f"Bearer {target.key}"}

    def check(case: tuple[list[dict[str, Any]], int, bool, str]) -> None:
        raw, pick, matching, casing = case
        query = term()
        docs = [with_terms(d, [query], "", "") for d in raw]
        pinned = docs[pick % len(docs)]
        if not matching:  # pinned although the query does not find it: fetched and inserted
            pinned["probe_text"] = "not the query"
        add(target, index, docs)
        rule_id = f"probe-{next(_serial)}"
        rule_query = f"  {query.upper() if casing == 'upper' else query} "
        path = f"/api/v1/indexes/{seg(index)}/merchandising/rules/{rule_id}"
        target.need(target.at("admin_server", "PUT", path,
                              {"action": "pin", "documentId": pinned["_id"],
                               "query": rule_query}, headers=admin))
        try:
            deadline = time.monotonic() + PIN_WAIT_S
            while True:
                ids = target.search_ids(index, query, via="search_proxy", limit=10)
                if ids[:1] == [pinned["_id"]] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert ids[:1] == [pinned["_id"]], (
                f"pin rule {rule_query!r} -> {pinned['_id']!r}: search_proxy answered {ids!r} "
                f"for {PIN_WAIT_S:g} s")
        finally:
            target.at("admin_server", "DELETE", path, headers=admin)

    strategy = st.tuples(st.lists(documents(), min_size=1, max_size=4), st.integers(0, 3),
                         st.booleans(), st.sampled_from(["same", "upper"]))
    return strategy, check


def prop_deleted(target: Target, index: str) -> Prop:
    def check(case: tuple[dict[str, Any], bool]) -> None:
        doc, batch = case
        mine = term()
        doc = with_terms(doc, [mine], "", "")
        add(target, index, [doc])
        assert target.search_ids(index, mine) == [doc["_id"]], "not found before the delete"
        if batch:
            target.need(target.cell("POST", f"/indexes/{seg(index)}/documents/delete-batch",
                                    {"documentIds": [doc["_id"]]}))
        else:
            target.need(target.cell("DELETE", f"/indexes/{seg(index)}/documents/"
                                    + seg(doc["_id"])))
        ids = target.search_ids(index, mine)
        assert doc["_id"] not in ids, f"deleted {doc['_id']!r} is still found: {ids!r}"
        fetched = target.cell("GET", f"/indexes/{seg(index)}/documents/{seg(doc['_id'])}")
        assert fetched.status_code == 404, f"deleted document still fetched: {fetched.text()}"

    return st.tuples(documents(), st.booleans()), check


def prop_fork(target: Target, index: str) -> Prop:
    def check(docs: list[dict[str, Any]]) -> None:
        source = target.new_index("fork-src")
        fork = f"{source}-fork"
        try:
            docs = [{**d, "_id": unique_id(d["_id"])} for d in docs]
            if docs:
                add(target, source, docs)
            target.need(target.cell("POST", f"/indexes/{seg(source)}/fork", {"target": fork}))
            ids = target.search_ids(fork, "")
            assert sorted(ids) == sorted(d["_id"] for d in docs), (
                f"the fork holds {sorted(ids)!r}, its source {sorted(d['_id'] for d in docs)!r}")
            for doc in docs:
                got = target.need(target.cell("GET", f"/indexes/{seg(fork)}/documents/"
                                              + seg(doc["_id"])))
                assert {k: v for k, v in got.items() if not k.startswith("_")} == {
                    k: v for k, v in doc.items() if not k.startswith("_")}, (
                    f"forked {doc['_id']!r} differs: {got!r}")
        finally:
            target.drop_index(fork)
            target.drop_index(source)

    return st.lists(documents(), max_size=5), check


def fork_missing(target: Target, index: str) -> str | None:
    """Why the fork property cannot run, or None when the cell can fork."""
    probe = target.cell("POST", f"/indexes/{seg(index)}/fork", {"target": ""})
    if probe.status_code in (404, 405):
        return f"the cell has no fork route (POST /indexes/NAME/fork answered {probe.status_code})"
    return None


def run_all(target: Target, *, examples: int, budget: Budget, seed: int) -> list[Result]:
    index = target.new_index("full")
    results: list[Result] = []
    try:
        plan: list[tuple[str, Any, int, str | None]] = [
            ("found by unique terms", prop_found, examples, None),
            ("filter is a subset", prop_filter, examples, None),
            ("pin rule comes first", prop_pin, max(3, examples // 5), _pin_missing(target)),
            ("deleted never found", prop_deleted, examples, None),
            ("fork holds its source", prop_fork, max(3, examples // 5),
             fork_missing(target, index)),
        ]
        for name, make, count, missing in plan:
            if missing is not None:
                results.append(Result(name, SKIP, text=missing))
                continue
            strategy, check = make(target, index)
            results.append(run_property(name, strategy, check, examples=count, budget=budget,
                                        seed=seed))
    finally:
        target.drop_index(index)
    return results


def _pin_missing(target: Target) -> str | None:
    absent = [s for s in ("admin_server", "search_proxy", "global_worker")
              if not target.serving(s)]
    if absent:
        return f"needs {', '.join(absent)} serving (the full profile runs them all)"
    return None
