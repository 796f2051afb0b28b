"""The shared machinery of the work-order editor: checks, entry and section writes.

Private: :class:`~.editor.WorkOrderEditor` is the public class. Every write
function here validates completely before it opens the one transaction that
writes, and writes only keys whose value changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from enum import Enum
from typing import Any, Final

from pycrdt import Doc, Map
from pydantic import BaseModel

from ..exceptions import EditNotAllowed, EntryNotFound, InvalidValue, WorkOrderLocked
from ._values import apply_text, aware, check_text, now_utc, stored, validate
from .layout import new_id, require_skeleton, root_map, root_text
from .models import LOCKED_STATUSES, Status
from .permissions import Role
from .policy import Policy

__all__ = ["UNSET", "EditorBase", "Unset", "edits", "plain"]


class Unset(Enum):
    """The type of :data:`UNSET`: "leave this field as it is"."""

    UNSET = "unset"


#: Default of optional update arguments: the field is not changed.
UNSET: Final = Unset.UNSET


def edits(**fields: object) -> dict[str, Any]:
    """The keyword arguments that are not :data:`UNSET` (``None`` stays: it clears)."""
    return {key: value for key, value in fields.items() if value is not UNSET}


def plain(value: object) -> Any:
    """The stored form of one value: enum -> value, datetime/date -> ISO string."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def effective_status(state: Map[Any]) -> Status:
    """The effective status of a ``state`` map (see :mod:`.models`)."""
    if state.get("processed_at") is not None:
        return Status.PROCESSED
    if state.get("submission_id") is not None:
        return Status.SENT
    raw = state.get("status")
    try:
        return Status(raw) if isinstance(raw, str) else Status.REGISTERED
    except ValueError:
        return Status.REGISTERED


class EditorBase:
    """Holds the document, the actor and the checks every edit starts with."""

    def __init__(
        self,
        doc: Doc[Any],
        *,
        actor: str,
        role: Role,
        clock: Callable[[], dt.datetime] | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.doc = doc
        self.actor = check_text(actor, "actor", max_length=200)
        if not actor.strip():
            raise InvalidValue("actor", "must not be blank")
        try:
            self.role = Role(role)
        except ValueError:
            raise InvalidValue("role", f"unknown role {role!r}") from None
        self.clock = clock or now_utc
        self.policy = policy

    def _now(self) -> dt.datetime:
        return aware(self.clock(), "clock")

    def status(self) -> Status:
        """The effective status of the work order now."""
        return effective_status(root_map(self.doc, "state"))

    def _begin(self, operation: str, roles: Collection[Role]) -> None:
        """Role, skeleton and lock checks; raise before anything is written."""
        if self.role not in roles:
            raise EditNotAllowed(self.role.value, operation)
        require_skeleton(self.doc, "wo")
        if self.role is Role.DEVICE:
            status = self.status()
            if status in LOCKED_STATUSES:
                raise WorkOrderLocked(status.value, operation)

    def _entry(self, root: str, entry_id: str) -> Map[Any]:
        if not isinstance(entry_id, str):
            raise EntryNotFound(root, repr(entry_id))
        entry = root_map(self.doc, root).get(entry_id)
        if entry is None:
            raise EntryNotFound(root, entry_id)
        if not isinstance(entry, Map):
            raise InvalidValue(f"{root}.{entry_id}", "not a shared map: it cannot be edited")
        return entry

    def _add_entry(self, root: str, model: type[BaseModel], values: dict[str, Any]) -> str:
        entry_id = new_id()
        entry = validate(model, {**values, "id": entry_id}, f"{root}.new")
        root_map(self.doc, root)[entry_id] = Map(stored(entry, exclude={"id"}))
        return entry_id

    def _update_entry(
        self, root: str, model: type[BaseModel], entry_id: str, changes: dict[str, Any]
    ) -> None:
        entry = self._entry(root, entry_id)
        current = entry.to_py() or {}
        merged = {**current, **changes, "id": entry_id}
        merged = {key: value for key, value in merged.items() if value is not None}
        validated = validate(model, merged, f"{root}.{entry_id}")
        self._write_keys(entry, stored(validated, exclude={"id"}), changes)

    def _update_section(
        self, root: str, model: type[BaseModel], changes: dict[str, Any]
    ) -> BaseModel:
        present = {key: value for key, value in changes.items() if value is not None}
        validated = validate(model, present, root)
        self._write_keys(root_map(self.doc, root), stored(validated), changes)
        return validated

    def _write_keys(self, target: Map[Any], data: dict[str, Any], keys: Collection[str]) -> None:
        with self.doc.transaction():
            for key in keys:
                if key in data:
                    if target.get(key) != data[key]:
                        target[key] = data[key]
                elif key in target:
                    del target[key]

    def _remove_entry(self, root: str, entry_id: str) -> None:
        self._entry(root, entry_id)
        del root_map(self.doc, root)[entry_id]

    def _write_state(self, values: dict[str, Any]) -> None:
        """Write ``state`` keys (None deletes); a status write also sets status_at/by."""
        values = dict(values)
        if "status" in values:
            values |= {"status_at": self._now(), "status_by": self.actor}
        state = root_map(self.doc, "state")
        data = {key: plain(value) for key, value in values.items() if value is not None}
        self._write_keys(state, data, values)

    def _set_text(self, root: str, text: str, roles: Collection[Role]) -> None:
        self._begin(f"edit {root}", roles)
        check_text(text, root)
        with self.doc.transaction():
            apply_text(root_text(self.doc, root), text)
