"""Typed wire messages and the two framings.

Native framing (the ``/sync`` endpoint) multiplexes documents on one websocket::

    frame := var-string document, var-uint type, payload

Plain y-websocket framing (the ``/yjs/{doc}`` endpoint) has no document name::

    frame := var-uint type, payload

Types follow Hocuspocus where one exists; the toolkit's own start at 100:

====  ===============  ==============================================================
type  message          payload
====  ===============  ==============================================================
0     Sync             var-uint subtype (0 step 1, 1 step 2, 2 update), var-bytes data
1     Awareness        var-bytes awareness update
3     QueryAwareness   (empty)
7     Close            var-uint close code, var-string reason (leave one document)
8     SyncStatus       var-uint 1 when the last update was stored (Hocuspocus clients)
100   Push             var-uint seq, var-bytes update  (device → relay, acknowledged)
101   Ack              var-uint seq: every Push up to seq for this document is durable
102   Error            var-uint code, var-uint seq, var-string message
103   Submit           var-string key, var-uint seq, var-string JSON body (device → relay)
104   SubmitResult     var-string key, var-string JSON body (relay → device)
105   BlobPut          var-string sha256, var-uint size, var-uint offset, var-bytes chunk
106   BlobQuery        var-string sha256, var-uint size (device → relay: how much is there?)
107   BlobStatus       var-string sha256, var-uint bytes held, var-uint state (relay → device)
108   Resume           var-uint n; each: var-string doc, var-bytes digest, var-uint seq
109   Resumed          var-uint n; each: var-uint index of an entry to sync in full
====  ===============  ==============================================================

Resume and Resumed are connection-level (addressed to the document ``""``): a
device coming back opens many documents at once with a digest of each one's
state, and the relay names those that differ; the rest are in sync without a
byte more. Blob messages are addressed to the document that references the blob (access
rules are per document); a sha256 is 64 lowercase hex digits. Submission keys
are 1 to 128 characters of ``[A-Za-z0-9._:-]``.

Decoding is strict: a frame must be consumed exactly, unknown types and
subtypes are :class:`DecodeError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from ..exceptions import DecodeError, ErrorCode
from .codec import Reader, write_var_bytes, write_var_string, write_var_uint

__all__ = [
    "Ack",
    "Awareness",
    "BlobPut",
    "BlobQuery",
    "BlobState",
    "BlobStatus",
    "Close",
    "Error",
    "Frame",
    "Message",
    "MessageType",
    "Push",
    "QueryAwareness",
    "Resume",
    "ResumeEntry",
    "Resumed",
    "Submit",
    "SubmitResult",
    "SyncStatus",
    "SyncStep1",
    "SyncStep2",
    "SyncSubtype",
    "Update",
    "decode_frame",
    "decode_message",
    "encode_frame",
    "encode_message",
]


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3
    STATELESS = 5
    CLOSE = 7
    SYNC_STATUS = 8
    PUSH = 100
    ACK = 101
    ERROR = 102
    SUBMIT = 103
    SUBMIT_RESULT = 104
    BLOB_PUT = 105
    BLOB_QUERY = 106
    BLOB_STATUS = 107
    RESUME = 108
    RESUMED = 109


class BlobState(IntEnum):
    PARTIAL = 0  # the relay holds the first ``have`` bytes: send the rest
    COMPLETE = 1  # stored and verified by its hash
    REFUSED = 2  # the bytes did not hash to the name, or the blob is too large: start over


class SyncSubtype(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


@dataclass(frozen=True, slots=True)
class SyncStep1:
    """The sender's state vector; the receiver answers with SyncStep2."""

    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    """Everything the receiver lacked, relative to the state vector it sent."""

    update: bytes


@dataclass(frozen=True, slots=True)
class Update:
    """An incremental update (y-protocols messageYjsUpdate)."""

    update: bytes


@dataclass(frozen=True, slots=True)
class Awareness:
    payload: bytes


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    """Leave one document (native framing) with a code and reason."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """Hocuspocus-style: the last update from this connection was stored."""

    synced: bool


@dataclass(frozen=True, slots=True)
class Push:
    """A device's update with its outbox sequence number (``seq`` 0: not from the outbox)."""

    seq: int
    update: bytes


@dataclass(frozen=True, slots=True)
class Ack:
    """Every Push for this document with a sequence number up to ``seq`` is durably stored."""

    seq: int


@dataclass(frozen=True, slots=True)
class Error:
    """A typed error. ``seq`` names the Push it refers to, 0 when none."""

    code: int
    seq: int
    message: str

    @property
    def error_code(self) -> ErrorCode | int:
        try:
            return ErrorCode(self.code)
        except ValueError:
            return self.code


