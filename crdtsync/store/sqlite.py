"""The embedded default store: SQLite through aiosqlite, in WAL mode.

Schema (portable SQL; PostgreSQL takes the same statements with BIGSERIAL):

* ``updates(seq INTEGER PRIMARY KEY AUTOINCREMENT, document, data)``: the log.
  ``AUTOINCREMENT`` keeps sequences strictly growing even after deletes.
* ``snapshots(document PRIMARY KEY, data, through_seq)``.
* ``blobs(key PRIMARY KEY, size, data)`` and ``blob_parts(key, start, size, data)``
  (uploads in progress), ``submissions`` (unique per document and key) and
  ``rejected_updates``: see :mod:`crdtsync.store.records`.

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
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiosqlite

from ..exceptions import StoreError
from .base import StoredDocument
from .records import BlobProgress, RejectedUpdate, SubmissionRecord, plan_chunk, sha256_hex

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
CREATE TABLE IF NOT EXISTS blobs (
    key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_parts (
    key TEXT NOT NULL,
    start INTEGER NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (key, start)
);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    document TEXT NOT NULL,
    key TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    result TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    snapshot BLOB NOT NULL,
    recorded_at REAL NOT NULL,
    UNIQUE (document, key)
);
CREATE TABLE IF NOT EXISTS rejected_updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    document TEXT NOT NULL,
    who TEXT NOT NULL,
    reason TEXT NOT NULL,
    data BLOB NOT NULL,
    at REAL NOT NULL
);
"""

