"""A device's own SQLite file: documents, the outbox, blobs, uploads and submissions.

Tables:

* ``log(document, seq, pending, data)``: every update the device applied, local
  or received, clustered by document and sequence (one B-tree: a local edit is
  one row written); with ``snapshots`` it rebuilds each document on restart.
  ``pending`` marks the outbox: local changes the relay has not yet
  acknowledged. On reconnect the device sends one diff computed from its
  document against the relay's state vector, so the outbox only counts and
  orders. An Ack for ``seq`` clears that document's marks up to it. Compaction
  keeps pending rows (their content is also in the snapshot; applying an update
  twice changes nothing). Sequences are the device's own, one counter for all
  documents.
* ``rejected(seq, document, code, message, at, discarded)``: local changes the
  relay refused; ``discarded`` counts the unacknowledged changes archived with it.
* ``documents(name, last_synced, withdrawn)``: every document the device holds;
  ``withdrawn`` is set while the relay has withdrawn the device's access to it.
* ``archive(id, document, seq, kind, data, unacknowledged, rejection, reason, at)``:
  a replica's log and outbox rows, moved aside when the replica was replaced
  after a refused field write (kept for audit and recovery, never replayed).
* ``blobs(sha, size, data)``: content-addressed bytes (photos, files).
* ``uploads(document, sha, size, state, restarts, reason)``: each blob to upload
  for the document that references it: ``pending``, ``uploaded`` or ``failed``.
* ``submissions(seq, key, document, body, created_at, status, answer)``: each
  submission (idempotency ``key``) and the relay's last answer to it.

Files written by an older version gain the new tables and columns when opened.

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

_INSERT = "INSERT INTO log (document, seq, pending, data) VALUES (?, ?, ?, ?)"
_ACKNOWLEDGE = "UPDATE log SET pending = 0 WHERE document = ? AND seq <= ? AND pending = 1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    document TEXT NOT NULL,
    seq INTEGER NOT NULL,
    pending INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (document, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    document TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    through_seq INTEGER NOT NULL
);
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
CREATE TABLE IF NOT EXISTS archive (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    document TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    unacknowledged INTEGER NOT NULL,
    rejection INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS archive_by_document ON archive (document, id);
CREATE TABLE IF NOT EXISTS blobs (
    sha TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    document TEXT NOT NULL,
    sha TEXT NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL,
    restarts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    PRIMARY KEY (document, sha)
);
CREATE TABLE IF NOT EXISTS submissions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    document TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    answer TEXT
);
"""

#: Where sequences were handed out: the next one is above all of them.
_SEQUENCES = (("log", "seq"), ("snapshots", "through_seq"), ("archive", "seq"), ("rejected", "seq"))