@dataclass(frozen=True, slots=True)
class Submit:
    """Send a document for validation and an immutable record; idempotent by ``key``.

    ``seq`` is the document's newest outbox sequence when the submission was queued:
    the relay answers only once everything up to it is committed. ``body`` is JSON.
    """

    key: str
    seq: int
    body: str


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The relay's answer to Submit ``key``; ``body`` is JSON. The same key, the same answer."""

    key: str
    body: str


@dataclass(frozen=True, slots=True)
class BlobPut:
    """Bytes ``offset`` to ``offset + len(data)`` of the blob named ``sha256`` (``size`` in all)."""

    sha256: str
    size: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class BlobQuery:
    """Ask how much of the blob the relay holds (it answers with BlobStatus)."""

    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobStatus:
    """How much of a blob the relay holds, and whether it is complete."""

    sha256: str
    have: int
    state: int

    @property
    def blob_state(self) -> BlobState | int:
        try:
            return BlobState(self.state)
        except ValueError:
            return self.state


@dataclass(frozen=True, slots=True)
class ResumeEntry:
    """One document of a Resume: its name, the digest of the device's state of it, and
    its newest outbox sequence (0: nothing pending)."""

    document: str
    digest: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class Resume:
    """Open many documents at once: those whose digest matches the relay's are in sync."""

    entries: tuple[ResumeEntry, ...]


@dataclass(frozen=True, slots=True)
class Resumed:
    """The relay's answer to the oldest unanswered Resume: the indexes of its entries that
    must sync in full (SyncStep1 from the device). Every other entry is in sync."""

    stale: tuple[int, ...]


Message = (
    SyncStep1
    | SyncStep2
    | Update
    | Awareness
    | QueryAwareness
    | Close
    | SyncStatus
    | Push
    | Ack
    | Error
    | Submit
    | SubmitResult
    | BlobPut
    | BlobQuery
    | BlobStatus
    | Resume
    | Resumed
)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@dataclass(frozen=True, slots=True)
class Frame:
    """One native frame: a message addressed to a document."""

    document: str
    message: Message


def encode_message(message: Message) -> bytes:
    """Encode a message without a document name (y-websocket framing)."""
    match message:
        case SyncStep1(state_vector=data):
            return bytes((MessageType.SYNC, SyncSubtype.STEP1)) + write_var_bytes(data)
        case SyncStep2(update=data):
            return bytes((MessageType.SYNC, SyncSubtype.STEP2)) + write_var_bytes(data)
        case Update(update=data):
            return bytes((MessageType.SYNC, SyncSubtype.UPDATE)) + write_var_bytes(data)
        case Awareness(payload=data):
            return bytes((MessageType.AWARENESS,)) + write_var_bytes(data)
        case QueryAwareness():
            return bytes((MessageType.QUERY_AWARENESS,))
        case Close(code=code, reason=reason):
            return bytes((MessageType.CLOSE,)) + write_var_uint(code) + write_var_string(reason)
        case SyncStatus(synced=synced):
            return bytes((MessageType.SYNC_STATUS, 1 if synced else 0))
        case Push(seq=seq, update=data):
            return bytes((MessageType.PUSH,)) + write_var_uint(seq) + write_var_bytes(data)
        case Ack(seq=seq):
            return bytes((MessageType.ACK,)) + write_var_uint(seq)
        case Error(code=code, seq=seq, message=text):
            return (
                bytes((MessageType.ERROR,))
                + write_var_uint(code)
                + write_var_uint(seq)
                + write_var_string(text)
            )
        case Submit(key=key, seq=seq, body=body):
            return (
                bytes((MessageType.SUBMIT,))
                + write_var_string(key)
                + write_var_uint(seq)
                + write_var_string(body)
            )
        case SubmitResult(key=key, body=body):
            return (
                bytes((MessageType.SUBMIT_RESULT,)) + write_var_string(key) + write_var_string(body)
            )
        case BlobPut(sha256=sha, size=size, offset=offset, data=data):
            return (
                bytes((MessageType.BLOB_PUT,))
                + write_var_string(sha)
                + write_var_uint(size)
                + write_var_uint(offset)
                + write_var_bytes(data)
            )
        case BlobQuery(sha256=sha, size=size):
            return bytes((MessageType.BLOB_QUERY,)) + write_var_string(sha) + write_var_uint(size)
        case Resume(entries=entries):
            out = bytearray((MessageType.RESUME,))
            out += write_var_uint(len(entries))
            for entry in entries:
                out += write_var_string(entry.document)
                out += write_var_bytes(entry.digest)
                out += write_var_uint(entry.seq)
            return bytes(out)
        case Resumed(stale=stale):
            indexes = b"".join(write_var_uint(index) for index in stale)
            return bytes((MessageType.RESUMED,)) + write_var_uint(len(stale)) + indexes
        case BlobStatus(sha256=sha, have=have, state=state):
            return (
                bytes((MessageType.BLOB_STATUS,))
                + write_var_string(sha)
                + write_var_uint(have)
                + write_var_uint(state)
            )
    raise TypeError(f"not a message: {message!r}")  # pragma: no cover


