"""crdtsync: offline-first sync of CRDT documents (pycrdt / Yjs) with durable acknowledgements.

The public surface is what this module exports; submodules starting with an
underscore are private. Layering: ``device`` and ``relay`` use ``store`` and
``transport``, which use ``protocol`` (sans-I/O), which uses ``exceptions``.
"""

from .access import ROLES, Application, Principal, UpdateWatch
from .device import Backoff, Device, DeviceStatus, Rejection
from .exceptions import (
    CloseCode,
    ConnectionClosed,
    CrdtsyncError,
    DecodeError,
    DeviceError,
    ErrorCode,
    Forbidden,
    ForbiddenField,
    FrameTooLarge,
    InvalidDocumentName,
    InvalidUpdate,
    ProtocolError,
    RemoteError,
    StoreError,
    TooManyDocuments,
    UnexpectedMessage,
)
from .relay import Relay, RelayConfig, RelayObserver, RelayStats, blob_key, split_name
from .store import (
    BlobStore,
    CompactionPolicy,
    LocalStore,
    MemoryStore,
    RecordStore,
    RejectedUpdate,
    SQLiteStore,
    Store,
    StoredDocument,
    SubmissionRecord,
)
from .transport import (
    Channel,
    Connector,
    MemoryChannel,
    WebSocketChannel,
    memory_channel_pair,
    websocket_connector,
)

__version__ = "0.1.0"

__all__ = [
    "ROLES",
    "Application",
    "Backoff",
    "BlobStore",
    "Channel",
    "CloseCode",
    "CompactionPolicy",
    "ConnectionClosed",
    "Connector",
    "CrdtsyncError",
    "DecodeError",
    "Device",
    "DeviceError",
    "DeviceStatus",
    "ErrorCode",
    "Forbidden",
    "ForbiddenField",
    "FrameTooLarge",
    "InvalidDocumentName",
    "InvalidUpdate",
    "LocalStore",
    "MemoryChannel",
    "MemoryStore",
    "Principal",
    "ProtocolError",
    "RecordStore",
    "Rejection",
    "RejectedUpdate",
    "Relay",
    "RelayConfig",
    "RelayObserver",
    "RelayStats",
    "RemoteError",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoredDocument",
    "SubmissionRecord",
    "TooManyDocuments",
    "UnexpectedMessage",
    "UpdateWatch",
    "WebSocketChannel",
    "__version__",
    "blob_key",
    "memory_channel_pair",
    "split_name",
    "websocket_connector",
]
