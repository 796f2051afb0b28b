"""Office-only edits of a work order (part of :class:`~.editor.WorkOrderEditor`).

Planning and assignment fields, customer and delivery data, descriptions,
identity fields, task removal, and the end of the life cycle: marking a sent
work order processed, and reopening a sent or processed one so devices may
edit it again. The same checks-then-one-transaction rule as the rest of the
editor applies (see :mod:`.editor`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from ..exceptions import InvalidValue
from ._base import UNSET, EditorBase, Unset, edits
from ._read import lenient
from ._values import check_text, validate
from .layout import root_map
from .models import LOCKED_STATUSES, Info, Meta, Party, Schedule, Status
from .names import validate_id
from .permissions import Role

__all__ = ["OfficeOperations"]

_OFFICE = frozenset({Role.OFFICE})
_PARTY_FIELDS = frozenset(Party.model_fields)


class OfficeOperations(EditorBase):
    """The office's operations; every method raises EditNotAllowed for other roles."""

    def set_planning(
        self,
        *,
        planned_date: dt.date | Unset | None = UNSET,
        planned_start: dt.datetime | Unset | None = UNSET,
        planned_end: dt.datetime | Unset | None = UNSET,
        deadline: dt.datetime | Unset | None = UNSET,
        technician: str | Unset | None = UNSET,
        crew: Sequence[str] | Unset | None = UNSET,
    ) -> Schedule:
        """Change the given planning fields (None clears one); return the new planning.

        ``planned_end`` must not be before ``planned_start`` (as they will be
        after the change). ``crew`` replaces the whole list of other technicians
        (distinct ids). A registered work order that gets a technician and a
        date becomes planned. The technicians' planning documents are separate:
        see :func:`~.documents.assign_workorder`.
        """
        self._begin("plan", _OFFICE)
        if isinstance(crew, (list, tuple)):
            crew = [validate_id(member, "planning.crew") for member in crew]
        changes = edits(
            planned_date=planned_date,
            planned_start=planned_start,
            planned_end=planned_end,
            deadline=deadline,
            technician=technician,
            crew=crew,
        )
        if isinstance(technician, str):
            validate_id(technician, "planning.technician")
        current = lenient(Schedule, root_map(self.doc, "planning").to_py() or {}, "planning", [])
        present = {key: value for key, value in changes.items() if value is not None}
        validated = validate(Schedule, present, "planning")
        after = (current or Schedule()).model_copy(
            update={key: getattr(validated, key) for key in changes}
        )
        if after.planned_start and after.planned_end and after.planned_end < after.planned_start:
            raise InvalidValue("planning.planned_end", "before planned_start")
        promote = (
            self.status() is Status.REGISTERED
            and after.technician is not None
            and after.planned_date is not None
        )
        with self.doc.transaction():
            self._update_section("planning", Schedule, changes)
            if promote:
                self._write_state({"status": Status.PLANNED})
        return after

    def _set_party(self, root: str, fields: dict[str, str | None]) -> None:
        self._begin(f"edit {root}", _OFFICE)
        unknown = sorted(set(fields) - _PARTY_FIELDS)
        if unknown:
            raise InvalidValue(f"{root}.{unknown[0]}", "not a field of an address and contact")
        self._update_section(root, Party, dict(fields))

    def set_customer(self, **fields: str | None) -> None:
        """Change customer fields by name (see :class:`~.models.Party`); None clears one."""
        self._set_party("customer", fields)

    def set_delivery(self, **fields: str | None) -> None:
        """Change delivery address and contact fields by name; None clears one."""
        self._set_party("delivery", fields)

    def set_short_description(self, text: str) -> None:
        """Set ``info.short_description`` (at most 500 characters)."""
        self._begin("edit the short description", _OFFICE)
        self._update_section("info", Info, {"short_description": text})

    def set_description(self, text: str) -> None:
        """Make the long description read ``text`` (character-level edits)."""
        self._set_text("description", text, _OFFICE)

    def set_meta(
        self,
        *,
        number: str | Unset = UNSET,
        external_ref: str | Unset | None = UNSET,
        work_type: str | Unset | None = UNSET,
    ) -> None:
        """Change the number, external reference or work type (None clears the latter two)."""
        self._begin("edit identity fields", _OFFICE)
        changes = edits(number=number, external_ref=external_ref, work_type=work_type)
        if "number" in changes:
            number_value = check_text(changes["number"], "meta.number", max_length=500)
            if not number_value.strip():
                raise InvalidValue("meta.number", "must not be blank")
        self._update_section("meta", Meta, changes)

    def remove_task(self, task_id: str) -> None:
        """Delete a task."""
        self._begin("remove a task", _OFFICE)
        self._remove_entry("tasks", task_id)

    def mark_processed(self) -> None:
        """Mark a sent work order processed. InvalidValue unless it is sent."""
        self._begin("mark processed", _OFFICE)
        if self.status() is not Status.SENT:
            reason = f"only a sent work order can be processed, not {self.status()}"
            raise InvalidValue("state.status", reason)
        self._write_state({"status": Status.PROCESSED, "processed_at": self._now()})

    def reopen(self) -> None:
        """Reopen a sent or processed work order: in progress, devices may edit again.

        Clears ``submission_id`` and ``processed_at`` and records
        ``reopened_at``; ``sent_at`` keeps the time of the last sending.
        """
        self._begin("reopen", _OFFICE)
        if self.status() not in LOCKED_STATUSES:
            reason = f"only a sent or processed work order can be reopened, not {self.status()}"
            raise InvalidValue("state.status", reason)
        self._write_state(
            {
                "status": Status.IN_PROGRESS,
                "submission_id": None,
                "processed_at": None,
                "reopened_at": self._now(),
            }
        )