_SUBMISSION_COLUMNS = "document, key, accepted, result, content_hash, snapshot, recorded_at, id"


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

    async def last_seqs(self, documents: Sequence[str] | None = None) -> dict[str, int]:
        """One query over the log and the snapshots (``documents``: in batches of 500)."""
        if documents is not None and not documents:
            return {}
        async with self._lock:
            if documents is None:
                return await self._last_seqs(self._conn, "", ())
            found: dict[str, int] = {}
            names = list(dict.fromkeys(documents))
            for start in range(0, len(names), 500):
                chunk = tuple(names[start : start + 500])
                marks = ", ".join("?" for _ in chunk)
                found.update(
                    await self._last_seqs(self._conn, f" WHERE document IN ({marks})", chunk)
                )
            return found

    async def _last_seqs(
        self, db: aiosqlite.Connection, where: str, params: tuple[str, ...]
    ) -> dict[str, int]:
        sql = (
            f"SELECT document, MAX(seq) FROM updates{where} GROUP BY document "
            f"UNION ALL SELECT document, through_seq FROM snapshots{where}"
        )
        try:
            async with db.execute(sql, params + params) as cursor:
                rows = await cursor.fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading the last sequences failed: {exc}") from exc
        found: dict[str, int] = {}
        for document, seq in rows:
            found[str(document)] = max(found.get(str(document), 0), int(seq))
        return found

    async def ping(self) -> None:
        try:
            async with self._lock, self._conn.execute("SELECT 1") as cursor:
                await cursor.fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"store unreachable: {exc}") from exc

    # -- blobs ---------------------------------------------------------------------------------

    async def _transaction(self, statements: Iterable[tuple[str, tuple[object, ...]]]) -> None:
        db = self._conn
        await db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                await db.execute(sql, params)
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise

    async def _fetch(self, sql: str, params: tuple[object, ...]) -> list[sqlite3.Row]:
        async with self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _partial(self, key: str) -> tuple[int, int | None]:
        """Bytes held of an upload in progress, and the size it declared (None: no upload)."""
        rows = await self._fetch(
            "SELECT COALESCE(SUM(LENGTH(data)), 0), MAX(size) FROM blob_parts WHERE key = ?",
            (key,),
        )
        have, size = rows[0]
        return int(have), (int(size) if size is not None else None)

    async def put_blob_chunk(
        self, key: str, sha256: str, size: int, offset: int, data: bytes
    ) -> BlobProgress:
        async with self._lock:
            try:
                return await self._put_blob_chunk(key, sha256, size, offset, data)
            except sqlite3.Error as exc:
                raise StoreError(f"storing a chunk of blob {key!r} failed: {exc}") from exc

    async def _put_blob_chunk(
        self, key: str, sha256: str, size: int, offset: int, data: bytes
    ) -> BlobProgress:
        stored = await self._fetch("SELECT size FROM blobs WHERE key = ?", (key,))
        if stored:
            return BlobProgress(int(stored[0][0]), complete=True)
        have, known = await self._partial(key)
        plan = plan_chunk(have, known, size, offset, data)
        steps: list[tuple[str, tuple[object, ...]]] = []
        if plan.restart:
            steps.append(("DELETE FROM blob_parts WHERE key = ?", (key,)))
            have = 0
        if plan.data:
            steps.append(
                (
                    "INSERT INTO blob_parts (key, start, size, data) VALUES (?, ?, ?, ?)",
                    (key, have, size, plan.data),
                )
            )
            have += len(plan.data)
        if steps:
            await self._transaction(steps)
        if have < size:
            return BlobProgress(have)
        # Complete (also when a crash came between the last part and this check): verify.
        parts = await self._fetch(
            "SELECT data FROM blob_parts WHERE key = ? ORDER BY start", (key,)
        )
        whole = b"".join(bytes(row[0]) for row in parts)
        drop = ("DELETE FROM blob_parts WHERE key = ?", (key,))
        if sha256_hex(whole) != sha256:
            await self._transaction([drop])
            return BlobProgress(0, refused=True)
        insert = (
            "INSERT OR IGNORE INTO blobs (key, size, data) VALUES (?, ?, ?)",
            (key, size, whole),
        )
        await self._transaction([insert, drop])
        return BlobProgress(size, complete=True)

    async def blob_progress(self, key: str, size: int) -> BlobProgress:
        async with self._lock:
            try:
                stored = await self._fetch("SELECT size FROM blobs WHERE key = ?", (key,))
                if stored:
                    return BlobProgress(int(stored[0][0]), complete=True)
                have, known = await self._partial(key)
            except sqlite3.Error as exc:
                raise StoreError(f"reading blob {key!r} failed: {exc}") from exc
        return BlobProgress(have if known in (None, size) else 0)

    async def get_blob(self, key: str) -> bytes | None:
        async with self._lock:
            try:
                rows = await self._fetch("SELECT data FROM blobs WHERE key = ?", (key,))
            except sqlite3.Error as exc:
                raise StoreError(f"reading blob {key!r} failed: {exc}") from exc
        return bytes(rows[0][0]) if rows else None

    async def missing_blobs(self, keys: Sequence[str]) -> list[str]:
        if not keys:
            return []
        async with self._lock:
            try:
                marks = ", ".join("?" for _ in keys)
                rows = await self._fetch(
                    f"SELECT key FROM blobs WHERE key IN ({marks})", tuple(keys)
                )
            except sqlite3.Error as exc:
                raise StoreError(f"checking blobs failed: {exc}") from exc
        present = {str(row[0]) for row in rows}
        return [key for key in keys if key not in present]

    # -- submissions and rejected updates ---------------------------------------------------------

    async def find_submission(self, document: str, key: str) -> SubmissionRecord | None:
        async with self._lock:
            try:
                rows = await self._fetch(
                    f"SELECT {_SUBMISSION_COLUMNS} FROM submissions WHERE document = ? AND key = ?",
                    (document, key),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"reading submission {key!r} failed: {exc}") from exc
        return _submission(rows[0]) if rows else None

    async def add_submission(self, record: SubmissionRecord) -> SubmissionRecord:
        async with self._lock:
            try:
                await self._transaction(
                    [
                        (
                            "INSERT OR IGNORE INTO submissions (document, key, accepted, result, "
                            "content_hash, snapshot, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (
                                record.document,
                                record.key,
                                int(record.accepted),
                                record.result,
                                record.content_hash,
                                record.snapshot,
                                record.recorded_at,
                            ),
                        )
                    ]
                )
                rows = await self._fetch(
                    f"SELECT {_SUBMISSION_COLUMNS} FROM submissions WHERE document = ? AND key = ?",
                    (record.document, record.key),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"recording submission {record.key!r} failed: {exc}") from exc
        return _submission(rows[0])

    async def submissions(self, document: str) -> list[SubmissionRecord]:
        async with self._lock:
            try:
                rows = await self._fetch(
                    f"SELECT {_SUBMISSION_COLUMNS} FROM submissions WHERE document = ? ORDER BY id",
                    (document,),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"reading submissions of {document!r} failed: {exc}") from exc
        return [_submission(row) for row in rows]

    async def add_rejection(self, rejected: RejectedUpdate) -> None:
        async with self._lock:
            try:
                await self._transaction(
                    [
                        (
                            "INSERT INTO rejected_updates (document, who, reason, data, at) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (
                                rejected.document,
                                rejected.who,
                                rejected.reason,
                                rejected.update,
                                rejected.at,
                            ),
                        )
                    ]
                )
            except sqlite3.Error as exc:
                raise StoreError(f"recording a rejected update failed: {exc}") from exc

    async def rejections(self, document: str | None = None) -> list[RejectedUpdate]:
        sql = "SELECT document, who, reason, data, at, id FROM rejected_updates"
        params: tuple[object, ...] = ()
        if document is not None:
            sql, params = sql + " WHERE document = ?", (document,)
        async with self._lock:
            try:
                rows = await self._fetch(sql + " ORDER BY id", params)
            except sqlite3.Error as exc:
                raise StoreError(f"reading rejected updates failed: {exc}") from exc
        return [
            RejectedUpdate(str(d), str(w), str(r), bytes(u), float(a), int(i))
            for d, w, r, u, a, i in rows
        ]


def _submission(row: Any) -> SubmissionRecord:
    document, key, accepted, result, content_hash, snapshot, recorded_at, id_ = row
    return SubmissionRecord(
        str(document),
        str(key),
        bool(accepted),
        str(result),
        str(content_hash),
        bytes(snapshot),
        float(recorded_at),
        int(id_),
    )
