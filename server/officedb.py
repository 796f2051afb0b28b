"""The office's own connection to the relay's SQLite file.

The relay's update store (``crdtsync.SQLiteStore``) owns one connection to the
file; the office side (tenants, credentials, change feed, webhooks) owns this
second one. Both run in WAL mode, so readers never block the writer, but SQLite
admits one writer at a time across connections. Hence:

* ``busy_timeout`` is set, so a writer waits for the other connection's
  transaction instead of failing at once with ``database is locked``;
* write transactions are short (a handful of statements, no network I/O
  inside) and begin with ``BEGIN IMMEDIATE``, which takes the write lock up
  front instead of failing half-way when a read transaction tries to upgrade;
* every use of this connection, read or write, holds an :class:`asyncio.Lock`:
  the connection is shared by all tasks, and a task reading while another
  task's transaction is open would see (or be rolled back with) its
  uncommitted rows.

Every ``sqlite3`` error is translated to :class:`crdtsync.StoreError` with
``raise ... from exc``. Schemas are plain ``CREATE ... IF NOT EXISTS`` scripts
handed over by the modules that own the tables, applied when the database
opens. SQL stays portable where that costs nothing: no ``INSERT OR REPLACE``,
no SQLite date functions (times are ISO-8601 UTC text written by Python,
fixed-width so they sort as text), JSON kept as text.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import aiosqlite

from crdtsync import StoreError

__all__ = ["OfficeDB", "Transaction", "format_time", "parse_time"]

_T = TypeVar("_T")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(moment: datetime) -> str:
    """``moment`` as fixed-width ISO-8601 UTC text, so that text order is time order."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one")
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time`."""
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


async def _statement(conn: aiosqlite.Connection, sql: str) -> None:
    await conn.execute(sql)


async def _settled(awaitable: Awaitable[_T]) -> _T:
    """Await ``awaitable`` to its end even if the caller is cancelled meanwhile.

    aiosqlite runs a statement in its thread whatever happens to the awaiting
    task; a cancelled ``BEGIN`` or ``COMMIT`` would leave the connection in a
    state the next user does not expect. The cancellation is re-raised after.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


class Transaction:
    """Statements inside one transaction (or one locked read) of an :class:`OfficeDB`.

    Only valid inside the ``async with`` block that produced it. Errors are
    :class:`crdtsync.StoreError`.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        try:
            async with self._conn.execute(sql, params) as cursor:
                return cursor.rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"office database: {exc}") from exc

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one ``INSERT``; returns the new row's integer key (``lastrowid``)."""
        try:
            async with self._conn.execute(sql, params) as cursor:
                return int(cursor.lastrowid or 0)
        except sqlite3.Error as exc:
            raise StoreError(f"office database: {exc}") from exc

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StoreError(f"office database: {exc}") from exc

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            async with self._conn.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"office database: {exc}") from exc

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        try:
            async with self._conn.execute(sql, params) as cursor:
                return await cursor.fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"office database: {exc}") from exc


class OfficeDB:
    """One aiosqlite connection, WAL, ``busy_timeout``; ``async with`` opens and closes it.

    ``schemas`` are SQL scripts (``CREATE TABLE IF NOT EXISTS ...``) applied in
    order on open, so opening the same file twice is harmless.
    """

    def __init__(
        self,
        path: str | Path,
        schemas: Sequence[str] = (),
        *,
        synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL",
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = Path(path)
        self.schemas = tuple(schemas)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            await self._db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute(f"PRAGMA synchronous={self.synchronous}")
            await self._db.execute("PRAGMA foreign_keys=ON")
            for script in self.schemas:
                await self._db.executescript(script)
        except sqlite3.Error as exc:
            await self._close()
            raise StoreError(f"cannot open office database {self.path}: {exc}") from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            async with self._lock:
                await db.close()

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("office database is not open: use 'async with'")
        return self._db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A write transaction (``BEGIN IMMEDIATE``): committed when the block exits cleanly.

        Any exception inside the block, cancellation included, rolls back and
        propagates. Keep the block short and free of network I/O: the write
        lock it holds also stalls the relay's group commit.
        """
        async with self._lock, self._begun("BEGIN IMMEDIATE") as conn:
            yield Transaction(conn)
            await _settled(_statement(conn, "COMMIT"))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Transaction]:
        """Reads under the connection's lock, in one snapshot (a deferred transaction)."""
        async with self._lock, self._begun("BEGIN") as conn:
            yield Transaction(conn)

    @asynccontextmanager
    async def _begun(self, begin: str) -> AsyncIterator[aiosqlite.Connection]:
        """Begin; on leaving, roll back whatever is still open (after a COMMIT, nothing).

        Statements are awaited to completion even when the task is cancelled
        meanwhile, so the connection never stays inside a stale transaction.
        """
        conn = self._conn
        try:
            await _settled(_statement(conn, begin))
            yield conn
        except sqlite3.Error as exc:
            raise StoreError(f"office database: {exc}") from exc
        finally:
            if conn.in_transaction:
                try:
                    await _settled(_statement(conn, "ROLLBACK"))
                except sqlite3.Error as exc:
                    raise StoreError(f"office database: rollback failed: {exc}") from exc

    async def ping(self) -> None:
        """Raise :class:`crdtsync.StoreError` unless the database answers."""
        async with self.read() as tx:
            await tx.fetchone("SELECT 1")
