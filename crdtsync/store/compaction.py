"""Compaction policy and merge: pure functions, no I/O.

:func:`should_compact` decides from sizes alone; :func:`merge` folds a stored
document into one update, the document's own encoding. It folds only a log
whose every update pycrdt has integrated: an update waiting for a dependency
(structs whose origin, or deletes whose target, has not arrived) can be
resolved differently once folded, so such a log waits, whole, until the
dependency arrives. Each merge is checked by rebuilding the document from it,
and a compaction must never change a document. The stores' tests check that a
compacted document has the same content as before, never merely that rows
went away.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, get_update

from .._updates import apply_update, is_panic
from ..exceptions import DecodeError, InvalidUpdate, StoreError
from ..protocol import Reader
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
    is: some update still waits for a dependency (structs whose origin, or deletes
    whose target, has not arrived: pycrdt can resolve those differently once they
    are folded into one update, so the folded document would later diverge from
    the one applied update by update), pycrdt cannot encode the updates, or the
    encoded document would not rebuild the same document (pycrdt places some
    malformed items it accepted elsewhere when it rebuilds them).
    """
    doc = build_doc(stored)
    state = doc.get_state()
    inputs = [stored.snapshot] if stored.snapshot is not None else []
    with _pycrdt_errors(stored.name):
        clocks = _clocks(state)
        beyond = [get_update(update, state) for update in [*inputs, *stored.updates]]
        if any(_waits(update, clocks) for update in beyond):
            raise StoreError(
                f"stored document {stored.name!r} has updates waiting for a dependency"
            )
        # Nothing waits, so the document's own update holds everything the log does.
        merged = doc.get_update()
        same = _encoded(build_doc(StoredDocument(stored.name, merged))) == _encoded(doc)
    if not same:
        raise StoreError(f"merging stored document {stored.name!r} would change its content")
    return merged


def _clocks(state: bytes) -> dict[int, int]:
    """A state vector as ``{client: next clock}``."""
    reader = Reader(state)
    return {reader.read_var_uint(): reader.read_var_uint() for _ in range(reader.read_var_uint())}


def _waits(beyond: bytes, clocks: dict[int, int]) -> bool:
    """True if ``beyond`` (an update's part past ``clocks``) is not only deletes of known items.

    An update opens with its structs, by client, then its delete set: by client,
    ranges of ``(clock, length)``. Structs past the state vector wait for their
    origins; a range reaching past it waits for the items it deletes.
    """
    reader = Reader(beyond)
    if reader.read_var_uint():
        return True
    for _ in range(reader.read_var_uint()):
        client = reader.read_var_uint()
        for _ in range(reader.read_var_uint()):
            clock, length = reader.read_var_uint(), reader.read_var_uint()
            if clock + length > clocks.get(client, 0):
                return True
    return False


@contextmanager
def _pycrdt_errors(name: str) -> Iterator[None]:
    """Raise pycrdt's failures (ValueError, RuntimeError, a panic), and encodings of
    its that do not parse (DecodeError), as StoreError."""
    try:
        yield
    except DecodeError as exc:
        raise StoreError(f"stored document {name!r} does not merge: {exc}") from exc
    except BaseException as exc:
        if not (isinstance(exc, ValueError | RuntimeError) or is_panic(exc)):
            raise
        raise StoreError(f"stored document {name!r} does not merge: {exc}") from exc


def _encoded(doc: Doc[Any]) -> bytes:
    """``doc`` as a fresh document re-encodes it: blind to how blocks were split or squashed."""
    fresh: Doc[Any] = Doc()
    fresh.apply_update(doc.get_update())
    return fresh.get_update()
