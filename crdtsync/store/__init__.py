"""Persistence: the :class:`Store` seam, its in-memory and SQLite backends, and compaction."""

from .base import Store, StoredDocument
from .compaction import CompactionPolicy, build_doc, merge, should_compact
from .local import LocalStore
from .memory import MemoryStore
from .records import (
    BlobProgress,
    BlobStore,
    RecordStore,
    RejectedUpdate,
    SubmissionRecord,
    sha256_hex,
)
from .sqlite import SQLiteStore

__all__ = [
    "BlobProgress",
    "BlobStore",
    "CompactionPolicy",
    "LocalStore",
    "MemoryStore",
    "RecordStore",
    "RejectedUpdate",
    "SQLiteStore",
    "Store",
    "StoredDocument",
    "SubmissionRecord",
    "build_doc",
    "merge",
    "should_compact",
    "sha256_hex",
]
