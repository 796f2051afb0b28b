"""The persistence seam of the relay.

A store keeps, per document, an append-only log of updates ordered by an integer
sequence, and at most one snapshot that stands for every update up to its
``through_seq``. Loading a document means applying the snapshot and then the log
in sequence order.

Contract of every implementation:

* :meth:`Store.append` writes a batch in **one** transaction and returns only
  after it committed: the relay acknowledges updates when it returns (group
  commit). Sequence numbers grow strictly with commit order.
* :meth:`Store.compact` replaces the snapshot and deletes the log entries it
  covers in one transaction: a crash leaves the old state or the new one.
* Failures surface as :class:`~crdtsync.exceptions.StoreError`.
* Lifecycle is ``async with``; nothing may be called outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

__all__ = ["Store", "StoredDocument"]


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """What a store holds for one document."""

    name: str
    snapshot: bytes | None = None
    snapshot_seq: int = 0
    updates: list[bytes] = field(default_factory=list)
    last_seq: int = 0  # highest sequence covered (snapshot or log); 0 if nothing stored

    @property
    def log_bytes(self) -> int:
        return sum(len(update) for update in self.updates)

    @property
    def empty(self) -> bool:
        return self.snapshot is None and not self.updates


@runtime_checkable
class Store(Protocol):
    """Durable update log plus snapshots, one namespace of documents."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def append(self, entries: Sequence[tuple[str, bytes]]) -> list[int]:
        """Store ``(document, update)`` pairs in one transaction; return their sequences."""
        ...

    async def load(self, document: str) -> StoredDocument:
        """Everything stored for ``document`` (empty if unknown)."""
        ...

    async def compact(self, document: str, snapshot: bytes, through_seq: int) -> None:
        """Make ``snapshot`` the document's base and drop log entries up to ``through_seq``."""
        ...

    async def documents(self) -> list[str]:
        """Names of every stored document, sorted."""
        ...

    async def last_seqs(self, documents: Sequence[str] | None = None) -> dict[str, int]:
        """The highest sequence stored for each document (snapshot or log): of every stored
        document, or of those in ``documents`` (unknown ones are left out)."""
        ...

    async def ping(self) -> None:
        """Raise StoreError unless the store answers."""
        ...
