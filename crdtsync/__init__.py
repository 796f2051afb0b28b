"""crdtsync: offline-first sync of CRDT documents (pycrdt / Yjs) with durable acknowledgements.

The public surface is what this module exports; submodules starting with an
underscore are private. Layering: ``device`` and ``relay`` use ``store`` and
``transport``, which use ``protocol`` (sans-I/O), which uses ``exceptions``.
"""

from .device import Backoff, Device, DeviceStatus, Rejection
from .exceptions import (
    CloseCode,
    ConnectionClosed,
    CrdtsyncError,
    DecodeError,
    DeviceError,
    ErrorCode,
    FrameTooLarge,
    InvalidDocumentName,
    InvalidUpdate,
    ProtocolError,
    RemoteError,
    StoreError,
    TooManyDocuments,
    UnexpectedMessage,
)
from .relay import Relay, RelayConfig, RelayStats
from .store import CompactionPolicy, LocalStore, MemoryStore, SQLiteStore, Store, StoredDocument
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
    "Backoff",
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
    "FrameTooLarge",
    "InvalidDocumentName",
    "InvalidUpdate",
    "LocalStore",
    "MemoryChannel",
    "MemoryStore",
    "ProtocolError",
    "Rejection",
    "Relay",
    "RelayConfig",
    "RelayStats",
    "RemoteError",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoredDocument",
    "TooManyDocuments",
    "UnexpectedMessage",
    "WebSocketChannel",
    "__version__",
    "memory_channel_pair",
    "websocket_connector",
]
