"""An in-memory store: real code with the SQLite store's semantics, for tests and embedding."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from ..exceptions import StoreError
from .base import StoredDocument
from .records import BlobProgress, RejectedUpdate, SubmissionRecord, plan_chunk, sha256_hex

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps the log and snapshots in dictionaries; loses everything with the process."""

    def __init__(self) -> None:
        self._log: dict[str, list[tuple[int, bytes]]] = {}
        self._snapshots: dict[str, tuple[bytes, int]] = {}
        self._seq = 0
        self._open = False
        self._blobs: dict[str, bytes] = {}
        self._uploads: dict[str, tuple[int, bytearray]] = {}  # key -> (declared size, bytes)
        self._submissions: dict[tuple[str, str], SubmissionRecord] = {}
        self._rejections: list[RejectedUpdate] = []

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

    async def last_seqs(self, documents: Sequence[str] | None = None) -> dict[str, int]:
        self._check()
        names = set(self._log) | set(self._snapshots) if documents is None else set(documents)
        found: dict[str, int] = {}
        for name in names:
            seqs = [seq for seq, _ in self._log.get(name, [])]
            if name in self._snapshots:
                seqs.append(self._snapshots[name][1])
            if seqs:
                found[name] = max(seqs)
        return found

    async def ping(self) -> None:
        self._check()

    # -- blobs ---------------------------------------------------------------------------------

    async def put_blob_chunk(
        self, key: str, sha256: str, size: int, offset: int, data: bytes
    ) -> BlobProgress:
        self._check()
        if key in self._blobs:
            return BlobProgress(len(self._blobs[key]), complete=True)
        known, held = self._uploads.get(key, (None, bytearray()))
        plan = plan_chunk(len(held), known, size, offset, data)
        if plan.restart:
            held = bytearray()
        held += plan.data
        self._uploads[key] = (size, held)
        if len(held) < size:
            return BlobProgress(len(held))
        del self._uploads[key]
        if sha256_hex(bytes(held)) != sha256:
            return BlobProgress(0, refused=True)
        self._blobs[key] = bytes(held)
        return BlobProgress(size, complete=True)

    async def blob_progress(self, key: str, size: int) -> BlobProgress:
        self._check()
        if key in self._blobs:
            return BlobProgress(len(self._blobs[key]), complete=True)
        known, held = self._uploads.get(key, (None, bytearray()))
        return BlobProgress(len(held) if known in (None, size) else 0)

    async def get_blob(self, key: str) -> bytes | None:
        self._check()
        return self._blobs.get(key)

    async def missing_blobs(self, keys: Sequence[str]) -> list[str]:
        self._check()
        return [key for key in keys if key not in self._blobs]

    # -- submissions and rejected updates ---------------------------------------------------------

    async def find_submission(self, document: str, key: str) -> SubmissionRecord | None:
        self._check()
        return self._submissions.get((document, key))

    async def add_submission(self, record: SubmissionRecord) -> SubmissionRecord:
        self._check()
        existing = self._submissions.get((record.document, record.key))
        if existing is not None:
            return existing
        self._seq += 1
        stored = dataclasses.replace(record, id=self._seq)
        self._submissions[(record.document, record.key)] = stored
        return stored

    async def submissions(self, document: str) -> list[SubmissionRecord]:
        self._check()
        found = [r for (doc, _), r in self._submissions.items() if doc == document]
        return sorted(found, key=lambda record: record.id)

    async def add_rejection(self, rejected: RejectedUpdate) -> None:
        self._check()
        self._seq += 1
        self._rejections.append(dataclasses.replace(rejected, id=self._seq))

    async def rejections(self, document: str | None = None) -> list[RejectedUpdate]:
        self._check()
        return [r for r in self._rejections if document is None or r.document == document]
