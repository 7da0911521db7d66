"""Text onboarding: a catalog given as text (a CSV with a header row, or one product
per line) becomes the documents of an ordinary upload.

Why ids are derived: a text feed usually has no ids, and onboarding is retried; an id
taken from the `_id` (or `id`) column, else from a hash of the line, makes uploading
the same feed twice overwrite rather than duplicate. Every row is checked before any
document is accepted, and a bad row is named by its line number.
"""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any

from hippo_platform.services.common import BadRequest, PayloadTooLarge, Request
from hippo_platform.services.common.messages import text_lines

FORMATS = ("csv", "lines")
MAX_DOCUMENTS = 10_000
CONTENT_TYPES = {"text/csv": "csv", "text/plain": "lines"}


def read_feed(req: Request) -> tuple[str, str]:
    """(format, text) from a JSON body {"format", "text"} or a text/csv, text/plain body."""
    kind = (req.header("content-type") or "").split(";")[0].strip().lower()
    if kind in CONTENT_TYPES:
        try:
            return CONTENT_TYPES[kind], req.body.decode("utf-8-sig")  # past a BOM
        except UnicodeDecodeError:
            raise BadRequest("the feed must be UTF-8 text") from None
    body = req.json_object()
    fmt, text = body.get("format", "csv"), body.get("text")
    if fmt not in FORMATS:
        raise BadRequest(f"field 'format' must be one of {', '.join(FORMATS)}")
    if not isinstance(text, str):
        raise BadRequest("field 'text' is required and must be a string (the feed itself); "
                         "or send the feed as a text/csv or text/plain body")
    return str(fmt), text


def documents_from(fmt: str, text: str) -> list[dict[str, Any]]:
    docs = _csv(text) if fmt == "csv" else _lines(text)
    if not docs:
        raise BadRequest("the feed holds no products")
    if len(docs) > MAX_DOCUMENTS:
        raise PayloadTooLarge(f"the feed holds {len(docs)} products, over {MAX_DOCUMENTS} per "
                              "upload: split it")
    seen: dict[str, int] = {}
    for n, doc in enumerate(docs):
        if doc["_id"] in seen:
            raise BadRequest(f"products {seen[doc['_id']] + 1} and {n + 1} share the id "
                             f"{doc['_id']!r}")
        seen[doc["_id"]] = n
    return docs


def _line_id(text: str) -> str:
    return "t-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _lines(text: str) -> list[dict[str, Any]]:
    return [{"_id": _line_id(line.strip()), "text": line.strip()}
            for line in text_lines(text) if line.strip()]


def _csv(text: str) -> list[dict[str, Any]]:
    rows = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(rows)
    except StopIteration:
        raise BadRequest("the CSV is empty: its first line must name the columns") from None
    except csv.Error as exc:
        raise BadRequest(f"CSV line 1: {exc}") from None
    names = [h.strip() for h in header]
    if not any(names) or len(set(names)) < len(names) or "" in names:
        raise BadRequest("CSV line 1 must name every column once (no empty or repeated names)")
    bad = [n for n in names if n.startswith("_") and n != "_id"]
    if bad:
        raise BadRequest(f"CSV column {bad[0]!r}: names starting with '_' are reserved")
    docs = []
    try:
        for row in rows:
            line = rows.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise BadRequest(f"CSV line {line}: {len(row)} fields, the header names "
                                 f"{len(names)}")
            doc = {k: v.strip() for k, v in zip(names, row, strict=True) if v.strip()}
            given = doc.pop("_id", None) or doc.get("id")
            doc["_id"] = given or _line_id(",".join(row))
            docs.append(doc)
    except csv.Error as exc:
        raise BadRequest(f"CSV line {rows.line_num}: {exc}") from None
    return docs
