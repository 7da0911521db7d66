"""The PostgreSQL store: nothing accepted is lost across restarts or kill -9.

Connections are in autocommit mode, so each statement is its own transaction and is
committed when `execute` returns: `add` returns only after the row is durable, and the
service answers 201 only after `add` returns. Batch ids are chosen before the insert and
the insert is `ON CONFLICT DO NOTHING`, so retrying it on a fresh connection (after a
server restart broke the pooled one) can never store a batch twice.

A handful of pooled connections, opened lazily, is enough for a local stack; psycopg's
own pool is a separate package and would be one more dependency for a few lines.
This module is the only one that imports psycopg, so the memory store never needs it.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from hippo_platform.services.common.errors import BadRequest
from hippo_platform.services.ecom_ingest.store import (
    DONE,
    FAILED,
    PENDING,
    STATUSES,
    Batch,
    NewBatch,
    StoreUnavailable,
)

TABLE = "ecom_ingest_batches"
POOL_SIZE = 8
CONNECT_TIMEOUT_S = 5
CHECKOUT_TIMEOUT_S = 10.0
_SCHEMA_LOCK = 0x6563_6F6D  # advisory lock id: two ingests starting at once

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq        BIGSERIAL PRIMARY KEY,
    batch_id   TEXT NOT NULL UNIQUE,
    index_name TEXT NOT NULL,
    account_id TEXT NOT NULL,
    api_key    TEXT NOT NULL,
    doc_count  INTEGER NOT NULL,
    status     TEXT NOT NULL DEFAULT '{PENDING}',
    documents  JSONB,
    error      TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {TABLE}_status_seq ON {TABLE} (status, seq);
"""
_COLUMNS = (
    "batch_id, index_name, account_id, api_key, doc_count, status, documents, error, "
    "created_at, updated_at"
)

T = TypeVar("T")


class DatabaseUnreachable(RuntimeError):
    """Start-up could not reach or prepare the database; the message says which and why."""


def redact_url(url: str) -> str:
    """Where the URL points, without anything secret, fit for a log line: user, host,
    port and database only. Hiding `user:password@` alone printed a password given as
    `?password=` or in libpq's `key=value` form, both of which psycopg takes."""
    if _two_ats(url):
        return "(a database URL with more than one '@' before its host; it is not shown, " \
               "as it may hold a password: write an '@' in a password as %40)"
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "(a database URL that cannot be read; it is not shown, as it may hold a " \
               "password)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    hidden = " (password hidden)" if parts.get("password") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}{hidden}"


# Where a password is written in a connection string: a URL's `user:password@`, and
# `password=` as a URL query parameter or a libpq keyword (bare, or quoted with \-escapes).
_URL_PASSWORD = re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s/@]*@")
_PASSWORD_EQUALS = re.compile(r"(?P<keep>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&']+)")


def hide_passwords(text: str) -> str:
    """`text` with a password hidden where one is written, and nowhere else. Replacing the
    password's own text everywhere garbled the driver's sentence when the password was
    short ('e' made 'conn***ction fail***d'), and the pattern of *** spelt it out."""
    text = _URL_PASSWORD.sub(r"\g<keep>***@", text)
    return _PASSWORD_EQUALS.sub(r"\g<keep>***", text)


def _two_ats(url: str) -> bool:
    """A URL whose userinfo holds a second '@' (a password with an '@' not written as
    %40): libpq splits at the first, and the rest of the password became the "host",
    shown in the URL and in the driver's every sentence."""
    scheme, sep, rest = url.partition("://")
    return bool(sep) and rest.split("/", 1)[0].split("?", 1)[0].count("@") > 1


def _describe(exc: BaseException, url: str) -> str:
    if _two_ats(url):  # the driver's text names the password's tail as the host
        return "its URL has more than one '@' before the host (write an '@' in a " \
               "password as %40)"
    try:
        conninfo_to_dict(url)
    except psycopg.Error:
        return "the URL could not be read (check its form: postgresql://user@host:port/db)"
    return hide_passwords(" ".join(str(exc).split()))


def _missing_database(exc: psycopg.OperationalError) -> bool:
    return bool(re.search(r'database "[^"]+" does not exist', str(exc)))


