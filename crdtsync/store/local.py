"""A device's own SQLite file: document states and the outbox of unacknowledged changes.

Tables:

* ``updates(seq, document, data)``: every update the device applied, local or
  received, in order; with ``snapshots`` it rebuilds each document on restart.
* ``outbox(seq, document)``: one row per local change the relay has not yet
  acknowledged. Rows hold no data: on reconnect the device sends one diff
  computed from its document against the relay's state vector, so the outbox
  only counts and orders. An Ack for ``seq`` deletes that document's rows up to it.
* ``rejected(seq, document, code, message, at)``: local changes the relay refused.

Writes use the standard-library ``sqlite3`` synchronously, on purpose: pycrdt
calls document observers synchronously, and recording the change inside that
callback means a local edit is on disk before the edit call returns, so a
device killed a moment later loses nothing. Each write is one short WAL commit.

:meth:`LocalStore.record` writes a local change together with whatever the
device held back (updates received from the relay, outbox rows acknowledged),
in one transaction and in that order. Holding those back is safe: a received
update missing after a crash is fetched again on the next resume (the device's
state vector does not cover it), and an acknowledged row still in the outbox is
acknowledged again by the resume handshake.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ..exceptions import StoreError
from .base import StoredDocument

__all__ = ["LocalStore"]

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
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_document ON outbox (document, seq);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER NOT NULL,
    document TEXT NOT NULL,
    code INTEGER NOT NULL,
    message TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    name TEXT PRIMARY KEY,
    last_synced REAL
);
"""


class LocalStore:
    """The device's durable state. Not thread-safe; one per device process."""

    def __init__(
        self, path: str | Path, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    ) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open device store {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def _write(self, statements: list[tuple[str, tuple[object, ...]]]) -> int:
        """Run statements in one transaction; return the last row id."""
        try:
            with self._db:
                self._db.execute("BEGIN")
                cursor = None
                for sql, params in statements:
                    cursor = self._db.execute(sql, params)
                return cursor.lastrowid or 0 if cursor else 0
        except sqlite3.Error as exc:
            raise StoreError(f"device store write failed: {exc}") from exc

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        try:
            return list(self._db.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"device store read failed: {exc}") from exc

    # -- documents -------------------------------------------------------------------------------

    def add_document(self, name: str) -> None:
        self._write([("INSERT OR IGNORE INTO documents (name) VALUES (?)", (name,))])

    def documents(self) -> list[str]:
        return [str(row[0]) for row in self._rows("SELECT name FROM documents ORDER BY name")]

    def mark_synced(self, at: float | None = None) -> None:
        """Record that every document was in sync with the relay at ``at``."""
        self._write([("UPDATE documents SET last_synced = ?", (at or time.time(),))])

    def last_synced(self) -> float | None:
        rows = self._rows("SELECT MAX(last_synced) FROM documents")
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def load(self, name: str) -> StoredDocument:
        snap = self._rows("SELECT data, through_seq FROM snapshots WHERE document = ?", (name,))
        rows = self._rows("SELECT seq, data FROM updates WHERE document = ? ORDER BY seq", (name,))
        snapshot, snapshot_seq = (bytes(snap[0][0]), int(snap[0][1])) if snap else (None, 0)
        last = max(snapshot_seq, int(rows[-1][0]) if rows else 0)
        updates = [bytes(row[1]) for row in rows]
        return StoredDocument(name, snapshot, snapshot_seq, updates, last_seq=last)

    def log_size(self, name: str) -> int:
        return int(self._rows("SELECT COUNT(*) FROM updates WHERE document = ?", (name,))[0][0])

    def compact(self, name: str, snapshot: bytes, through_seq: int) -> None:
        self._write(
            [
                (
                    "INSERT INTO snapshots (document, data, through_seq) VALUES (?, ?, ?) "
                    "ON CONFLICT (document) DO UPDATE SET data = excluded.data, "
                    "through_seq = excluded.through_seq",
                    (name, snapshot, through_seq),
                ),
                ("DELETE FROM updates WHERE document = ? AND seq <= ?", (name, through_seq)),
            ]
        )

    # -- updates and outbox ------------------------------------------------------------------------

    def record_local(self, name: str, update: bytes) -> int:
        """Store a local change and queue it in the outbox; return its outbox sequence."""
        return self._write(
            [
                ("INSERT INTO updates (document, data) VALUES (?, ?)", (name, update)),
                ("INSERT INTO outbox (seq, document) VALUES (last_insert_rowid(), ?)", (name,)),
            ]
        )

    def record(
        self,
        local: tuple[str, bytes] | None = None,
        remote: Sequence[tuple[str, bytes]] = (),
        acks: Mapping[str, int] | None = None,
    ) -> int:
        """One transaction: ``remote`` updates, then outbox rows up to ``acks[document]``
        dropped, then ``local`` stored and queued. Returns the local change's outbox
        sequence (0 without one)."""
        statements: list[tuple[str, tuple[object, ...]]] = [
            ("INSERT INTO updates (document, data) VALUES (?, ?)", (name, update))
            for name, update in remote
        ]
        statements += [
            ("DELETE FROM outbox WHERE document = ? AND seq <= ?", (name, seq))
            for name, seq in (acks or {}).items()
        ]
        if local is not None:
            statements += [
                ("INSERT INTO updates (document, data) VALUES (?, ?)", local),
                ("INSERT INTO outbox (seq, document) VALUES (last_insert_rowid(), ?)", local[:1]),
            ]
        if not statements:
            return 0
        last = self._write(statements)
        return last if local is not None else 0

    def outbox(self) -> dict[str, list[int]]:
        """Every outbox sequence, per document, in order."""
        rows = self._rows("SELECT document, seq FROM outbox ORDER BY seq")
        result: dict[str, list[int]] = {}
        for document, seq in rows:
            result.setdefault(str(document), []).append(int(seq))
        return result

    def record_remote(self, name: str, update: bytes) -> int:
        """Store an update received from the relay."""
        return self._write([("INSERT INTO updates (document, data) VALUES (?, ?)", (name, update))])

    def acknowledge(self, name: str, seq: int) -> int:
        """Drop outbox rows of ``name`` up to ``seq``; return how many remain for it."""
        self._write([("DELETE FROM outbox WHERE document = ? AND seq <= ?", (name, seq))])
        return self.pending(name)

    def pending(self, name: str) -> int:
        return int(self._rows("SELECT COUNT(*) FROM outbox WHERE document = ?", (name,))[0][0])

    def pending_all(self) -> dict[str, int]:
        rows = self._rows("SELECT document, COUNT(*) FROM outbox GROUP BY document")
        return {str(doc): int(count) for doc, count in rows}

    def last_outbox_seq(self, name: str) -> int:
        rows = self._rows("SELECT MAX(seq) FROM outbox WHERE document = ?", (name,))
        return int(rows[0][0] or 0)

    def reject(self, name: str, seq: int, code: int, message: str) -> None:
        """Move outbox row ``seq`` (if any) to the rejected table."""
        self._write(
            [
                (
                    "INSERT INTO rejected (seq, document, code, message, at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (seq, name, code, message, time.time()),
                ),
                ("DELETE FROM outbox WHERE document = ? AND seq = ?", (name, seq)),
            ]
        )

    def rejected(self) -> list[tuple[str, int, int, str]]:
        rows = self._rows("SELECT document, seq, code, message FROM rejected ORDER BY rowid")
        return [(str(d), int(s), int(c), str(m)) for d, s, c, m in rows]
