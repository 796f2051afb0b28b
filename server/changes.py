"""The change feed: an append-only, per-tenant ordered log of what happened to documents.

Table ``changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant, document, kind, at, data)``;
``data`` is a JSON object as text, ``at`` the relay's clock (ISO-8601 UTC).
On PostgreSQL the key becomes ``BIGSERIAL`` (see below for what else changes).

Callers append with :meth:`ChangeFeed.record` or, for a batch (one relay group
commit), :meth:`ChangeFeed.record_many`: one transaction, contiguous sequence
numbers. Whoever must write its own rows in the same transaction as the changes
(the work-order views) uses :meth:`ChangeFeed.transaction`. Readers page with
:meth:`ChangeFeed.since` and an integer cursor: the ``seq`` of the last change
they saw (0 for the beginning).

**Why a cursor never skips a change.** A reader that has seen ``seq = N`` must
never later find a committed row ``seq < N`` that was not there before. With
SQLite this holds whoever writes: the database admits one writer at a time
(across connections and processes), ``AUTOINCREMENT`` hands out ``seq`` inside
the writing transaction, so the transaction holding ``N`` commits (or rolls
back, and ``N`` is reused, never seen) before any transaction can be given
``N + 1``. Rows therefore become visible in ``seq`` order, and ``seq > cursor``
finds exactly what is new. In this process the writes also go through the
office connection's lock, and live subscribers are told about a batch while
that lock is still held, so they too receive changes in ``seq`` order.
On PostgreSQL, sequences are not transactional: ``N + 1`` can commit before
``N``. There, :meth:`record_many` must serialise writers (for instance
``LOCK TABLE changes IN EXCLUSIVE MODE`` or an advisory lock inside the
transaction) to keep this guarantee.

Hooks: ``in_transaction`` callbacks run inside the appending transaction (the
webhook deliveries are created there, so they exist if and only if the change
does); ``after_commit`` callbacks run synchronously right after the commit, in
``seq`` order (the live event broker).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .officedb import OfficeDB, Transaction, format_time, parse_time

__all__ = ["SCHEMA", "Change", "ChangeFeed", "FeedTransaction", "NewChange"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    document TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_tenant ON changes (tenant, seq);
"""

_KIND = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class NewChange:
    """A change to append. ``kind`` is dotted lower-case, e.g. ``document.updated``."""

    tenant: str
    document: str
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    """A recorded change; ``seq`` orders all changes of all tenants."""

    seq: int
    tenant: str
    document: str
    kind: str
    at: datetime
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "tenant": self.tenant,
            "document": self.document,
            "kind": self.kind,
            "at": format_time(self.at),
            "data": self.data,
        }


class FeedTransaction:
    """Changes recorded inside one :meth:`ChangeFeed.transaction`; valid inside it only."""

    def __init__(self, tx: Transaction, feed: ChangeFeed) -> None:
        self.tx = tx
        self.changes: list[Change] = []
        self._feed = feed
        self._at = feed.clock()

    async def record(self, entry: NewChange) -> Change:
        """Append ``entry``; its ``seq`` follows the previous one's. ValueError for a bad kind
        or data that is not JSON (nothing of this entry is written)."""
        row = self._feed._row(entry, self._at)
        seq = await self.tx.insert(
            "INSERT INTO changes (tenant, document, kind, at, data) VALUES (?, ?, ?, ?, ?)", row
        )
        change = Change(seq, entry.tenant, entry.document, entry.kind, self._at, dict(entry.data))
        self.changes.append(change)
        return change


InTransactionHook = Callable[[Transaction, Sequence[Change]], Awaitable[None]]
AfterCommitHook = Callable[[Sequence[Change]], None]


def _change(row: sqlite3.Row) -> Change:
    return Change(
        seq=int(row["seq"]),
        tenant=row["tenant"],
        document=row["document"],
        kind=row["kind"],
        at=parse_time(row["at"]),
        data=json.loads(row["data"]),
    )


class ChangeFeed:
    """The ``changes`` table in an :class:`~server.officedb.OfficeDB` opened with :data:`SCHEMA`."""

    def __init__(self, db: OfficeDB, *, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))
        self.in_transaction: list[InTransactionHook] = []
        self.after_commit: list[AfterCommitHook] = []

    async def record(
        self, tenant: str, document: str, kind: str, data: Mapping[str, Any] | None = None
    ) -> int:
        """Append one change; returns its ``seq``."""
        [change] = await self.record_many([NewChange(tenant, document, kind, data or {})])
        return change.seq

    async def record_many(self, entries: Sequence[NewChange]) -> list[Change]:
        """Append ``entries`` in one short transaction; returns them with contiguous ``seq``.

        Raises ValueError for a bad kind or data that is not JSON, and
        :class:`crdtsync.StoreError` when the database fails (nothing is then
        recorded, no hook's writes either).
        """
        if not entries:
            return []
        at = self.clock()
        for entry in entries:
            self._row(entry, at)  # every entry is checked before the transaction begins
        async with self.transaction() as batch:
            for entry in entries:
                await batch.record(entry)
        return batch.changes

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FeedTransaction]:
        """One office-database transaction that the caller writes its own rows in
        (``batch.tx``) and records changes in (``await batch.record(entry)``).

        On a clean exit the ``in_transaction`` hooks run over every change
        recorded, the transaction commits, then the ``after_commit`` hooks run;
        an exception rolls everything back (the caller's rows too) and
        propagates. Keep the block short: it holds the database's write lock.
        """
        async with self.db.transaction() as tx:
            batch = FeedTransaction(tx, self)
            yield batch
            if batch.changes:
                for hook in self.in_transaction:
                    await hook(tx, batch.changes)
        if batch.changes:
            self._publish(batch.changes)

    def _publish(self, changes: Sequence[Change]) -> None:
        # Runs with no suspension point between the COMMIT completing and here
        # (releasing an asyncio.Lock wakes the next waiter only once this task
        # yields), so no later batch can commit and publish in between: the
        # hooks see batches in seq order.
        for hook in self.after_commit:
            hook(changes)

    @staticmethod
    def _row(entry: NewChange, at: datetime) -> tuple[str, str, str, str, str]:
        if not _KIND.fullmatch(entry.kind) or len(entry.kind) > 100:
            raise ValueError(f"invalid change kind {entry.kind!r}")
        data = json.dumps(dict(entry.data), separators=(",", ":"), allow_nan=False)
        return (entry.tenant, entry.document, entry.kind, format_time(at), data)

    async def since(
        self, tenant: str, cursor: int = 0, limit: int = 100
    ) -> tuple[list[Change], int]:
        """The tenant's changes with ``seq > cursor``, oldest first, and the next cursor.

        The next cursor is the last returned ``seq``, or ``cursor`` itself when
        nothing is new; pass it back to continue. ``limit`` is clamped to 1..1000.
        """
        limit = max(1, min(limit, MAX_LIMIT))
        async with self.db.read() as tx:
            rows = await tx.fetchall(
                "SELECT seq, tenant, document, kind, at, data FROM changes "
                "WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?",
                (tenant, cursor, limit),
            )
        items = [_change(row) for row in rows]
        return items, (items[-1].seq if items else cursor)

    async def head(self) -> int:
        """The highest ``seq`` recorded so far (0 when empty), over all tenants."""
        async with self.db.read() as tx:
            row = await tx.fetchone("SELECT MAX(seq) FROM changes")
        return int(row[0]) if row is not None and row[0] is not None else 0