def encode_frame(document: str, message: Message) -> bytes:
    """Encode a native frame: document name, then the message."""
    return write_var_string(document) + encode_message(message)


def _read_message(reader: Reader) -> Message:
    kind = reader.read_var_uint()
    message: Message
    if kind == MessageType.SYNC:
        subtype = reader.read_var_uint()
        data = reader.read_var_bytes()
        if subtype == SyncSubtype.STEP1:
            message = SyncStep1(data)
        elif subtype == SyncSubtype.STEP2:
            message = SyncStep2(data)
        elif subtype == SyncSubtype.UPDATE:
            message = Update(data)
        else:
            raise DecodeError(f"unknown sync message subtype {subtype}")
    elif kind == MessageType.AWARENESS:
        message = Awareness(reader.read_var_bytes())
    elif kind == MessageType.QUERY_AWARENESS:
        message = QueryAwareness()
    elif kind == MessageType.CLOSE:
        message = Close(reader.read_var_uint(), reader.read_var_string())
    elif kind == MessageType.SYNC_STATUS:
        message = SyncStatus(reader.read_var_uint() == 1)
    elif kind == MessageType.PUSH:
        message = Push(reader.read_var_uint(), reader.read_var_bytes())
    elif kind == MessageType.ACK:
        message = Ack(reader.read_var_uint())
    elif kind == MessageType.ERROR:
        message = Error(reader.read_var_uint(), reader.read_var_uint(), reader.read_var_string())
    elif kind == MessageType.SUBMIT:
        message = Submit(_read_key(reader), reader.read_var_uint(), reader.read_var_string())
    elif kind == MessageType.SUBMIT_RESULT:
        message = SubmitResult(_read_key(reader), reader.read_var_string())
    elif kind == MessageType.BLOB_PUT:
        sha, size, offset = _read_sha(reader), reader.read_var_uint(), reader.read_var_uint()
        message = BlobPut(sha, size, offset, reader.read_var_bytes())
        if offset + len(message.data) > size:
            raise DecodeError(f"blob chunk ends at {offset + len(message.data)}, past size {size}")
    elif kind == MessageType.BLOB_QUERY:
        message = BlobQuery(_read_sha(reader), reader.read_var_uint())
    elif kind == MessageType.RESUME:
        message = Resume(tuple(_read_entry(reader) for _ in range(_read_count(reader))))
    elif kind == MessageType.RESUMED:
        message = Resumed(tuple(reader.read_var_uint() for _ in range(_read_count(reader))))
    elif kind == MessageType.BLOB_STATUS:
        message = BlobStatus(_read_sha(reader), reader.read_var_uint(), reader.read_var_uint())
    else:
        raise DecodeError(f"unknown message type {kind}")
    reader.finish()
    return message


def _read_count(reader: Reader) -> int:
    """A count of items that follow (each takes a byte at least): more than the bytes left
    is malformed."""
    count = reader.read_var_uint()
    if count > reader.remaining:
        raise DecodeError(f"count {count} exceeds the {reader.remaining} bytes left")
    return count


def _read_entry(reader: Reader) -> ResumeEntry:
    document = reader.read_var_string()
    digest = reader.read_var_bytes()
    if len(digest) > 64:
        raise DecodeError(f"a resume digest of {len(digest)} bytes (64 at most)")
    return ResumeEntry(document, digest, reader.read_var_uint())


def _read_sha(reader: Reader) -> str:
    sha = reader.read_var_string()
    if not _SHA256.fullmatch(sha):
        raise DecodeError(f"not a sha256 (64 lowercase hex digits): {sha[:80]!r}")
    return sha


def _read_key(reader: Reader) -> str:
    key = reader.read_var_string()
    if not _KEY.fullmatch(key):
        raise DecodeError(f"invalid submission key {key[:80]!r}")
    return key


def decode_message(data: bytes) -> Message:
    """Decode a y-websocket frame (no document name). Raises :class:`DecodeError`."""
    return _read_message(Reader(data))


def decode_frame(data: bytes) -> Frame:
    """Decode a native frame. Raises :class:`DecodeError` on any malformed input."""
    reader = Reader(data)
    document = reader.read_var_string()
    try:
        return Frame(document, _read_message(reader))
    except DecodeError as exc:
        exc.document = document
        raise
