"""The sync session: a sans-I/O state machine for one connection.

A :class:`SyncSession` takes the bytes of one received frame and returns
events; its ``send_*`` methods return the bytes of one frame to send. It never
awaits, never touches a socket and never holds a CRDT document: the device and
the relay own the documents and decide what to answer.

Each document on a connection has a :class:`DocState`. Which message a role may
receive in which state, and the state that follows, is the table
:data:`TRANSITIONS`; anything not in it is a protocol violation. A violation,
like any malformed frame, never raises into the caller: :meth:`receive_frame`
returns a single :class:`ConnectionFailed` event carrying the typed error and
the Error frame to send before closing with ``error.close_code``. After that
the session refuses further input.

Invariants:

* frames above ``max_frame_size`` and updates above ``max_update_size`` are
  refused before they are decoded further;
* document names are 1 to 256 characters of ``[A-Za-z0-9._:@/+-]``;
* a connection opens at most ``max_documents`` documents at once;
* after this side closes a document, frames the peer sent for it before it saw
  the Close are dropped (they were in flight), until it opens it again.
"""

from __future__ import annotations

import re
from collections import deque
from enum import Enum

from ..exceptions import (
    DecodeError,
    ErrorCode,
    FrameTooLarge,
    InvalidDocumentName,
    ProtocolError,
    TooManyDocuments,
    UnexpectedMessage,
)
from .events import (
    AckReceived,
    AwarenessReceived,
    BlobChunkReceived,
    BlobQueried,
    BlobStatusReceived,
    ConnectionFailed,
    DocumentClosed,
    ErrorReceived,
    Event,
    ResumeAnswered,
    ResumeRequested,
    StatusReceived,
    SubmissionAnswered,
    SubmissionReceived,
    Synced,
    SyncRequested,
    UpdateReceived,
)
from .messages import (
    Ack,
    Awareness,
    BlobPut,
    BlobQuery,
    BlobStatus,
    Close,
    Error,
    Message,
    Push,
    QueryAwareness,
    Resume,
    Resumed,
    ResumeEntry,
    Submit,
    SubmitResult,
    SyncStatus,
    SyncStep1,
    SyncStep2,
    Update,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)

__all__ = ["TRANSITIONS", "DocState", "Role", "SyncSession", "validate_document_name"]

_NAME = re.compile(r"[A-Za-z0-9._:@/+\-]{1,256}")


def validate_document_name(name: str) -> str:
    """Return ``name`` if it is a valid document name, else raise InvalidDocumentName."""
    if not _NAME.fullmatch(name):
        raise InvalidDocumentName(f"invalid document name {name[:80]!r}", document=name[:256])
    return name


class Role(Enum):
    DEVICE = "device"
    RELAY = "relay"


class DocState(Enum):
    CLOSED = "closed"
    OPENING = "opening"  # device sent SyncStep1, waits for the relay's SyncStep2
    OPEN = "open"


_C, _O, _G = DocState.CLOSED, DocState.OPENING, DocState.OPEN

#: (role, state, received message class) -> next state. Everything else is illegal.
TRANSITIONS: dict[tuple[Role, DocState, type[Message]], DocState] = {
    # The relay: a peer opens a document with SyncStep1, then sends updates.
    (Role.RELAY, _C, SyncStep1): _G,
    (Role.RELAY, _G, SyncStep1): _G,
    (Role.RELAY, _G, SyncStep2): _G,
    (Role.RELAY, _G, Update): _G,
    (Role.RELAY, _G, Push): _G,
    (Role.RELAY, _G, Awareness): _G,
    (Role.RELAY, _G, QueryAwareness): _G,
    (Role.RELAY, _G, Close): _C,
    (Role.RELAY, _C, Close): _C,
    (Role.RELAY, _G, Submit): _G,
    (Role.RELAY, _G, BlobPut): _G,
    (Role.RELAY, _G, BlobQuery): _G,
    # The device: it opened the document; the relay answers, then streams.
    (Role.DEVICE, _O, SyncStep2): _G,
    (Role.DEVICE, _G, SyncStep2): _G,
    (Role.DEVICE, _O, SyncStep1): _O,
    (Role.DEVICE, _G, SyncStep1): _G,
    (Role.DEVICE, _O, Update): _O,
    (Role.DEVICE, _G, Update): _G,
    (Role.DEVICE, _O, Ack): _O,
    (Role.DEVICE, _G, Ack): _G,
    (Role.DEVICE, _O, SyncStatus): _O,
    (Role.DEVICE, _G, SyncStatus): _G,
    (Role.DEVICE, _O, Awareness): _O,
    (Role.DEVICE, _G, Awareness): _G,
    (Role.DEVICE, _O, QueryAwareness): _O,
    (Role.DEVICE, _G, QueryAwareness): _G,
    (Role.DEVICE, _O, Close): _C,
    (Role.DEVICE, _G, Close): _C,
    (Role.DEVICE, _C, Close): _C,
    (Role.DEVICE, _C, Error): _C,
    (Role.DEVICE, _O, Error): _O,
    (Role.DEVICE, _G, Error): _G,
    # Answers may arrive after the relay closed the document (access withdrawn).
    (Role.DEVICE, _C, SubmitResult): _C,
    (Role.DEVICE, _O, SubmitResult): _O,
    (Role.DEVICE, _G, SubmitResult): _G,
    (Role.DEVICE, _C, BlobStatus): _C,
    (Role.DEVICE, _O, BlobStatus): _O,
    (Role.DEVICE, _G, BlobStatus): _G,
}


