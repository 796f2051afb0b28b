"""Compaction policy and merge: pure functions, no I/O.

:func:`should_compact` decides from sizes alone; :func:`merge` folds a stored
document into one update. The merge goes through a pycrdt document; deletes
still waiting for their target are kept (yrs leaves them out of
``get_update()``, so :func:`merge` adds every input's delete set back). Structs
still waiting for a dependency are never folded: pycrdt can resolve them
differently once merged into one update, so such a log waits, whole, until its
dependencies arrive. Each merge is checked by rebuilding the document from it,
and a compaction must never change a document. The stores' tests check that a
compacted document has the same content as before, never merely that rows
went away.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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

    Raises StoreError when there is none, and the caller must keep the log as it
    is: some update still has structs waiting for a dependency (pycrdt can resolve
    those differently once folded into one update, and the folded document would
    later diverge from the one applied update by update), pycrdt cannot merge the
    updates, or the merge would not rebuild the same document (pycrdt merges some
    out-of-order or malformed updates it accepted into another one).
    """
    doc = build_doc(stored)
    # ``doc.get_update()`` leaves out deletes still waiting for their target (yrs does
    # not encode them), so keep each input's delete set: what it holds beyond the
    # document's state, which must be nothing else.
    state = doc.get_state()
    inputs = [stored.snapshot] if stored.snapshot is not None else []
    with _pycrdt_errors(stored.name):
        leftovers = [get_update(update, state) for update in [*inputs, *stored.updates]]
    if any(not leftover.startswith(_NO_STRUCTS) for leftover in leftovers):
        raise StoreError(f"stored document {stored.name!r} has structs waiting for a dependency")
    with _pycrdt_errors(stored.name):
        merged = merge_updates(doc.get_update(), *leftovers)
        same = _encoded(build_doc(StoredDocument(stored.name, merged))) == _encoded(doc)
    if not same:
        raise StoreError(f"merging stored document {stored.name!r} would change its content")
    return merged


_NO_STRUCTS = b"\x00"  # an update opens with its number of struct groups, a var-uint


@contextmanager
def _pycrdt_errors(name: str) -> Iterator[None]:
    """Raise pycrdt's failures (ValueError, RuntimeError, a panic) as StoreError."""
    try:
        yield
    except BaseException as exc:
        if not (isinstance(exc, ValueError | RuntimeError) or is_panic(exc)):
            raise
        raise StoreError(f"stored document {name!r} does not merge: {exc}") from exc


def _encoded(doc: Doc[Any]) -> bytes:
    """``doc`` as a fresh document re-encodes it: blind to how blocks were split or squashed."""
    fresh: Doc[Any] = Doc()
    fresh.apply_update(doc.get_update())
    return fresh.get_update()
