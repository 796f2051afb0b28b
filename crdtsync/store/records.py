"""What the relay stores besides updates: blobs, submission records and rejected updates.

Pure parts live here (the record types, the seams, and the rules of a resumable
blob upload); the SQLite and in-memory stores only execute them.

Blob uploads are resumable and idempotent. The relay keeps the first ``have``
bytes of a blob it does not hold yet; a chunk is accepted only where it
continues them (bytes it already has are skipped, a chunk beyond them is
ignored and the answer says where to resume). When ``have`` reaches the
declared size, the bytes are hashed: a match stores the blob, a mismatch drops
the upload (``REFUSED``) so the device starts over. A blob is stored once per
key however often it is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "BlobProgress",
    "BlobStore",
    "ChunkPlan",
    "RecordStore",
    "RejectedUpdate",
    "SubmissionRecord",
    "plan_chunk",
    "sha256_hex",
]


@dataclass(frozen=True, slots=True)
class BlobProgress:
    """How much of a blob the store holds."""

    have: int
    complete: bool = False
    refused: bool = False


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """What to do with a received chunk: append ``data`` at ``have`` (empty: nothing)."""

    data: bytes
    restart: bool = False  # the declared size changed: drop the partial upload first


def plan_chunk(have: int, known_size: int | None, size: int, offset: int, data: bytes) -> ChunkPlan:
    """Which bytes of a chunk continue a partial upload of ``have`` bytes."""
    if known_size is not None and known_size != size:
        return ChunkPlan(data if offset == 0 else b"", restart=True)
    if offset > have or offset + len(data) <= have:
        return ChunkPlan(b"")
    return ChunkPlan(data[have - offset :])


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class SubmissionRecord:
    """A final answer to a submission: accepted (the immutable record) or rejected.

    ``result`` is the JSON answer sent to the device, kept verbatim so that a retry
    with the same key gets the same answer. ``snapshot`` is the document's full
    state (a pycrdt update) when the answer was given; ``recorded_at`` is the
    relay's clock (seconds since the epoch). ``id`` is assigned by the store.
    """

    document: str
    key: str
    accepted: bool
    result: str
    content_hash: str
    snapshot: bytes
    recorded_at: float
    id: int = 0


@dataclass(frozen=True, slots=True)
class RejectedUpdate:
    """An update the relay refused (kept aside for audit, never applied to the document)."""

    document: str
    who: str
    reason: str
    update: bytes
    at: float
    id: int = 0


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed blobs, uploaded in resumable chunks. ``key`` names a blob in its
    namespace (for example ``t/<tenant>/<sha256>``); ``sha256`` is what its bytes hash to."""

    async def put_blob_chunk(
        self, key: str, sha256: str, size: int, offset: int, data: bytes
    ) -> BlobProgress:
        """Take bytes ``offset..offset+len(data)`` of the blob; return the progress after."""
        ...

    async def blob_progress(self, key: str, size: int) -> BlobProgress:
        """How much of the blob is held (complete or partial)."""
        ...

    async def get_blob(self, key: str) -> bytes | None:
        """The blob's bytes, or None unless it is complete."""
        ...

    async def missing_blobs(self, keys: Sequence[str]) -> list[str]:
        """The keys among ``keys`` that are not stored complete, in their order."""
        ...


@runtime_checkable
class RecordStore(Protocol):
    """Submission records (idempotent by document and key) and rejected updates."""

    async def find_submission(self, document: str, key: str) -> SubmissionRecord | None: ...

    async def add_submission(self, record: SubmissionRecord) -> SubmissionRecord:
        """Store ``record`` unless one with its document and key exists; return the stored one."""
        ...

    async def submissions(self, document: str) -> list[SubmissionRecord]:
        """Every final answer for ``document``, oldest first."""
        ...

    async def add_rejection(self, rejected: RejectedUpdate) -> None: ...

    async def rejections(self, document: str | None = None) -> list[RejectedUpdate]:
        """Rejected updates, oldest first (of one document, or all)."""
        ...