class SyncSession:
    """Protocol state of one connection, for one role.

    ``document`` selects the framing: ``None`` for native multiplexed frames,
    a document name for plain y-websocket frames addressed to that document.
    """

    def __init__(
        self,
        role: Role,
        *,
        document: str | None = None,
        max_frame_size: int = 16 * 1024 * 1024,
        max_update_size: int = 8 * 1024 * 1024,
        max_documents: int = 10_000,
    ) -> None:
        self.role = role
        self.single_document = validate_document_name(document) if document is not None else None
        self.max_frame_size = max_frame_size
        self.max_update_size = max_update_size
        self.max_documents = max_documents
        self._states: dict[str, DocState] = {}
        # Documents this side closed: the peer may still send for them until it reads the
        # Close, so what arrives for them (but a new SyncStep1) is dropped, not refused.
        self._closed_here: set[str] = set()
        self._resuming: deque[list[str]] = deque()  # device: Resume batches not answered yet
        self.failure: ProtocolError | None = None
        if self.single_document is not None and role is Role.RELAY:
            # A y-websocket connection is its document: open from the first byte, so the
            # client's SyncStep2 answering our SyncStep1 is legal whatever arrives first.
            self._states[self.single_document] = DocState.OPEN

    # -- state -------------------------------------------------------------------------------

    def state(self, document: str) -> DocState:
        return self._states.get(document, DocState.CLOSED)

    @property
    def open_documents(self) -> list[str]:
        return list(self._states)

    # -- receiving ---------------------------------------------------------------------------

    def receive_frame(self, data: bytes) -> list[Event]:
        """Parse one frame. Never raises: a violation yields one ConnectionFailed event."""
        if self.failure is not None:
            return []
        try:
            return self._receive(data)
        except ProtocolError as exc:
            return [self._fail(exc)]

    def _receive(self, data: bytes) -> list[Event]:
        if len(data) > self.max_frame_size:
            raise FrameTooLarge(f"frame of {len(data)} bytes exceeds {self.max_frame_size}")
        if self.single_document is not None:
            document, message = self.single_document, decode_message(data)
        else:
            frame = decode_frame(data)
            document, message = frame.document, frame.message
            if isinstance(message, Resume | Resumed):
                return self._connection_level(document, message)
            if not (isinstance(message, Error) and document == ""):
                validate_document_name(document)
        self._check_update_size(document, message)
        if document in self._closed_here:
            if not isinstance(message, SyncStep1):
                return []
            self._closed_here.discard(document)
        before = self.state(document)
        after = TRANSITIONS.get((self.role, before, type(message)))
        if after is None:
            raise UnexpectedMessage(
                f"{self.role.value} cannot receive {type(message).__name__} "
                f"for document {document!r} in state {before.value}",
                document=document,
            )
        if before is DocState.CLOSED and after is not DocState.CLOSED:
            self._check_capacity(document)
        self._set_state(document, after)
        return self._events(document, message, before)

    def _connection_level(self, document: str, message: Resume | Resumed) -> list[Event]:
        """Resume (relay) opens many documents at once; Resumed (device) answers the oldest
        unanswered Resume. Both travel on the document ``""`` of a native connection."""
        wanted = Role.RELAY if isinstance(message, Resume) else Role.DEVICE
        if document or self.role is not wanted:
            raise UnexpectedMessage(
                f"{self.role.value} cannot receive {type(message).__name__} "
                f"addressed to {document!r}",
                document=document[:256],
            )
        if isinstance(message, Resume):
            for entry in message.entries:
                self._open_resumed(entry.document)
            return [ResumeRequested(message.entries)]
        if not self._resuming:
            raise UnexpectedMessage("device received Resumed without an unanswered Resume")
        batch = self._resuming.popleft()
        if any(index >= len(batch) for index in message.stale):
            raise DecodeError(f"a Resumed index beyond the {len(batch)} entries it answers")
        stale = {batch[index] for index in message.stale}
        events: list[Event] = []
        for name in batch:
            if self.state(name) is not DocState.OPENING:
                continue  # closed meanwhile (the relay refused it)
            if name in stale:
                events.append(ResumeAnswered(name, in_sync=False))
            else:
                self._set_state(name, DocState.OPEN)
                events += [Synced(name), ResumeAnswered(name, in_sync=True)]
        return events

    def _open_resumed(self, document: str) -> None:
        validate_document_name(document)
        if self.state(document) is not DocState.CLOSED:
            raise UnexpectedMessage(
                f"relay cannot receive Resume for document {document!r} "
                f"in state {self.state(document).value}",
                document=document,
            )
        self._closed_here.discard(document)
        self._check_capacity(document)
        self._set_state(document, DocState.OPEN)

    def _check_update_size(self, document: str, message: Message) -> None:
        size = 0
        seq = 0
        if isinstance(message, SyncStep2 | Update):
            size = len(message.update)
        elif isinstance(message, Push):
            size, seq = len(message.update), message.seq
        elif isinstance(message, BlobPut):
            size = len(message.data)
        if size > self.max_update_size:
            error = FrameTooLarge(
                f"update of {size} bytes exceeds {self.max_update_size}", document=document, seq=seq
            )
            error.code = ErrorCode.UPDATE_TOO_LARGE
            raise error

    def _check_capacity(self, document: str) -> None:
        if len(self._states) >= self.max_documents:
            raise TooManyDocuments(
                f"a connection may open at most {self.max_documents} documents", document=document
            )

    def _events(self, document: str, message: Message, before: DocState) -> list[Event]:
        match message:
            case SyncStep1(state_vector=sv):
                return [SyncRequested(document, sv, first=before is DocState.CLOSED)]
            case SyncStep2(update=update):
                events: list[Event] = [UpdateReceived(document, update, None, step2=True)]
                if self.role is Role.DEVICE and before is DocState.OPENING:
                    events.append(Synced(document))
                return events
            case Update(update=update):
                return [UpdateReceived(document, update, None)]
            case Push(seq=seq, update=update):
                return [UpdateReceived(document, update, seq)]
            case Ack(seq=seq):
                return [AckReceived(document, seq)]
            case Error(code=code, seq=seq, message=text):
                return [ErrorReceived(document, message.error_code, seq, text)]
            case SyncStatus(synced=synced):
                return [StatusReceived(document, synced)]
            case Awareness(payload=payload):
                return [AwarenessReceived(document, payload)]
            case QueryAwareness():
                return [AwarenessReceived(document, None)]
            case Close(code=code, reason=reason):
                return [DocumentClosed(document, code, reason)]
            case Submit(key=key, seq=seq, body=body):
                return [SubmissionReceived(document, key, seq, body)]
            case SubmitResult(key=key, body=body):
                return [SubmissionAnswered(document, key, body)]
            case BlobPut(sha256=sha, size=size, offset=offset, data=data):
                return [BlobChunkReceived(document, sha, size, offset, data)]
            case BlobQuery(sha256=sha, size=size):
                return [BlobQueried(document, sha, size)]
            case BlobStatus(sha256=sha, have=have, state=state):
                return [BlobStatusReceived(document, sha, have, state)]
        raise AssertionError(f"unhandled message {message!r}")  # pragma: no cover

    def _fail(self, error: ProtocolError) -> ConnectionFailed:
        self.failure = error
        # An error about a name that is not a valid document name cannot be addressed to
        # it (the peer's session would refuse the frame): it is a connection-level error.
        document = "" if isinstance(error, InvalidDocumentName) else error.document
        return ConnectionFailed(error, self.send_error(document, error.code, str(error), error.seq))

    # -- sending -----------------------------------------------------------------------------

    def _encode(self, document: str, message: Message) -> bytes:
        if self.single_document is not None:
            return encode_message(message)
        return encode_frame(document, message)

    def _require(self, document: str, *allowed: DocState, what: str) -> None:
        state = self.state(document)
        if state not in allowed:
            raise UnexpectedMessage(
                f"{self.role.value} cannot send {what} for document {document!r} "
                f"in state {state.value}",
                document=document,
            )

    def open_document(self, document: str, state_vector: bytes) -> bytes:
        """Device: start syncing ``document`` by sending its state vector (SyncStep1)."""
        validate_document_name(document)
        if self.role is Role.DEVICE:
            self._require(document, DocState.CLOSED, what="SyncStep1 (open)")
            self._set_state(document, DocState.OPENING)
        return self._encode(document, SyncStep1(state_vector))

    def resume(self, entries: list[ResumeEntry]) -> bytes:
        """Device: open every entry's document at once (each must be CLOSED; each becomes
        OPENING until the relay's Resumed answers, see :class:`ResumeAnswered`)."""
        if self.role is not Role.DEVICE or self.single_document is not None:
            raise UnexpectedMessage("only a device on a native connection sends Resume")
        for entry in entries:
            validate_document_name(entry.document)
            self._require(entry.document, DocState.CLOSED, what="Resume")
        for entry in entries:
            self._set_state(entry.document, DocState.OPENING)
        self._resuming.append([entry.document for entry in entries])
        return encode_frame("", Resume(tuple(entries)))

    def send_resumed(self, stale: list[int]) -> bytes:
        """Relay: answer the Resume it received last (indexes of entries to sync in full)."""
        if self.role is not Role.RELAY:
            raise UnexpectedMessage("only the relay sends Resumed")
        return encode_frame("", Resumed(tuple(stale)))

    def send_step1(self, document: str, state_vector: bytes) -> bytes:
        """Send our state vector for an open document (asks the peer for what we lack)."""
        self._require(document, DocState.OPEN, DocState.OPENING, what="SyncStep1")
        return self._encode(document, SyncStep1(state_vector))

    def send_step2(self, document: str, update: bytes) -> bytes:
        self._require(document, DocState.OPEN, DocState.OPENING, what="SyncStep2")
        return self._encode(document, SyncStep2(update))

    def send_update(self, document: str, update: bytes) -> bytes:
        self._require(document, DocState.OPEN, DocState.OPENING, what="Update")
        return self._encode(document, Update(update))

    def send_push(self, document: str, seq: int, update: bytes) -> bytes:
        """Device: an outbox update with its sequence number; the relay will Ack it."""
        if self.role is not Role.DEVICE:
            raise UnexpectedMessage("only a device sends Push", document=document)
        self._require(document, DocState.OPEN, DocState.OPENING, what="Push")
        return self._encode(document, Push(seq, update))

    def send_ack(self, document: str, seq: int) -> bytes:
        if self.role is not Role.RELAY:
            raise UnexpectedMessage("only the relay sends Ack", document=document)
        return self._encode(document, Ack(seq))

    def send_status(self, document: str, synced: bool = True) -> bytes:
        return self._encode(document, SyncStatus(synced))

    def send_awareness(self, document: str, payload: bytes) -> bytes:
        return self._encode(document, Awareness(payload))

    def send_error(self, document: str, code: ErrorCode | int, message: str, seq: int = 0) -> bytes:
        """An Error frame; ``document`` ``""`` for connection-level errors."""
        if self.single_document is not None:
            # Plain y-websocket clients have no error message; they only see the close.
            return b""
        return encode_frame(document, Error(int(code), seq, message[:1000]))

    def send_submit(self, document: str, key: str, seq: int, body: str) -> bytes:
        """Device: submit ``document`` (idempotency ``key``, newest outbox ``seq``, JSON body)."""
        if self.role is not Role.DEVICE:
            raise UnexpectedMessage("only a device submits", document=document)
        self._require(document, DocState.OPEN, what="Submit")
        return self._encode(document, Submit(key, seq, body))

    def send_submit_result(self, document: str, key: str, body: str) -> bytes:
        if self.role is not Role.RELAY:
            raise UnexpectedMessage("only the relay answers a submission", document=document)
        return self._encode(document, SubmitResult(key, body))

    def send_blob_put(
        self, document: str, sha256: str, size: int, offset: int, data: bytes
    ) -> bytes:
        """Device: one chunk of a blob that ``document`` references."""
        if self.role is not Role.DEVICE:
            raise UnexpectedMessage("only a device uploads blobs", document=document)
        self._require(document, DocState.OPEN, what="BlobPut")
        return self._encode(document, BlobPut(sha256, size, offset, data))

    def send_blob_query(self, document: str, sha256: str, size: int) -> bytes:
        if self.role is not Role.DEVICE:
            raise UnexpectedMessage("only a device asks about blobs", document=document)
        self._require(document, DocState.OPEN, what="BlobQuery")
        return self._encode(document, BlobQuery(sha256, size))

    def send_blob_status(self, document: str, sha256: str, have: int, state: int) -> bytes:
        if self.role is not Role.RELAY:
            raise UnexpectedMessage("only the relay reports blob status", document=document)
        return self._encode(document, BlobStatus(sha256, have, state))

    def close_document(self, document: str, code: int = 1000, reason: str = "") -> bytes:
        """Leave ``document``: its state returns to CLOSED. Until the peer opens it again
        (SyncStep1), whatever it still sends for it is dropped: it was in flight."""
        self._set_state(document, DocState.CLOSED)
        if self.single_document is None:
            if len(self._closed_here) >= self.max_documents:
                self._closed_here.pop()  # bounded: a peer cannot grow it without limit
            self._closed_here.add(document)
        return self._encode(document, Close(code, reason))

    def _set_state(self, document: str, state: DocState) -> None:
        if state is DocState.CLOSED:
            self._states.pop(document, None)
        else:
            self._states[document] = state