class PostgresStore:
    kind = "postgres"

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)

    @classmethod
    def open(cls, url: str) -> PostgresStore:
        """Connect, create the database if the server lacks it, create the schema."""
        store = cls(url)
        try:
            try:
                conn = store._connect()
            except psycopg.OperationalError as exc:
                if not _missing_database(exc):
                    raise
                store._create_database()
                conn = store._connect()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(SCHEMA)
        except psycopg.Error as exc:
            raise DatabaseUnreachable(
                f"cannot use the database at {redact_url(url)}: {_describe(exc, url)}"
            ) from None
        store._idle.put(conn)
        return store

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, row_factory=dict_row
        )

    def _create_database(self) -> None:
        name = conninfo_to_dict(self.url).get("dbname")
        admin_url = make_conninfo(self.url, dbname="postgres")
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name)))
        with (
            psycopg.connect(admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as c,
            contextlib.suppress(psycopg.errors.DuplicateDatabase),  # another ingest won
        ):
            c.execute(create)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[tuple[psycopg.Connection[Any], bool]]:
        """A pooled connection and whether it was used before; broken ones are dropped."""
        if not self._slots.acquire(timeout=CHECKOUT_TIMEOUT_S):
            raise StoreUnavailable("all database connections are busy")
        try:
            try:
                conn, reused = self._idle.get_nowait(), True
            except queue.Empty:
                conn, reused = self._connect(), False
            try:
                yield conn, reused
            finally:
                if conn.closed or conn.broken:
                    conn.close()
                else:
                    self._idle.put(conn)
        finally:
            self._slots.release()

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`work` on a pooled connection, once more on a fresh one if a reused one had
        gone stale; a database that stays unreachable is a 503."""
        for attempt in (0, 1):
            try:
                with self._connection() as (conn, reused):
                    try:
                        return work(conn)
                    except psycopg.OperationalError:
                        conn.close()
                        if reused and attempt == 0:
                            continue
                        raise
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(
                    f"database unavailable: {_describe(exc, self.url)}"
                ) from None
            except psycopg.DataError as exc:  # e.g. a \u0000 in a string: JSONB has no NUL
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise BadRequest(f"the database refused the batch: {detail}") from None
        raise AssertionError("unreachable")

    def _one(self, query: str, params: tuple[Any, ...]) -> Batch | None:
        def work(conn: psycopg.Connection[Any]) -> Batch | None:
            row = conn.execute(query, params).fetchone()
            return _batch(row) if row is not None else None

        return self._run(work)

    def add(self, batch: NewBatch) -> Batch:
        inserted = self._one(
            f"INSERT INTO {TABLE} (batch_id, index_name, account_id, api_key, doc_count, "
            f"documents) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (batch_id) DO NOTHING "
            f"RETURNING {_COLUMNS}",
            (
                batch.batch_id,
                batch.index,
                batch.account_id,
                batch.api_key,
                len(batch.documents),
                Jsonb(batch.documents),
            ),
        )
        found = inserted or self.get(batch.batch_id)  # a retried insert that had committed
        if found is None:
            raise StoreUnavailable(f"batch {batch.batch_id} vanished after its insert")
        return found

    def list(self, status: str | None, limit: int) -> list[Batch]:
        where = "WHERE status = %s" if status is not None else ""
        params: tuple[Any, ...] = (status, limit) if status is not None else (limit,)
        query = f"SELECT {_COLUMNS} FROM {TABLE} {where} ORDER BY seq LIMIT %s"

        def work(conn: psycopg.Connection[Any]) -> list[Batch]:
            return [_batch(row) for row in conn.execute(query, params)]

        return self._run(work)

    def get(self, batch_id: str) -> Batch | None:
        return self._one(f"SELECT {_COLUMNS} FROM {TABLE} WHERE batch_id = %s", (batch_id,))

    def ack(self, batch_id: str) -> Batch | None:
        changed = self._one(
            f"UPDATE {TABLE} SET status = %s, documents = NULL, updated_at = now() "
            f"WHERE batch_id = %s AND status <> %s RETURNING {_COLUMNS}",
            (DONE, batch_id, DONE),
        )
        return changed or self.get(batch_id)

    def fail(self, batch_id: str, error: str) -> Batch | None:
        changed = self._one(
            f"UPDATE {TABLE} SET status = %s, error = %s, updated_at = now() "
            f"WHERE batch_id = %s AND status = %s RETURNING {_COLUMNS}",
            (FAILED, error, batch_id, PENDING),
        )
        return changed or self.get(batch_id)

    def counts(self) -> dict[str, int]:
        query = (
            f"SELECT status, count(*) AS n, coalesce(sum(doc_count), 0) AS docs "
            f"FROM {TABLE} GROUP BY status"
        )

        def work(conn: psycopg.Connection[Any]) -> dict[str, int]:
            out = {status: 0 for status in STATUSES}
            out["pendingDocuments"] = 0
            for row in conn.execute(query):
                out[row["status"]] = int(row["n"])
                if row["status"] == PENDING:
                    out["pendingDocuments"] = int(row["docs"])
            return out

        return self._run(work)

    def ping(self) -> None:
        self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _batch(row: dict[str, Any]) -> Batch:
    return Batch(
        batch_id=row["batch_id"],
        index=row["index_name"],
        account_id=row["account_id"],
        api_key=row["api_key"],
        count=row["doc_count"],
        status=row["status"],
        created_at=_iso(row["created_at"]),
        updated_at=_iso(row["updated_at"]),
        documents=row["documents"],
        error=row["error"],
    )


def _iso(value: datetime) -> str:
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
