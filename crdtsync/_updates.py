"""Applying updates that came from elsewhere, with pycrdt's failures translated; what an
update holds.

pycrdt raises ``ValueError`` for an update it cannot decode, ``RuntimeError``
for one that decodes but cannot be integrated ("Cannot apply update: ..."), and
a malformed update can make yrs panic, which pycrdt surfaces as
``pyo3_runtime.PanicException``: a ``BaseException``, not an ``Exception``.
This is the one place that catches them; everything else sees
:class:`~crdtsync.exceptions.InvalidUpdate`. After a ``RuntimeError`` or a panic
the document may be half-changed (yrs failed during integration): the error's
``panicked`` flag is set and the caller must discard the document and rebuild it
from a trusted source.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc

from .exceptions import InvalidUpdate

__all__ = ["EMPTY_UPDATE", "apply_update", "holds_structs", "is_panic"]

#: The update that changes nothing (no structs, no deletions).
EMPTY_UPDATE = b"\x00\x00"


def holds_structs(update: bytes) -> bool:
    """True when ``update`` (v1 encoding) holds content, not just a delete set.

    Every diff Yjs makes (``get_update(state)``) carries the whole delete set of
    its document, so a diff can be non-empty and still hold nothing the other
    side lacks. An update starts with the var-uint count of clients that have
    structs in it, whose first byte is 0 only for a count of 0.
    """
    return update[:1] != b"\x00"


def is_panic(exc: BaseException) -> bool:
    """True for pyo3's PanicException (its class lives in a runtime-made module)."""
    return type(exc).__name__ == "PanicException" and not isinstance(exc, Exception)


def apply_update(doc: Doc[Any], update: bytes, *, document: str = "", seq: int = 0) -> None:
    """Apply ``update`` to ``doc``; raise InvalidUpdate (with ``panicked``) if pycrdt refuses."""
    try:
        doc.apply_update(update)
    except ValueError as exc:
        raise InvalidUpdate(f"update does not decode: {exc}", document=document, seq=seq) from exc
    except RuntimeError as exc:
        error = InvalidUpdate(
            f"update does not integrate: {str(exc)[:200]}", document=document, seq=seq
        )
        error.panicked = True
        raise error from exc
    except BaseException as exc:
        if not is_panic(exc):
            raise
        error = InvalidUpdate(
            f"update made pycrdt panic: {str(exc)[:200]}", document=document, seq=seq
        )
        error.panicked = True
        raise error from exc