#: Columns added after the first release of the file format: (table, column, definition).
_ADDED_COLUMNS = (
    ("documents", "withdrawn", "INTEGER NOT NULL DEFAULT 0"),
    ("rejected", "discarded", "INTEGER NOT NULL DEFAULT 0"),
)


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
            for table, column, definition in _ADDED_COLUMNS:
                columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            self._migrate_log()
            self._seq = max(
                int(
                    self._db.execute(f"SELECT COALESCE(MAX({column}), 0) FROM {table}").fetchone()[
                        0
                    ]
                )
                for table, column in _SEQUENCES
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open device store {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def _migrate_log(self) -> None:
        """Move a file's ``updates`` and ``outbox`` tables (the first format) into ``log``."""
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        if "updates" not in tables:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR IGNORE INTO log (document, seq, pending, data) "
                "SELECT u.document, u.seq, EXISTS (SELECT 1 FROM outbox o WHERE o.seq = u.seq), "
                "u.data FROM updates u"
            )
            # Pending changes whose update was compacted into the snapshot: keep the mark.
            self._db.execute(
                "INSERT OR IGNORE INTO log (document, seq, pending, data) "
                "SELECT document, seq, 1, X'0000' FROM outbox"
            )
            self._db.execute("DROP TABLE updates")
            self._db.execute("DROP TABLE outbox")

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

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
        rows = self._rows("SELECT seq, data FROM log WHERE document = ? ORDER BY seq", (name,))
        snapshot, snapshot_seq = (bytes(snap[0][0]), int(snap[0][1])) if snap else (None, 0)
        last = max(snapshot_seq, int(rows[-1][0]) if rows else 0)
        updates = [bytes(row[1]) for row in rows]
        return StoredDocument(name, snapshot, snapshot_seq, updates, last_seq=last)

    def log_size(self, name: str) -> int:
        return int(self._rows("SELECT COUNT(*) FROM log WHERE document = ?", (name,))[0][0])

    def compact(self, name: str, snapshot: bytes, through_seq: int) -> None:
        self._write(
            [
                (
                    "INSERT INTO snapshots (document, data, through_seq) VALUES (?, ?, ?) "
                    "ON CONFLICT (document) DO UPDATE SET data = excluded.data, "
                    "through_seq = excluded.through_seq",
                    (name, snapshot, through_seq),
                ),
                (
                    "DELETE FROM log WHERE document = ? AND seq <= ? AND pending = 0",
                    (name, through_seq),
                ),
            ]
        )

    # -- updates and outbox ------------------------------------------------------------------------

    def record_local(self, name: str, update: bytes) -> int:
        """Store a local change and queue it in the outbox; return its outbox sequence."""
        return self.record((name, update))

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
            (_INSERT, (name, self._next_seq(), 0, update)) for name, update in remote
        ]
        statements += [(_ACKNOWLEDGE, (name, seq)) for name, seq in (acks or {}).items()]
        seq = 0
        if local is not None:
            seq = self._next_seq()
            statements.append((_INSERT, (local[0], seq, 1, local[1])))
        if statements:
            self._write(statements)
        return seq

    def outbox(self) -> dict[str, list[int]]:
        """Every outbox sequence, per document, in order."""
        rows = self._rows("SELECT document, seq FROM log WHERE pending = 1 ORDER BY seq")
        result: dict[str, list[int]] = {}
        for document, seq in rows:
            result.setdefault(str(document), []).append(int(seq))
        return result

    def record_remote(self, name: str, update: bytes) -> int:
        """Store an update received from the relay."""
        seq = self._next_seq()
        self._write([(_INSERT, (name, seq, 0, update))])
        return seq

    def acknowledge(self, name: str, seq: int) -> int:
        """Drop outbox rows of ``name`` up to ``seq``; return how many remain for it."""
        self._write([(_ACKNOWLEDGE, (name, seq))])
        return self.pending(name)

    def pending(self, name: str) -> int:
        sql = "SELECT COUNT(*) FROM log WHERE document = ? AND pending = 1"
        return int(self._rows(sql, (name,))[0][0])

    def pending_all(self) -> dict[str, int]:
        rows = self._rows("SELECT document, COUNT(*) FROM log WHERE pending = 1 GROUP BY document")
        return {str(doc): int(count) for doc, count in rows}

    def last_outbox_seq(self, name: str) -> int:
        rows = self._rows("SELECT MAX(seq) FROM log WHERE document = ? AND pending = 1", (name,))
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
                ("UPDATE log SET pending = 0 WHERE document = ? AND seq = ?", (name, seq)),
            ]
        )

    def rejected(self) -> list[tuple[str, int, int, str, int]]:
        """``(document, seq, code, message, discarded)`` of every refused change, in order."""
        rows = self._rows(
            "SELECT document, seq, code, message, discarded FROM rejected ORDER BY rowid"
        )
        return [(str(d), int(s), int(c), str(m), int(n)) for d, s, c, m, n in rows]

    # -- withdrawn documents and the archive -------------------------------------------------------

    def set_withdrawn(self, name: str, withdrawn: bool) -> None:
        self._write([("UPDATE documents SET withdrawn = ? WHERE name = ?", (int(withdrawn), name))])

    def withdrawn(self) -> list[str]:
        rows = self._rows("SELECT name FROM documents WHERE withdrawn ORDER BY name")
        return [str(row[0]) for row in rows]

    def replace_document(self, name: str, seq: int, code: int, message: str) -> int:
        """Record the refusal of change ``seq`` and move the document's whole local log
        (snapshot, updates) and outbox into the archive, in one transaction: the document
        then holds nothing locally and resyncs from the relay. Returns how many
        unacknowledged local changes were discarded (kept in the archive)."""
        discarded = self.pending(name)
        at = time.time()
        archive = (
            "INSERT INTO archive "
            "(document, seq, kind, data, unacknowledged, rejection, reason, at) "
        )
        args = (seq, message, at, name)
        self._write(
            [
                (
                    "INSERT INTO rejected (seq, document, code, message, at, discarded) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, name, code, message, at, discarded),
                ),
                (
                    archive + "SELECT document, through_seq, 'snapshot', data, 0, ?, ?, ? "
                    "FROM snapshots WHERE document = ?",
                    args,
                ),
                (
                    archive + "SELECT document, seq, 'update', data, pending, ?, ?, ? "
                    "FROM log WHERE document = ? ORDER BY seq",
                    args,
                ),
                ("DELETE FROM log WHERE document = ?", (name,)),
                ("DELETE FROM snapshots WHERE document = ?", (name,)),
            ]
        )
        return discarded

    def archive_retired(self, name: str, update: bytes, rejection: int, reason: str) -> None:
        """Keep an edit made to a replaced replica (never synced, never replayed)."""
        self._write(
            [
                (
                    "INSERT INTO archive (document, seq, kind, data, unacknowledged, rejection, "
                    "reason, at) VALUES (?, 0, 'retired', ?, 1, ?, ?, ?)",
                    (name, update, rejection, reason, time.time()),
                )
            ]
        )

    def archived(
        self, name: str | None = None
    ) -> list[tuple[int, str, int, str, bytes, bool, int, str, float]]:
        """Archived rows, oldest first: ``(id, document, seq, kind, data, unacknowledged,
        rejection, reason, at)``."""
        sql = (
            "SELECT id, document, seq, kind, data, unacknowledged, rejection, reason, at "
            "FROM archive"
        )
        rows = (
            self._rows(sql + " WHERE document = ? ORDER BY id", (name,))
            if name is not None
            else self._rows(sql + " ORDER BY id")
        )
        return [
            (int(i), str(d), int(s), str(k), bytes(b), bool(u), int(r), str(m), float(a))
            for i, d, s, k, b, u, r, m, a in rows
        ]

    # -- blobs and uploads -------------------------------------------------------------------------

    def add_blob(self, name: str, sha: str, data: bytes) -> bool:
        """Store ``data`` (named ``sha``) and queue its upload for document ``name``, in one
        transaction. An upload that failed is queued again. Returns False when the upload
        was queued or done already (nothing changed)."""
        before = self._rows("SELECT state FROM uploads WHERE document = ? AND sha = ?", (name, sha))
        if before and before[0][0] != "failed":
            return False
        self._write(
            [
                (
                    "INSERT OR IGNORE INTO blobs (sha, size, data) VALUES (?, ?, ?)",
                    (sha, len(data), data),
                ),
                (
                    "INSERT INTO uploads (document, sha, size, state) VALUES (?, ?, ?, 'pending') "
                    "ON CONFLICT (document, sha) DO UPDATE SET state = 'pending', restarts = 0, "
                    "reason = NULL",
                    (name, sha, len(data)),
                ),
            ]
        )
        return True

    def blob(self, sha: str) -> bytes | None:
        rows = self._rows("SELECT data FROM blobs WHERE sha = ?", (sha,))
        return bytes(rows[0][0]) if rows else None

    def blob_chunk(self, sha: str, offset: int, length: int) -> bytes:
        """Bytes ``offset..offset+length`` of a stored blob (without reading the rest)."""
        rows = self._rows(
            "SELECT substr(data, ?, ?) FROM blobs WHERE sha = ?", (offset + 1, length, sha)
        )
        if not rows or rows[0][0] is None:
            raise StoreError(f"the device holds no blob {sha}")
        return bytes(rows[0][0])

    def uploads(self) -> list[tuple[str, str, int, str, int, str | None]]:
        """``(document, sha, size, state, restarts, reason)`` of every upload, in order."""
        rows = self._rows(
            "SELECT document, sha, size, state, restarts, reason FROM uploads ORDER BY rowid"
        )
        return [
            (str(d), str(h), int(n), str(s), int(r), None if m is None else str(m))
            for d, h, n, s, r, m in rows
        ]

    def update_upload(
        self, name: str, sha: str, state: str, restarts: int, reason: str | None = None
    ) -> None:
        self._write(
            [
                (
                    "UPDATE uploads SET state = ?, restarts = ?, reason = ? "
                    "WHERE document = ? AND sha = ?",
                    (state, restarts, reason, name, sha),
                )
            ]
        )

    def remove_upload(self, name: str, sha: str) -> None:
        """Forget an upload; its blob goes too unless another upload still names it."""
        self._write(
            [
                ("DELETE FROM uploads WHERE document = ? AND sha = ?", (name, sha)),
                (
                    "DELETE FROM blobs WHERE sha = ? "
                    "AND NOT EXISTS (SELECT 1 FROM uploads WHERE sha = ?)",
                    (sha, sha),
                ),
            ]
        )

    # -- submissions -------------------------------------------------------------------------------

    def add_submission(self, key: str, name: str, body: str, created_at: float) -> None:
        self._write(
            [
                (
                    "INSERT INTO submissions (key, document, body, created_at, status) "
                    "VALUES (?, ?, ?, ?, 'queued')",
                    (key, name, body, created_at),
                )
            ]
        )

    def set_submission(self, key: str, status: str, answer: str | None = None) -> None:
        """Record a submission's status (and the relay's answer, when it has one)."""
        self._write(
            [
                (
                    "UPDATE submissions SET status = ?, answer = COALESCE(?, answer) WHERE key = ?",
                    (status, answer, key),
                )
            ]
        )

    def submissions(self) -> list[tuple[str, str, str, float, str, str | None]]:
        """``(key, document, body, created_at, status, answer)`` of each, oldest first."""
        rows = self._rows(
            "SELECT key, document, body, created_at, status, answer FROM submissions ORDER BY seq"
        )
        return [
            (str(k), str(d), str(b), float(c), str(s), None if a is None else str(a))
            for k, d, b, c, s, a in rows
        ]
