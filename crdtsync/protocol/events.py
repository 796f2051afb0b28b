"""The events a :class:`~crdtsync.protocol.session.SyncSession` returns for received frames.

Each is a frozen dataclass naming the document it concerns; :data:`Event` is
their union. What the owner of the session must do with each is in its docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import ErrorCode, ProtocolError
from .messages import ResumeEntry

__all__ = [
    "AckReceived",
    "AwarenessReceived",
    "BlobChunkReceived",
    "BlobQueried",
    "BlobStatusReceived",
    "ConnectionFailed",
    "DocumentClosed",
    "ErrorReceived",
    "Event",
    "ResumeAnswered",
    "ResumeRequested",
    "StatusReceived",
    "SubmissionAnswered",
    "SubmissionReceived",
    "SyncRequested",
    "Synced",
    "UpdateReceived",
]


@dataclass(frozen=True, slots=True)
class SyncRequested:
    """The peer sent its state vector: answer with SyncStep2 (``first`` on opening)."""

    document: str
    state_vector: bytes
    first: bool


@dataclass(frozen=True, slots=True)
class UpdateReceived:
    """An update to apply. ``seq`` is the Push sequence number, ``None`` for plain updates."""

    document: str
    update: bytes
    seq: int | None
    step2: bool = False


@dataclass(frozen=True, slots=True)
class Synced:
    """Device side: the relay's first SyncStep2 for the document arrived."""

    document: str


@dataclass(frozen=True, slots=True)
class AckReceived:
    document: str
    seq: int


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    document: str
    code: ErrorCode | int
    seq: int
    message: str


@dataclass(frozen=True, slots=True)
class StatusReceived:
    document: str
    synced: bool


@dataclass(frozen=True, slots=True)
class AwarenessReceived:
    """Awareness payload, or ``payload is None`` for a QueryAwareness."""

    document: str
    payload: bytes | None


@dataclass(frozen=True, slots=True)
class DocumentClosed:
    document: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SubmissionReceived:
    """Relay side: the device submits ``document`` (idempotent by ``key``)."""

    document: str
    key: str
    seq: int
    body: str


@dataclass(frozen=True, slots=True)
class SubmissionAnswered:
    """Device side: the relay's answer to submission ``key``."""

    document: str
    key: str
    body: str


@dataclass(frozen=True, slots=True)
class BlobChunkReceived:
    """Relay side: part of a blob referenced by ``document``."""

    document: str
    sha256: str
    size: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class BlobQueried:
    """Relay side: the device asks how much of a blob the relay holds."""

    document: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobStatusReceived:
    """Device side: how much of a blob the relay holds (``state``: a BlobState)."""

    document: str
    sha256: str
    have: int
    state: int


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    """Relay side: a device opened these documents at once (each is now OPEN); answer with
    the indexes of the entries whose digest differs from the relay's state (Resumed)."""

    entries: tuple[ResumeEntry, ...]
    document: str = ""


@dataclass(frozen=True, slots=True)
class ResumeAnswered:
    """Device side: the relay answered a resumed document. ``in_sync``: both hold the same
    state (the document is OPEN and synced, edits may go); otherwise send SyncStep1."""

    document: str
    in_sync: bool


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The peer broke the protocol: send ``data`` then close with ``error.close_code``."""

    error: ProtocolError
    data: bytes


Event = (
    SyncRequested
    | UpdateReceived
    | Synced
    | AckReceived
    | ErrorReceived
    | StatusReceived
    | AwarenessReceived
    | DocumentClosed
    | SubmissionReceived
    | SubmissionAnswered
    | BlobChunkReceived
    | BlobQueried
    | BlobStatusReceived
    | ResumeRequested
    | ResumeAnswered
    | ConnectionFailed
)
