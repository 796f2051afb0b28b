"""Change detection for the relay: what an applied update wrote, field by field.

Usage on the relay, per room document of a work order::

    watch = WorkOrderWatch(doc)        # once; keeps its observers until close()
    apply_update(doc, update)          # any number of transactions
    changes = watch.collect()          # what they wrote, then the list is reset
    violations = check_changes(changes, role, policy)

The watch deep-observes every skeleton root (pycrdt drops an observer when its
root object is garbage-collected, so the watch keeps the roots). Each event
becomes one :class:`FieldChange` per written key (maps) or one per edit
(texts, arrays). Content a root cannot show as its own type (a map root written
as a list, for example) fires an event with nothing in it, and so does content
added and deleted within one update; :meth:`WorkOrderWatch.collect` tells them
apart by reading the root as the other type (which writes nothing) and reports
the first as an ``opaque`` change. Roots outside the skeleton are not observed;
:meth:`WorkOrderWatch.collect` reports each root that appeared since the watch
started as a ``new_root`` change, and :func:`unknown_roots` lists them all.

The observer never raises (pycrdt would re-raise at the end of the transaction,
failing the relay's ``apply_update``): it only reads and converts values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from types import TracebackType
from typing import Any, Self

from pycrdt import Array, Doc, Map, Subscription, Text

from .layout import WORKORDER_ROOTS

__all__ = ["ChangeAction", "FieldChange", "WorkOrderWatch", "unknown_roots"]


class ChangeAction(StrEnum):
    """What a :class:`FieldChange` did."""

    ADD = "add"  # a map key that did not exist
    UPDATE = "update"  # a map key that existed
    DELETE = "delete"  # a map key removed (new_value is None)
    EDIT = "edit"  # a text or array edit (new_value is the delta)
    OPAQUE = "opaque"  # content the root's type cannot show (wrong type of content)
    NEW_ROOT = "new_root"  # a root outside the skeleton appeared


@dataclass(frozen=True)
class FieldChange:
    """One write seen by a :class:`WorkOrderWatch`.

    ``root`` is the root written; ``path`` the keys from the root down to the
    container written (``()`` for the root itself, ``("<entry id>",)`` inside a
    collection entry); ``key`` the map key written (None for text and array
    edits and for ``new_root``). ``new_value`` is plain Python: the value set
    (a nested shared type converted with ``to_py``, then ``shared`` is True),
    None for a delete, the delta for an edit.
    """

    root: str
    key: str | None
    path: tuple[str | int, ...] = ()
    new_value: Any = None
    action: ChangeAction = ChangeAction.UPDATE
    shared: bool = False

    @property
    def field(self) -> str:
        """The dotted name of what was written, e.g. ``customer.name``, ``hours.<id>.end``."""
        parts = [self.root, *(str(part) for part in self.path)]
        if self.key is not None:
            parts.append(self.key)
        return ".".join(parts)

    @property
    def top_key(self) -> str | None:
        """The key of the root that the change is under (``path[0]``, else ``key``)."""
        return str(self.path[0]) if self.path else self.key


_MAP_ACTIONS = {a.value: a for a in (ChangeAction.ADD, ChangeAction.UPDATE, ChangeAction.DELETE)}


def _plain(value: Any) -> tuple[Any, bool]:
    if isinstance(value, (Map, Array, Text)):
        return value.to_py(), True
    if isinstance(value, Doc):
        return None, True
    return value, False


def _plain_delta(delta: Sequence[Any]) -> list[Any]:
    items: list[Any] = []
    for item in delta:
        if isinstance(item, Mapping):
            items.append({str(k): _plain(v)[0] for k, v in item.items()})
        else:
            items.append(_plain(item)[0])
    return items


def _changes_of(root: str, event: Any) -> list[FieldChange] | None:
    """The changes of one event; None for an event with nothing in it."""
    path = tuple(event.path)
    keys = getattr(event, "keys", None)
    if isinstance(keys, Mapping):
        changes = []
        for key, info in keys.items():
            action = _MAP_ACTIONS.get(str(info.get("action")), ChangeAction.UPDATE)
            value, shared = (None, False)
            if action is not ChangeAction.DELETE:
                value, shared = _plain(info.get("newValue"))
            changes.append(FieldChange(root, str(key), path, value, action, shared))
        if changes:
            return changes
    else:
        delta = getattr(event, "delta", None)
        if isinstance(delta, Sequence) and delta:
            return [FieldChange(root, None, path, _plain_delta(delta), ChangeAction.EDIT)]
    return None


def unknown_roots(doc: Doc[Any], known: Mapping[str, object] = WORKORDER_ROOTS) -> list[str]:
    """The sorted names of ``doc``'s roots that are not in ``known`` (default: the skeleton)."""
    names = list(doc.keys())
    return sorted(name for name in names if name not in known)


class WorkOrderWatch:
    """Collects the :class:`FieldChange` records of every transaction on ``doc``.

    Create it before applying the updates to check, call :meth:`collect` after;
    :meth:`close` (or leaving the ``with`` block) removes the observers.
    """

    def __init__(self, doc: Doc[Any]) -> None:
        self._doc = doc
        self._changes: list[FieldChange] = []
        self._observed: list[tuple[Map[Any] | Text, Subscription]] = []
        for name, kind in WORKORDER_ROOTS.items():
            root = doc.get(name, type=kind)
            subscription = root.observe_deep(partial(self._on_events, name))
            self._observed.append((root, subscription))
        self._seen_roots = set(unknown_roots(doc))
        self._empty: set[str] = set()

    def _on_events(self, root: str, events: list[Any]) -> None:
        for event in events:
            changes = _changes_of(root, event)
            if changes is not None:
                self._changes.extend(changes)
            elif not event.path:
                self._empty.add(root)

    def _foreign_content(self, root: str) -> bool:
        """True when ``root`` holds content of the other kind (list items in a map root,
        map entries in a text root). Reading a root as another type writes nothing."""
        if WORKORDER_ROOTS[root] is Text:
            return len(self._doc.get(root, type=Map)) > 0
        return len(self._doc.get(root, type=Array)) > 0

    def collect(self) -> list[FieldChange]:
        """The changes since the last call (or since the watch started), oldest first.

        Then an ``opaque`` change per root that received content of the wrong
        type, and a ``new_root`` change per root outside the skeleton that
        appeared meanwhile. Call it outside any transaction.
        """
        changes, self._changes = self._changes, []
        empty, self._empty = self._empty, set()
        for root in sorted(empty):
            if self._foreign_content(root):
                changes.append(FieldChange(root, None, (), None, ChangeAction.OPAQUE))
        for name in unknown_roots(self._doc):
            if name not in self._seen_roots:
                self._seen_roots.add(name)
                changes.append(FieldChange(name, None, (), None, ChangeAction.NEW_ROOT))
        return changes

    def close(self) -> None:
        """Stop observing. Idempotent."""
        for root, subscription in self._observed:
            root.unobserve(subscription)
        self._observed = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
