"""Persistence: the :class:`Store` seam, its in-memory and SQLite backends, and compaction."""

from .base import Store, StoredDocument
from .compaction import CompactionPolicy, build_doc, merge, should_compact
from .local import LocalStore
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = [
    "CompactionPolicy",
    "LocalStore",
    "MemoryStore",
    "SQLiteStore",
    "Store",
    "StoredDocument",
    "build_doc",
    "merge",
    "should_compact",
]
