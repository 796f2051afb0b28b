"""Compaction policy and merge: pure functions, no I/O.

:func:`should_compact` decides from sizes alone; :func:`merge` folds a stored
document into one update. The merge goes through a pycrdt document; updates
still waiting for a missing dependency (pending structs and deletes) are kept:
yrs leaves them out of ``get_update()``, so :func:`merge` adds them back from
its inputs. The merge is checked by rebuilding the document from it: pycrdt
merges some out-of-order or malformed updates into another document than
applying them one by one gives, and a compaction must never change a document.
The stores' tests check that a compacted document has the same content as
before, never merely that rows went away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, get_update, merge_updates

from .._updates import apply_update, is_panic
from ..exceptions import InvalidUpdate, StoreError
from .base import StoredDocument

__all__ = ["CompactionPolicy", "build_doc", "merge", "should_compact"]


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    """Compact once the log holds ``max_log_entries`` updates or ``max_log_bytes`` bytes."""

    max_log_entries: int = 200
    max_log_bytes: int = 1024 * 1024


def should_compact(stored: StoredDocument, policy: CompactionPolicy) -> bool:
    """True when the log is long enough for a compaction to pay off."""
    if len(stored.updates) < 2 and stored.snapshot is not None:
        return False
    return len(stored.updates) >= policy.max_log_entries or stored.log_bytes >= policy.max_log_bytes


def build_doc(stored: StoredDocument) -> Doc[Any]:
    """A pycrdt document holding the snapshot and every logged update, in order."""
    doc: Doc[Any] = Doc()
    try:
        if stored.snapshot is not None:
            apply_update(doc, stored.snapshot, document=stored.name)
        for update in stored.updates:
            apply_update(doc, update, document=stored.name)
    except InvalidUpdate as exc:
        raise StoreError(f"stored document {stored.name!r} does not load: {exc}") from exc
    return doc


def merge(stored: StoredDocument) -> bytes:
    """One update equivalent to the snapshot followed by the whole log.

    Raises StoreError when there is none: pycrdt cannot merge the stored updates,
    or the merge would not rebuild the document that applying them one by one
    builds (pycrdt merges some out-of-order or malformed updates it accepted
    into another document). The caller must then keep the log as it is.
    """
    doc = build_doc(stored)
    # ``doc.get_update()`` leaves out pending structs and deletes (yrs does not encode
    # them), so keep what each input holds beyond the document's state: nothing for an
    # integrated update, its waiting structs and delete set otherwise.
    state = doc.get_state()
    inputs = [stored.snapshot] if stored.snapshot is not None else []
    try:
        leftovers = [get_update(update, state) for update in [*inputs, *stored.updates]]
        merged = merge_updates(doc.get_update(), *leftovers)
        same = _encoded(build_doc(StoredDocument(stored.name, merged))) == _encoded(doc)
    except BaseException as exc:
        if not (isinstance(exc, ValueError | RuntimeError) or is_panic(exc)):
            raise
        raise StoreError(f"stored document {stored.name!r} does not merge: {exc}") from exc
    if not same:
        raise StoreError(f"merging stored document {stored.name!r} would change its content")
    return merged


def _encoded(doc: Doc[Any]) -> bytes:
    """``doc`` as a fresh document re-encodes it: blind to how blocks were split or squashed."""
    fresh: Doc[Any] = Doc()
    fresh.apply_update(doc.get_update())
    return fresh.get_update()
