"""Every error the toolkit raises derives from :class:`CrdtsyncError`.

The tree::

    CrdtsyncError
    ├── ProtocolError              a peer broke the wire protocol
    │   ├── DecodeError            bytes that do not parse (truncated, overlong, bad UTF-8)
    │   ├── FrameTooLarge          a frame above the configured limit
    │   ├── UnexpectedMessage      a well-formed message that is illegal in the current state
    │   ├── InvalidDocumentName    a document name outside the allowed alphabet or length
    │   ├── TooManyDocuments       a connection opened more documents than allowed
    │   ├── InvalidUpdate          an update pycrdt refuses (undecodable, or it panicked)
    │   └── Forbidden              the principal may not read or write this document
    │       └── ForbiddenField     an update writes fields the principal may not write
    ├── RemoteError                the other side answered with an error frame
    ├── ConnectionClosed           the channel is gone; carries the close code
    ├── StoreError                 the persistence layer failed (translated at the boundary)
    ├── DeviceError                misuse of the device replica (unknown document, closed device)
    └── WorkOrderError             a work-order rule refused an operation (nothing was written)
        ├── InvalidValue           a value failed validation (field, reason)
        ├── EntryNotFound          an entry id that the collection does not hold
        ├── WorkOrderLocked        a device edit on a sent or processed work order (status)
        ├── EditNotAllowed         the role may not perform the operation (role, operation)
        ├── SkeletonError          the document lacks the skeleton, has it twice, or is newer
        └── SubmissionBlocked      required steps are missing (the list of missing steps)

Errors carry structured data (codes, document names, sequence numbers) so callers
never parse messages. Third-party exceptions are translated at the module that
touches the third party, with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Protocol

__all__ = [
    "CloseCode",
    "ConnectionClosed",
    "CrdtsyncError",
    "DecodeError",
    "DeviceError",
    "EditNotAllowed",
    "EntryNotFound",
    "ErrorCode",
    "Forbidden",
    "ForbiddenField",
    "FrameTooLarge",
    "InvalidDocumentName",
    "InvalidUpdate",
    "InvalidValue",
    "ProtocolError",
    "RemoteError",
    "SkeletonError",
    "StoreError",
    "SubmissionBlocked",
    "TooManyDocuments",
    "UnexpectedMessage",
    "WorkOrderError",
    "WorkOrderLocked",
]


class ErrorCode(IntEnum):
    """Codes carried by the Error message (native type 102)."""

    MALFORMED_FRAME = 1
    UNKNOWN_MESSAGE_TYPE = 2
    FRAME_TOO_LARGE = 3
    UPDATE_TOO_LARGE = 4
    INVALID_UPDATE = 5
    INVALID_DOCUMENT_NAME = 6
    UNAUTHORIZED = 7
    SLOW_CONSUMER = 8
    STORE_FAILURE = 9
    UNEXPECTED_MESSAGE = 10
    TOO_MANY_DOCUMENTS = 11
    SHUTTING_DOWN = 12
    FORBIDDEN = 13
    FORBIDDEN_FIELD = 14


class CloseCode(IntEnum):
    """Websocket close codes the relay uses (RFC 6455 plus the private 4000 range)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403


#: The close code that goes with each error code when the error ends a connection.
CLOSE_CODE_FOR_ERROR: dict[ErrorCode, CloseCode] = {
    ErrorCode.MALFORMED_FRAME: CloseCode.PROTOCOL_ERROR,
    ErrorCode.UNKNOWN_MESSAGE_TYPE: CloseCode.PROTOCOL_ERROR,
    ErrorCode.FRAME_TOO_LARGE: CloseCode.MESSAGE_TOO_BIG,
    ErrorCode.UPDATE_TOO_LARGE: CloseCode.MESSAGE_TOO_BIG,
    ErrorCode.INVALID_UPDATE: CloseCode.INVALID_DATA,
    ErrorCode.INVALID_DOCUMENT_NAME: CloseCode.POLICY_VIOLATION,
    ErrorCode.UNAUTHORIZED: CloseCode.UNAUTHORIZED,
    ErrorCode.SLOW_CONSUMER: CloseCode.TRY_AGAIN_LATER,
    ErrorCode.STORE_FAILURE: CloseCode.INTERNAL_ERROR,
    ErrorCode.UNEXPECTED_MESSAGE: CloseCode.PROTOCOL_ERROR,
    ErrorCode.TOO_MANY_DOCUMENTS: CloseCode.POLICY_VIOLATION,
    ErrorCode.SHUTTING_DOWN: CloseCode.GOING_AWAY,
    ErrorCode.FORBIDDEN: CloseCode.FORBIDDEN,
    ErrorCode.FORBIDDEN_FIELD: CloseCode.FORBIDDEN,
}


class CrdtsyncError(Exception):
    """Root of every error the toolkit raises."""


class ProtocolError(CrdtsyncError):
    """A peer sent something the protocol does not allow.

    ``code`` is the :class:`ErrorCode` sent back to the peer, ``document`` the
    document the frame named (``""`` when none or unknown).
    """

    code: ErrorCode = ErrorCode.MALFORMED_FRAME

    def __init__(self, message: str, *, document: str = "", seq: int = 0) -> None:
        super().__init__(message)
        self.document = document
        self.seq = seq

    @property
    def close_code(self) -> CloseCode:
        return CLOSE_CODE_FOR_ERROR[self.code]


