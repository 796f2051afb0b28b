"""The CRDT layout of the domain's documents, and the skeletons that create it.

This module is the contract between the domain and the relay. A ``wo/{id}``
document has these roots (all written once by :func:`create_workorder`):

===============  ====  =========================================================
root             type  content
===============  ====  =========================================================
``meta``         Map   schema, id, number, external_ref, work_type, created_at
``state``        Map   status, status_at, status_by, sent_at, submission_id,
                       processed_at, reopened_at
``customer``     Map   name, street, postal_code, city, country, contact_name,
                       phone, email
``delivery``     Map   the same keys as ``customer``
``planning``     Map   planned_date, planned_start, planned_end, deadline,
                       technician, crew (a list of technician ids)
``info``         Map   short_description
``description``  Text  the long description (office)
``notes``        Text  free notes from the field
``tasks``        Map   entry id -> Map {title, done, done_at, done_by, position}
``hours``        Map   entry id -> Map {date, start, end, break_minutes, kind,
                       technician, remark}
``timers``       Map   technician -> JSON {started_at, kind}
``materials``    Map   entry id -> Map {article, description, quantity, unit, warehouse}
``answers``      Map   question id -> JSON value
``attachments``  Map   entry id -> Map {sha256, kind, name, mime, size, added_at,
                       added_by, caption}
``signature``    Map   ``current`` -> JSON {strokes, signer_name, signed_at, device,
                       content_hash}
===============  ====  =========================================================

Invariants: every nested Map (an entry of ``tasks``, ``hours``, ``materials``,
``attachments``) is created by exactly one writer under a fresh uuid4 hex id and
is never replaced, only edited key by key or deleted; values under ``timers``,
``answers`` and ``signature``, and ``planning.crew``, are atomic JSON (last
writer wins per key);
datetimes are ISO 8601 strings with an offset, dates ISO dates. ``meta.schema``
(= :data:`~.models.SCHEMA_VERSION`) marks a document whose skeleton exists:
editors refuse documents without it.

The other documents: ``office/{id}`` has ``meta`` {schema, id} and ``memo``
(Text); ``planning/{tech}`` has ``meta`` {schema, technician} and ``workorders``
(Map: work-order id -> JSON {assigned_at, planned_date}); ``settings`` has
``meta`` {schema}, ``policy`` (Map: ``current`` -> int), ``versions`` (Map:
str(version) -> JSON policy) and ``overrides`` (Map: technician -> int).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import uuid4

from pycrdt import Doc, Map, Text

from ..exceptions import InvalidValue, SkeletonError
from ._values import aware, check_text, iso, now_utc, stored, validate
from .models import SCHEMA_VERSION, Info, Party, Schedule, State, Status, Task
from .names import validate_id

__all__ = [
    "COLLECTION_ROOTS",
    "FIELD_ROOTS",
    "JSON_ROOTS",
    "OFFICE_ROOTS",
    "PLANNING_ROOTS",
    "SETTINGS_ROOTS",
    "SIGNATURE_KEY",
    "TEXT_ROOTS",
    "WORKORDER_ROOTS",
    "create_office_data",
    "create_planning",
    "create_workorder",
    "new_id",
    "require_no_skeleton",
    "require_skeleton",
    "root_map",
    "root_text",
    "schema_of",
]

#: Map roots holding scalar fields (last writer wins per key).
FIELD_ROOTS = ("meta", "state", "customer", "delivery", "planning", "info")
#: Map roots whose entries are nested Maps created by one writer under a fresh id.
COLLECTION_ROOTS = ("tasks", "hours", "materials", "attachments")
#: Map roots whose values are atomic JSON.
JSON_ROOTS = ("timers", "answers", "signature")
#: Text roots.
TEXT_ROOTS = ("description", "notes")
#: Every root of a ``wo/{id}`` document and its shared type.
WORKORDER_ROOTS: dict[str, type[Map[Any] | Text]] = {
    **dict.fromkeys(FIELD_ROOTS, Map),
    **dict.fromkeys(TEXT_ROOTS, Text),
    **dict.fromkeys(COLLECTION_ROOTS, Map),
    **dict.fromkeys(JSON_ROOTS, Map),
}
#: The key of the one signature value in the ``signature`` root.
SIGNATURE_KEY = "current"
OFFICE_ROOTS: dict[str, type[Map[Any] | Text]] = {"meta": Map, "memo": Text}
PLANNING_ROOTS: dict[str, type[Map[Any] | Text]] = {"meta": Map, "workorders": Map}
SETTINGS_ROOTS: dict[str, type[Map[Any] | Text]] = {
    "meta": Map,
    "policy": Map,
    "versions": Map,
    "overrides": Map,
}


def new_id() -> str:
    """A fresh entry id: uuid4 as 32 hex digits."""
    return uuid4().hex


def root_map(doc: Doc[Any], name: str) -> Map[Any]:
    """The Map root ``name`` (registers it locally; writes nothing)."""
    root: Map[Any] = doc.get(name, type=Map)
    return root


def root_text(doc: Doc[Any], name: str) -> Text:
    """The Text root ``name`` (registers it locally; writes nothing)."""
    root: Text = doc.get(name, type=Text)
    return root


def schema_of(doc: Doc[Any]) -> int | None:
    """``meta.schema`` as an int, or None when the document has no skeleton (or garbage)."""
    value = root_map(doc, "meta").get("schema")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if float(value).is_integer() and value >= 1 else None


def require_skeleton(doc: Doc[Any], kind: str) -> None:
    """Raise SkeletonError unless ``doc`` carries a skeleton of the schema this code writes."""
    schema = schema_of(doc)
    if schema is None:
        raise SkeletonError(kind, "no skeleton: the office has not created it, or it is not synced")
    if schema != SCHEMA_VERSION:
        raise SkeletonError(kind, f"schema {schema} is not supported (this code: {SCHEMA_VERSION})")


def require_no_skeleton(doc: Doc[Any], kind: str) -> None:
    """Raise SkeletonError if ``doc`` has a skeleton (or anything in ``meta``) already."""
    if schema_of(doc) is not None or len(root_map(doc, "meta")):
        raise SkeletonError(kind, "the skeleton exists already")


def _meta(
    id: str, number: str, at: datetime, external_ref: str | None, work_type: str | None
) -> dict[str, Any]:
    if not isinstance(number, str) or not number.strip() or len(number) > 500:
        raise InvalidValue("meta.number", "must be a non-empty string of at most 500 characters")
    meta: dict[str, Any] = {"schema": SCHEMA_VERSION, "id": id, "number": number}
    meta["created_at"] = iso(at)
    for key, value in (("external_ref", external_ref), ("work_type", work_type)):
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 500:
            raise InvalidValue(f"meta.{key}", "must be a string of at most 500 characters")
        meta[key] = value
    return meta


def create_workorder(
    doc: Doc[Any],
    *,
    id: str,
    number: str,
    created_at: datetime | None = None,
    external_ref: str | None = None,
    work_type: str | None = None,
    status: Status = Status.REGISTERED,
    customer: Party | None = None,
    delivery: Party | None = None,
    planning: Schedule | None = None,
    short_description: str = "",
    description: str = "",
    tasks: Sequence[str] = (),
) -> list[str]:
    """Create the skeleton and initial values of a work order in ``doc`` (office side).

    Everything is validated first (InvalidValue, nothing written); ``status``
    must be registered or planned. One transaction writes ``meta`` (with
    ``schema``), ``state``, the given customer, delivery, planning and
    descriptions, and one task Map per title in ``tasks``, in order. Returns
    the new task ids. Raises SkeletonError if ``doc`` has a skeleton already.
    """
    validate_id(id)
    require_no_skeleton(doc, "wo")
    at = aware(created_at, "meta.created_at") if created_at is not None else now_utc()
    meta = _meta(id, number, at, external_ref, work_type)
    if status not in (Status.REGISTERED, Status.PLANNED):
        raise InvalidValue("state.status", "a new work order is registered or planned")
    if planning is not None:
        for member in planning.team():
            validate_id(member, "planning.technician")
    info = validate(Info, {"short_description": short_description}, "info")
    check_text(description, "description")
    state = State(status=status, status_at=at, status_by="office")
    entries = [
        validate(Task, {"id": "new", "title": title, "position": float(i)}, "tasks.new")
        for i, title in enumerate(tasks)
    ]
    ids = [new_id() for _ in entries]
    with doc.transaction():
        root_map(doc, "meta").update(meta)
        root_map(doc, "state").update(stored(state))
        for name, part in (("customer", customer), ("delivery", delivery), ("planning", planning)):
            if part is not None:
                root_map(doc, name).update(stored(part))
        root_map(doc, "info").update(stored(info))
        if description:
            root_text(doc, "description").insert(0, description)
        tasks_root = root_map(doc, "tasks")
        for task_id, task in zip(ids, entries, strict=True):
            tasks_root[task_id] = Map(stored(task, exclude={"id"}))
        for name, kind in WORKORDER_ROOTS.items():
            doc.get(name, type=kind)
    return ids


def create_office_data(doc: Doc[Any], *, id: str, memo: str = "") -> None:
    """Create the skeleton of ``office/{id}``: ``meta`` {schema, id} and the ``memo`` text."""
    validate_id(id)
    require_no_skeleton(doc, "office")
    if not isinstance(memo, str):
        raise InvalidValue("memo", "must be a string")
    with doc.transaction():
        root_map(doc, "meta").update({"schema": SCHEMA_VERSION, "id": id})
        if memo:
            root_text(doc, "memo").insert(0, memo)


def create_planning(doc: Doc[Any], *, technician: str) -> None:
    """Create the skeleton of ``planning/{technician}``: ``meta`` and ``workorders``."""
    validate_id(technician, "technician")
    require_no_skeleton(doc, "planning")
    with doc.transaction():
        root_map(doc, "meta").update({"schema": SCHEMA_VERSION, "technician": technician})
        root_map(doc, "workorders")
