"""The office-only and planning documents: models, readers and writers.

``office/{id}`` holds the internal memo of work order ``id`` (devices never
receive it). ``planning/{tech}`` lists the work orders assigned to technician
``tech``: work-order id -> atomic JSON {assigned_at, planned_date, released_at},
so an assignment is added, changed and removed as one value (last writer wins).

A work order taken from a technician is *released* rather than removed at once
(:func:`release_workorder`): their device may still send the changes it made
before it learnt of it (it may have been offline), but no new ones, and the
relay lets the release lapse after a retention period
(:meth:`Planning.current_ids`). :func:`unassign_workorder` removes an entry.

Readers never raise on content; writers validate first (InvalidValue) and
require the skeleton made by :func:`~.layout.create_office_data` or
:func:`~.layout.create_planning` (SkeletonError).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pycrdt import Doc
from pydantic import AwareDatetime, BaseModel, ConfigDict

from ..exceptions import InvalidValue
from ._read import lenient, read_roots
from ._values import apply_text, aware, now_utc, stored
from .layout import OFFICE_ROOTS, PLANNING_ROOTS, require_skeleton, root_map, root_text
from .models import Problem
from .names import is_valid_id, validate_id

__all__ = [
    "Assignment",
    "OfficeData",
    "Planning",
    "assign_workorder",
    "release_workorder",
    "set_memo",
    "unassign_workorder",
]


class OfficeData(BaseModel):
    """The content of ``office/{id}``."""

    model_config = ConfigDict(frozen=True)

    id: str = ""
    memo: str = ""

    @classmethod
    def from_doc(cls, doc: Doc[Any]) -> tuple[OfficeData, list[Problem]]:
        """Read ``doc``; never raises on its content."""
        problems: list[Problem] = []
        raw = read_roots(doc, OFFICE_ROOTS)
        id = raw["meta"].get("id")
        if not is_valid_id(id):
            problems.append(Problem(path="meta.id", message="missing or not a valid id"))
            id = ""
        return cls(id=id, memo=raw["memo"]), problems


class Assignment(BaseModel):
    """One work order on a technician's planning."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    workorder_id: str
    assigned_at: AwareDatetime
    planned_date: dt.date | None = None
    #: Taken from this technician at this time: only changes made before it still go.
    released_at: AwareDatetime | None = None

    @property
    def released(self) -> bool:
        return self.released_at is not None


class Planning(BaseModel):
    """The content of ``planning/{tech}``: the assignments by work-order id."""

    model_config = ConfigDict(frozen=True)

    technician: str = ""
    workorders: dict[str, Assignment] = {}

    @classmethod
    def from_doc(cls, doc: Doc[Any]) -> tuple[Planning, list[Problem]]:
        """Read ``doc``; never raises on its content."""
        problems: list[Problem] = []
        raw = read_roots(doc, PLANNING_ROOTS)
        technician = raw["meta"].get("technician")
        if not is_valid_id(technician):
            problems.append(Problem(path="meta.technician", message="missing or not a valid id"))
            technician = ""
        assignments: dict[str, Assignment] = {}
        for key, value in raw["workorders"].items():
            path = f"workorders.{key}"
            if not is_valid_id(key) or not isinstance(value, dict):
                problems.append(Problem(path=path, message="left out: not an assignment"))
                continue
            entry = lenient(Assignment, {**value, "workorder_id": key}, path, problems)
            if entry is not None:
                assignments[key] = entry
        return cls(technician=technician, workorders=assignments), problems

    def sorted_ids(self) -> list[str]:
        """Work-order ids by planned date (undated last), then id; released ones too."""
        return sorted(
            self.workorders,
            key=lambda k: (self.workorders[k].planned_date or dt.date.max, k),
        )

    def active_ids(self) -> list[str]:
        """The work orders assigned and not released, as :meth:`sorted_ids` orders them."""
        return [k for k in self.sorted_ids() if not self.workorders[k].released]

    def current_ids(self, now: dt.datetime, retention: dt.timedelta) -> frozenset[str]:
        """What the technician's devices may reach at ``now``: the active work orders and
        those released less than ``retention`` ago."""
        return frozenset(
            key
            for key, entry in self.workorders.items()
            if entry.released_at is None or now - entry.released_at < retention
        )


def assign_workorder(
    doc: Doc[Any],
    workorder_id: str,
    *,
    assigned_at: dt.datetime | None = None,
    planned_date: dt.date | None = None,
) -> Assignment:
    """Put ``workorder_id`` on this planning (or replace its assignment); return it.

    The office also sets ``planning.technician`` on the work order itself (see
    :meth:`~.editor.WorkOrderEditor.set_planning`); the two documents are
    separate, so callers write both.
    """
    require_skeleton(doc, "planning")
    validate_id(workorder_id, "workorder_id")
    at = aware(assigned_at, "assigned_at") if assigned_at is not None else now_utc()
    if planned_date is not None and (
        not isinstance(planned_date, dt.date) or isinstance(planned_date, dt.datetime)
    ):
        raise InvalidValue("planned_date", "must be a date")
    assignment = Assignment(workorder_id=workorder_id, assigned_at=at, planned_date=planned_date)
    root_map(doc, "workorders")[workorder_id] = stored(assignment, exclude={"workorder_id"})
    return assignment


def release_workorder(
    doc: Doc[Any],
    workorder_id: str,
    *,
    released_at: dt.datetime | None = None,
    drop_before: dt.datetime | None = None,
) -> bool:
    """Mark ``workorder_id`` released on this planning (see the module docstring); False if
    it is not on it. Entries released before ``drop_before`` are removed meanwhile."""
    require_skeleton(doc, "planning")
    validate_id(workorder_id, "workorder_id")
    at = aware(released_at, "released_at") if released_at is not None else now_utc()
    workorders = root_map(doc, "workorders")
    planning, _ = Planning.from_doc(doc)
    with doc.transaction():
        if drop_before is not None:
            for key, entry in planning.workorders.items():
                if entry.released_at is not None and entry.released_at < drop_before:
                    del workorders[key]
        current = planning.workorders.get(workorder_id)
        if current is None:
            return False
        if current.released_at is None:
            released = current.model_copy(update={"released_at": at})
            workorders[workorder_id] = stored(released, exclude={"workorder_id"})
    return True


def unassign_workorder(doc: Doc[Any], workorder_id: str) -> bool:
    """Take ``workorder_id`` off this planning; False if it was not on it."""
    require_skeleton(doc, "planning")
    workorders = root_map(doc, "workorders")
    if workorder_id not in workorders:
        return False
    del workorders[workorder_id]
    return True


def set_memo(doc: Doc[Any], memo: str) -> None:
    """Make the office memo read ``memo``, with character-level edits (merges with others)."""
    require_skeleton(doc, "office")
    if not isinstance(memo, str):
        raise InvalidValue("memo", "must be a string")
    with doc.transaction():
        apply_text(root_text(doc, "memo"), memo)
