"""What a device reports: its status, refused changes, uploads, submissions, the archive.

Private module: every name here is public through :mod:`crdtsync.device`.
Times are wall-clock seconds (``time.time()``) recorded for people to read;
nothing is ever ordered by them (rows are ordered by integer sequences).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "ArchivedUpdate",
    "Backoff",
    "DeviceStatus",
    "Rejection",
    "SubmissionState",
    "SubmissionStatus",
    "Upload",
    "UploadState",
]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(maximum, initial * factor**n))``."""

    initial: float = 0.2
    maximum: float = 15.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.maximum, self.initial * self.factor ** min(attempt, 32))
        return rng.uniform(ceiling / 10, ceiling)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A local change the relay refused.

    ``discarded`` counts the local changes that were still unacknowledged when
    the replica was replaced because of it (a refused field write); they are
    kept in the device's archive (:meth:`Device.archived`), never applied again.
    """

    document: str
    seq: int
    code: int
    message: str
    discarded: int = 0


class UploadState(StrEnum):
    PENDING = "pending"  # not (yet) complete on the relay
    UPLOADED = "uploaded"  # the relay holds the whole blob, verified by its hash
    FAILED = "failed"  # the relay refused it twice: ``reason`` says why


@dataclass(frozen=True, slots=True)
class Upload:
    """A blob the device uploads for ``document`` (blob access is per document)."""

    document: str
    sha256: str
    size: int
    state: UploadState
    reason: str | None = None


class SubmissionStatus(StrEnum):
    QUEUED = "queued"  # on the device, not sent yet
    SENT = "sent"  # sent, no answer yet (re-sent with the same key after a reconnect)
    WAITING = "waiting"  # the relay lacks blobs the document references: sent again later
    ACCEPTED = "accepted"  # final: the relay recorded the work
    REJECTED = "rejected"  # final: the relay refused it (the answer says why)

    @property
    def final(self) -> bool:
        return self in (SubmissionStatus.ACCEPTED, SubmissionStatus.REJECTED)


@dataclass(frozen=True, slots=True)
class SubmissionState:
    """A submission as the device knows it. ``answer`` is the relay's last JSON answer."""

    key: str
    document: str
    status: SubmissionStatus
    body: dict[str, Any]
    created_at: float
    answer: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.status.final


@dataclass(frozen=True, slots=True)
class ArchivedUpdate:
    """Local history moved aside when a replica was replaced (see :class:`Rejection`).

    ``kind`` is ``snapshot`` (the compacted base of the log), ``update`` (one
    logged update, ``unacknowledged`` when it was a local change still in the
    outbox), ``outbox`` (an unacknowledged change already folded into the
    snapshot: no data of its own) or ``retired`` (an edit made to the replaced
    document object after the replacement). ``rejection`` is the sequence of
    the refused change that caused it.
    """

    id: int
    document: str
    seq: int
    kind: str
    data: bytes
    unacknowledged: bool
    rejection: int
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """What a device shows its user. ``last_sync`` is wall-clock seconds (time.time()).

    ``withdrawn`` lists documents whose access the relay withdrew: kept on the
    device, not synced, left out of :attr:`in_sync`. ``uploads_pending`` and
    ``submissions_pending`` count, per document, blobs not yet complete on the
    relay and submissions without a final answer (queued, sent or waiting).
    """

    online: bool
    connected: bool
    pending: dict[str, int]
    synced: dict[str, bool]
    last_sync: float | None
    reconnects: int
    last_error: str | None
    rejected: list[Rejection] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    uploads_pending: dict[str, int] = field(default_factory=dict)
    uploads_failed: list[Upload] = field(default_factory=list)
    submissions_pending: dict[str, int] = field(default_factory=dict)

    @property
    def total_pending(self) -> int:
        return sum(self.pending.values())

    @property
    def in_sync(self) -> bool:
        """Connected, every document synced, nothing waiting for an ack (withdrawn
        documents left out)."""
        withdrawn = set(self.withdrawn)
        return (
            self.connected
            and all(ok for name, ok in self.synced.items() if name not in withdrawn)
            and not any(n for name, n in self.pending.items() if name not in withdrawn)
        )
