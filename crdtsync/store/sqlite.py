"""The embedded default store: SQLite through aiosqlite, in WAL mode.

Schema (portable SQL; PostgreSQL takes the same statements with BIGSERIAL):

* ``updates(seq INTEGER PRIMARY KEY AUTOINCREMENT, document, data)``: the log.
  ``AUTOINCREMENT`` keeps sequences strictly growing even after deletes.
* ``snapshots(document PRIMARY KEY, data, through_seq)``.

One process writes a store file (the relay owns its connection); sequences of a
batch are therefore contiguous. Every operation holds the store's lock for its
whole length: the connection is shared, and a compaction must not begin its
transaction while a group commit is inside one (or read a half-written batch).
Closing takes the lock too, so an operation in progress finishes first and
every later one raises :class:`StoreError` (never aiosqlite's ``ValueError``).
:meth:`load` reads the snapshot and the log in one read transaction: another
connection to the file (a reader in another process, say) may compact at any
time, and two separate reads could see neither the old log nor the new snapshot.
``synchronous`` defaults to ``FULL``: a commit
is on disk when :meth:`append` returns, which is what an acknowledgement promises
(``NORMAL`` survives a killed process but not a power cut).
This module only executes SQL: when to compact is decided in ``compaction``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import aiosqlite

from ..exceptions import StoreError
from .base import StoredDocument

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    document TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_by_document ON updates (document, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    document TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    through_seq INTEGER NOT NULL
);
"""


class SQLiteStore:
    """Update log and snapshots in one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL",
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute(f"PRAGMA synchronous={self.synchronous}")
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            await self._close()
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        async with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("store is not open: use 'async with'")
        return self._db

    async def append(self, entries: Sequence[tuple[str, bytes]]) -> list[int]:
        async with self._lock:
            db = self._conn
            if not entries:
                return []
            return await self._append(db, entries)

    async def _append(
        self, db: aiosqlite.Connection, entries: Sequence[tuple[str, bytes]]
    ) -> list[int]:
        try:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(
                    "INSERT INTO updates (document, data) VALUES (?, ?)", list(entries)
                )
                async with db.execute("SELECT last_insert_rowid()") as cursor:
                    row = await cursor.fetchone()
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"append of {len(entries)} updates failed: {exc}") from exc
        last = int(row[0]) if row else 0
        return list(range(last - len(entries) + 1, last + 1))

    async def load(self, document: str) -> StoredDocument:
        async with self._lock:
            return await self._load(self._conn, document)

    async def _load(self, db: aiosqlite.Connection, document: str) -> StoredDocument:
        try:
            await db.execute("BEGIN")  # one snapshot of the file for both reads
            try:
                async with db.execute(
                    "SELECT data, through_seq FROM snapshots WHERE document = ?", (document,)
                ) as cursor:
                    snap = await cursor.fetchone()
                async with db.execute(
                    "SELECT seq, data FROM updates WHERE document = ? ORDER BY seq", (document,)
                ) as cursor:
                    rows = list(await cursor.fetchall())
            finally:
                await db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"load of {document!r} failed: {exc}") from exc
        snapshot, snapshot_seq = (bytes(snap[0]), int(snap[1])) if snap else (None, 0)
        last = max(snapshot_seq, int(rows[-1][0]) if rows else 0)
        return StoredDocument(
            document, snapshot, snapshot_seq, [bytes(row[1]) for row in rows], last_seq=last
        )

    async def compact(self, document: str, snapshot: bytes, through_seq: int) -> None:
        async with self._lock:
            await self._compact(self._conn, document, snapshot, through_seq)

    async def _compact(
        self, db: aiosqlite.Connection, document: str, snapshot: bytes, through_seq: int
    ) -> None:
        try:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.execute(
                    "INSERT INTO snapshots (document, data, through_seq) VALUES (?, ?, ?) "
                    "ON CONFLICT (document) DO UPDATE SET data = excluded.data, "
                    "through_seq = excluded.through_seq",
                    (document, snapshot, through_seq),
                )
                await db.execute(
                    "DELETE FROM updates WHERE document = ? AND seq <= ?", (document, through_seq)
                )
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"compaction of {document!r} failed: {exc}") from exc

    async def documents(self) -> list[str]:
        async with self._lock:
            return await self._documents(self._conn)

    async def _documents(self, db: aiosqlite.Connection) -> list[str]:
        try:
            async with db.execute(
                "SELECT document FROM updates UNION SELECT document FROM snapshots ORDER BY 1"
            ) as cursor:
                return [str(row[0]) for row in await cursor.fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"listing documents failed: {exc}") from exc

    async def ping(self) -> None:
        try:
            async with self._lock, self._conn.execute("SELECT 1") as cursor:
                await cursor.fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"store unreachable: {exc}") from exc
