"""Text onboarding's feed parser (admin_server/text_feed.py): CSV and one-per-line feeds
become documents with stable ids; every bad row is named by its line before anything is
accepted. The HTTP route is exercised against a real ecom stack in test_e2e_suite.py."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hippo_platform.services.admin_server.text_feed import documents_from
from hippo_platform.services.common import BadRequest, PayloadTooLarge

cell_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                    min_size=1, max_size=20)


@given(st.lists(st.tuples(cell_text, cell_text), min_size=1, max_size=30,
                unique_by=lambda row: row[0].strip()))
def test_csv_rows_round_trip(rows: list[tuple[str, str]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "title"])
    writer.writerows(rows)
    docs = documents_from("csv", out.getvalue())
    assert [(d["_id"], d["title"]) for d in docs] == [(i.strip(), t.strip()) for i, t in rows]


def test_ids_are_stable_so_a_retried_feed_overwrites() -> None:
    first = documents_from("lines", "blue mug\n\n  red mug  \n")
    assert [d["text"] for d in first] == ["blue mug", "red mug"]
    assert first == documents_from("lines", "blue mug\nred mug\n")
    no_id = documents_from("csv", "title,color\nmug,blue\n")
    assert no_id == documents_from("csv", "title,color\nmug,blue\n")
    assert no_id[0]["_id"].startswith("t-") and no_id[0]["color"] == "blue"


@pytest.mark.parametrize(("fmt", "text", "message"), [
    ("csv", "", "the CSV is empty"),
    ("csv", "id,title\n", "no products"),
    ("lines", "\n  \n", "no products"),
    ("csv", "id,title\n1,a\n2,b,c\n", "CSV line 3: 3 fields, the header names 2"),
    ("csv", "id,id\n1,2\n", "every column once"),
    ("csv", "id,,x\n1,2,3\n", "every column once"),
    ("csv", "id,_score\n1,2\n", "'_score'"),
    ("csv", "id,title\n1,a\n1,b\n", "products 1 and 2 share the id '1'"),
    ("csv", 'id,title\n1,"unclosed\n', "CSV line"),
    ("lines", "same\nsame\n", "share the id"),
])
def test_bad_feeds_are_named(fmt: str, text: str, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        documents_from(fmt, text)
    assert message in caught.value.message


def test_a_feed_too_large_is_413() -> None:
    with pytest.raises(PayloadTooLarge):
        documents_from("lines", "\n".join(f"p{i}" for i in range(10_001)))


@pytest.mark.parametrize("kind", ["text/csv", "text/plain; charset=utf-8"])
def test_a_feed_saved_with_a_byte_order_mark_reads_past_it(kind: str) -> None:
    """A CSV saved by Excel or a Windows editor starts with a UTF-8 BOM: it was read as
    part of the first header or line (JSON bodies already read past one)."""
    from hippo_platform.services.admin_server.text_feed import read_feed
    from hippo_platform.services.common.messages import Request

    text = "id,title\r\nsku-1,walnut desk\r\n"
    req = Request("POST", "/feed", {}, {"content-type": kind}, b"\xef\xbb\xbf" + text.encode())
    assert read_feed(req)[1] == text


def test_a_line_feed_splits_at_line_breaks_only() -> None:
    """A product whose text held U+2028 became two products (adv31 s/3)."""
    docs = documents_from("lines", "walnut\u2028desk\r\noak chair\n")
    assert [d["text"] for d in docs] == ["walnut\u2028desk", "oak chair"]