class DecodeError(ProtocolError):
    """Bytes that do not parse: truncated, overlong varint, bad UTF-8, trailing bytes."""

    code = ErrorCode.MALFORMED_FRAME


class FrameTooLarge(ProtocolError):
    """A frame or update above the configured size limit."""

    code = ErrorCode.FRAME_TOO_LARGE


class UnexpectedMessage(ProtocolError):
    """A well-formed message that is illegal for this role in this state.

    The message names the role, the document state and the message received.
    """

    code = ErrorCode.UNEXPECTED_MESSAGE


class InvalidDocumentName(ProtocolError):
    """A document name that is empty, too long, or uses characters outside the allowed set."""

    code = ErrorCode.INVALID_DOCUMENT_NAME


class TooManyDocuments(ProtocolError):
    """A connection tried to open more documents than the relay allows per connection."""

    code = ErrorCode.TOO_MANY_DOCUMENTS


class InvalidUpdate(ProtocolError):
    """An update pycrdt could not apply (it failed to decode, or pycrdt panicked)."""

    code = ErrorCode.INVALID_UPDATE
    #: True when pycrdt failed while integrating (a panic, or a RuntimeError): the
    #: document it was applied to may be half-changed and must be rebuilt.
    panicked: bool = False


class Forbidden(ProtocolError):
    """The principal may not do this with the document. The relay answers with an Error
    and closes **that document** on the connection (close code 4403); the connection
    and its other documents carry on."""

    code = ErrorCode.FORBIDDEN


class ForbiddenField(Forbidden):
    """An update writes fields its sender may not write; ``fields`` names them
    (``customer.name``, ``state.status=sent``). The update is kept aside, never applied."""

    code = ErrorCode.FORBIDDEN_FIELD

    def __init__(
        self, fields: list[str], *, document: str = "", seq: int = 0, message: str = ""
    ) -> None:
        super().__init__(
            message or f"may not write {', '.join(fields)}", document=document, seq=seq
        )
        self.fields = fields


class RemoteError(CrdtsyncError):
    """The other side sent an Error message."""

    def __init__(self, code: ErrorCode | int, message: str, *, document: str = "", seq: int = 0):
        super().__init__(f"{document or '<connection>'}: {message} (code {int(code)})")
        self.code = code
        self.reason = message
        self.document = document
        self.seq = seq


class ConnectionClosed(CrdtsyncError):
    """The channel is closed. ``code`` is the websocket close code when known."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"connection closed (code={code}, reason={reason!r})")
        self.code = code
        self.reason = reason


class StoreError(CrdtsyncError):
    """The persistence layer failed; the underlying error is the ``__cause__``."""


class DeviceError(CrdtsyncError):
    """Misuse of a device replica: unknown document, device not started, and so on."""


class WorkOrderError(CrdtsyncError):
    """A work-order rule refused an operation. When raised, nothing was written."""


class InvalidValue(WorkOrderError):
    """``field`` (a dotted path such as ``hours.<id>.end``) failed validation for ``reason``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class EntryNotFound(WorkOrderError):
    """``collection`` (``hours``, ``tasks``, ...) holds no entry ``entry_id``."""

    def __init__(self, collection: str, entry_id: str) -> None:
        super().__init__(f"{collection} has no entry {entry_id!r}")
        self.collection = collection
        self.entry_id = entry_id


class WorkOrderLocked(WorkOrderError):
    """A device edit on a work order whose status is ``status`` (sent or processed).

    The work order stays locked for devices until the office reopens it.
    """

    def __init__(self, status: str, operation: str = "") -> None:
        suffix = f" ({operation})" if operation else ""
        super().__init__(f"work order is {status}: devices may not edit it{suffix}")
        self.status = status
        self.operation = operation


class EditNotAllowed(WorkOrderError):
    """The ``role`` may never perform ``operation`` (for example a device marking processed)."""

    def __init__(self, role: str, operation: str) -> None:
        super().__init__(f"role {role!r} may not {operation}")
        self.role = role
        self.operation = operation


class SkeletonError(WorkOrderError):
    """The document of ``kind`` cannot be used: ``reason`` says why.

    Raised when an editor meets a document without its skeleton (not created by
    the office yet, or not synced yet), when a skeleton would be created twice,
    and when the document's schema is newer than this code understands.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind} document: {reason}")
        self.kind = kind
        self.reason = reason


class _Step(Protocol):
    """What SubmissionBlocked needs of a missing step (see crdtsync.workorder.MissingStep)."""

    @property
    def code(self) -> str: ...

    @property
    def message(self) -> str: ...


class SubmissionBlocked(WorkOrderError):
    """A work order may not be sent: ``missing`` lists the steps still to do (never empty)."""

    def __init__(self, missing: Sequence[_Step]) -> None:
        codes = ", ".join(step.code for step in missing)
        super().__init__(f"submission blocked, missing: {codes}")
        self.missing = tuple(missing)
