"""An in-memory store: real code with the SQLite store's semantics, for tests and embedding."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

from ..exceptions import StoreError
from .base import StoredDocument

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps the log and snapshots in dictionaries; loses everything with the process."""

    def __init__(self) -> None:
        self._log: dict[str, list[tuple[int, bytes]]] = {}
        self._snapshots: dict[str, tuple[bytes, int]] = {}
        self._seq = 0
        self._open = False

    async def __aenter__(self) -> Self:
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False

    def _check(self) -> None:
        if not self._open:
            raise StoreError("store is not open: use 'async with'")

    async def append(self, entries: Sequence[tuple[str, bytes]]) -> list[int]:
        self._check()
        seqs = []
        for document, update in entries:
            self._seq += 1
            self._log.setdefault(document, []).append((self._seq, bytes(update)))
            seqs.append(self._seq)
        return seqs

    async def load(self, document: str) -> StoredDocument:
        self._check()
        snapshot, snapshot_seq = self._snapshots.get(document, (None, 0))
        log = self._log.get(document, [])
        last = max([snapshot_seq, *(seq for seq, _ in log)])
        return StoredDocument(
            document, snapshot, snapshot_seq, [update for _, update in log], last_seq=last
        )

    async def compact(self, document: str, snapshot: bytes, through_seq: int) -> None:
        self._check()
        self._snapshots[document] = (bytes(snapshot), through_seq)
        self._log[document] = [(s, u) for s, u in self._log.get(document, []) if s > through_seq]

    async def documents(self) -> list[str]:
        self._check()
        return sorted(set(self._log) | set(self._snapshots))

    async def ping(self) -> None:
        self._check()
