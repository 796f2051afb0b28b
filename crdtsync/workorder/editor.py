"""The typed edit API of a work order, for devices, the office and the relay.

Every method checks in this order, before anything touches the document:
the role may do it (EditNotAllowed), the document has the skeleton
(SkeletonError), a device does not edit a sent or processed work order
(WorkOrderLocked), the entry exists (EntryNotFound), the values are valid
(InvalidValue). Only then does one pycrdt transaction write the change, so a
refused call leaves the document, and its state vector, unchanged.

Writers follow the layout contract of :mod:`.layout`: new entries are nested
Maps created here under a fresh uuid4 hex id; existing entries are edited key
by key (only the keys the caller changes are written); texts change by
character-level edits. Datetimes come from ``clock`` (timezone-aware; the
default is UTC now) and are stored with the offset the clock gives.

Office-only operations (planning, customer data, descriptions, reopen,
processed) live in :class:`~.office.OfficeOperations`, which this class
includes; :meth:`WorkOrderEditor.mark_sent` is the relay's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from pycrdt import Doc, Map

from ..exceptions import InvalidValue
from ._base import UNSET, Unset, edits
from ._values import check_json, check_text, edit_text, iso, stored, validate
from .layout import SIGNATURE_KEY, new_id, root_map, root_text
from .models import (
    DEVICE_STATUSES,
    LOCKED_STATUSES,
    Attachment,
    AttachmentKind,
    HourKind,
    HoursEntry,
    Material,
    Point,
    Signature,
    Status,
    Task,
    Timer,
)
from .names import validate_id
from .office import OfficeOperations
from .permissions import Role
from .policy import Policy
from .signature import content_hash

__all__ = ["UNSET", "WorkOrderEditor"]

_EDIT = frozenset({Role.DEVICE, Role.OFFICE})
_DEVICE = frozenset({Role.DEVICE})
_RELAY = frozenset({Role.RELAY})


class WorkOrderEditor(OfficeOperations):
    """Typed, validated edits of one work-order document by ``actor`` in ``role``.

    ``policy`` (optional) validates form answers against the form definitions
    and decides whether a signer name is required; ``device`` is recorded in
    signatures.
    """

    def __init__(
        self,
        doc: Doc[Any],
        *,
        actor: str,
        role: Role,
        clock: Callable[[], dt.datetime] | None = None,
        policy: Policy | None = None,
        device: str = "",
    ) -> None:
        super().__init__(doc, actor=actor, role=role, clock=clock, policy=policy)
        self.device = check_text(device, "device", max_length=500)

    # -- timers and hours ------------------------------------------------------------

    def start_timer(self, kind: HourKind = HourKind.WORK) -> Timer:
        """Start ``actor``'s hours timer. InvalidValue if one already runs."""
        self._begin("start a timer", _DEVICE)
        field = f"timers.{self.actor}"
        if root_map(self.doc, "timers").get(self.actor) is not None:
            raise InvalidValue(field, "a timer is already running")
        timer = validate(
            Timer, {"technician": self.actor, "started_at": self._now(), "kind": kind}, field
        )
        root_map(self.doc, "timers")[self.actor] = stored(timer, exclude={"technician"})
        return timer

    def _running_timer(self) -> Timer:
        field = f"timers.{self.actor}"
        raw = root_map(self.doc, "timers").get(self.actor)
        if raw is None:
            raise InvalidValue(field, "no timer is running")
        if not isinstance(raw, dict):
            raise InvalidValue(field, "the running timer is unreadable; cancel it")
        return validate(Timer, {**raw, "technician": self.actor}, field)

    def stop_timer(self, *, remark: str = "") -> str:
        """Stop ``actor``'s timer and register its time as an hours entry; return the entry id.

        InvalidValue if no timer runs or the time cannot be an entry (more than
        24 hours, or a clock that went backwards): cancel the timer then.
        """
        self._begin("stop a timer", _DEVICE)
        timer = self._running_timer()
        start, end = timer.started_at, self._now()
        values = {"date": start.date(), "start": start, "end": end, "kind": timer.kind}
        values |= {"technician": self.actor, "remark": remark}
        entry_id = new_id()
        entry = validate(HoursEntry, {**values, "id": entry_id}, f"timers.{self.actor}")
        with self.doc.transaction():
            del root_map(self.doc, "timers")[self.actor]
            root_map(self.doc, "hours")[entry_id] = Map(stored(entry, exclude={"id"}))
        return entry_id

    def cancel_timer(self) -> None:
        """Drop ``actor``'s timer without registering hours. InvalidValue if none runs."""
        self._begin("cancel a timer", _DEVICE)
        timers = root_map(self.doc, "timers")
        if self.actor not in timers:
            raise InvalidValue(f"timers.{self.actor}", "no timer is running")
        del timers[self.actor]

    def add_hours(
        self,
        *,
        date: dt.date,
        start: dt.datetime,
        end: dt.datetime,
        break_minutes: int = 0,
        kind: HourKind = HourKind.WORK,
        technician: str | None = None,
        remark: str = "",
    ) -> str:
        """Register hours; ``technician`` defaults to ``actor``. Returns the new entry id."""
        self._begin("add hours", _EDIT)
        values = {"date": date, "start": start, "end": end, "break_minutes": break_minutes}
        values |= {"kind": kind, "technician": technician or self.actor, "remark": remark}
        return self._add_entry("hours", HoursEntry, values)

    def update_hours(
        self,
        entry_id: str,
        *,
        date: dt.date | Unset = UNSET,
        start: dt.datetime | Unset = UNSET,
        end: dt.datetime | Unset = UNSET,
        break_minutes: int | Unset = UNSET,
        kind: HourKind | Unset = UNSET,
        technician: str | Unset = UNSET,
        remark: str | Unset = UNSET,
    ) -> None:
        """Change the given fields of an hours entry (the others stay as they are)."""
        self._begin("update hours", _EDIT)
        changes = edits(
            date=date,
            start=start,
            end=end,
            break_minutes=break_minutes,
            kind=kind,
            technician=technician,
            remark=remark,
        )
        self._update_entry("hours", HoursEntry, entry_id, changes)

    def remove_hours(self, entry_id: str) -> None:
        """Delete an hours entry."""
        self._begin("remove hours", _EDIT)
        self._remove_entry("hours", entry_id)

    # -- materials -------------------------------------------------------------------

    def add_material(
        self,
        *,
        article: str,
        quantity: float,
        unit: str = "pcs",
        description: str = "",
        warehouse: str | None = None,
    ) -> str:
        """Register a used material. Returns the new entry id."""
        self._begin("add material", _EDIT)
        values = {"article": article, "quantity": quantity, "unit": unit}
        values |= {"description": description, "warehouse": warehouse}
        return self._add_entry("materials", Material, values)

    def update_material(
        self,
        entry_id: str,
        *,
        article: str | Unset = UNSET,
        quantity: float | Unset = UNSET,
        unit: str | Unset = UNSET,
        description: str | Unset = UNSET,
        warehouse: str | Unset | None = UNSET,
    ) -> None:
        """Change the given fields of a material entry (``warehouse=None`` clears it)."""
        self._begin("update material", _EDIT)
        changes = edits(
            article=article,
            quantity=quantity,
            unit=unit,
            description=description,
            warehouse=warehouse,
        )
        self._update_entry("materials", Material, entry_id, changes)

    def remove_material(self, entry_id: str) -> None:
        """Delete a material entry."""
        self._begin("remove material", _EDIT)
        self._remove_entry("materials", entry_id)

    # -- tasks -----------------------------------------------------------------------

    def add_task(self, title: str, *, position: float | None = None) -> str:
        """Add a task (at the end unless ``position`` is given). Returns its id."""
        self._begin("add a task", _EDIT)
        if position is None:
            positions = [entry.get("position") for entry in root_map(self.doc, "tasks").values()]
            numbers = [p for p in positions if isinstance(p, (int, float))]
            position = float(max(numbers, default=-1.0)) + 1.0
        return self._add_entry("tasks", Task, {"title": title, "position": position})

    def tick_task(self, task_id: str) -> None:
        """Mark a task done now, by ``actor``."""
        self._begin("tick a task", _EDIT)
        changes = {"done": True, "done_at": self._now(), "done_by": self.actor}
        self._update_entry("tasks", Task, task_id, changes)

    def untick_task(self, task_id: str) -> None:
        """Mark a task not done (clears done_at and done_by)."""
        self._begin("untick a task", _EDIT)
        self._update_entry(
            "tasks", Task, task_id, {"done": False, "done_at": None, "done_by": None}
        )

    # -- form answers ----------------------------------------------------------------

    def answer(self, question_id: str, value: object) -> None:
        """Answer a form question (last writer wins per question).

        With a policy: the question must exist and ``value`` must fit its kind,
        choices and bounds (a date is stored as its ISO string). Without one:
        any plain JSON value under a valid id.
        """
        self._begin("answer a question", _EDIT)
        field = f"answers.{question_id}"
        validate_id(question_id, field)
        if self.policy is not None:
            question = self.policy.question(question_id)
            if question is None:
                raise InvalidValue(field, "no such question in the policy's forms")
            try:
                value = question.check(value)
            except ValueError as exc:
                raise InvalidValue(field, str(exc)) from None
        check_json(value, field)
        if value is None:
            raise InvalidValue(field, "use clear_answer to remove an answer")
        root_map(self.doc, "answers")[question_id] = value

    def clear_answer(self, question_id: str) -> None:
        """Remove the answer to ``question_id`` (no error if there is none)."""
        self._begin("clear an answer", _EDIT)
        answers = root_map(self.doc, "answers")
        if question_id in answers:
            del answers[question_id]

    # -- attachments -----------------------------------------------------------------

    def attach(
        self,
        sha256: str,
        *,
        kind: AttachmentKind,
        name: str,
        mime: str,
        size: int,
        caption: str = "",
    ) -> str:
        """Reference an uploaded (or to-be-uploaded) blob; return the attachment id.

        Idempotent per blob: if an attachment with this sha256 exists, its id is
        returned and nothing is written.
        """
        self._begin("attach a file", _EDIT)
        for entry_id, entry in root_map(self.doc, "attachments").items():
            if isinstance(entry, Map) and entry.get("sha256") == sha256:
                return entry_id
        values = {"sha256": sha256, "kind": kind, "name": name, "mime": mime, "size": size}
        values |= {"caption": caption, "added_at": self._now(), "added_by": self.actor}
        return self._add_entry("attachments", Attachment, values)

    def remove_attachment(self, attachment_id: str) -> None:
        """Drop an attachment reference (the blob itself stays on the relay)."""
        self._begin("remove an attachment", _EDIT)
        self._remove_entry("attachments", attachment_id)

    # -- notes -----------------------------------------------------------------------

    def _notes_edit(self, operation: str, index: int, delete: int, insert: str) -> None:
        self._begin(operation, _EDIT)
        check_text(insert, "notes")
        text = root_text(self.doc, "notes")
        current = str(text)
        for field, number in (("index", index), ("length", delete)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise InvalidValue(f"notes.{field}", "must be a non-negative int")
        if index + delete > len(current):
            raise InvalidValue("notes.index", f"beyond the end of the notes ({len(current)})")
        with self.doc.transaction():
            edit_text(text, current, index, delete, insert)

    def insert_notes(self, index: int, text: str) -> None:
        """Insert ``text`` at character ``index`` of the notes."""
        self._notes_edit("edit notes", index, 0, text)

    def delete_notes(self, index: int, length: int) -> None:
        """Delete ``length`` characters of the notes from character ``index``."""
        self._notes_edit("edit notes", index, length, "")

    def replace_notes(self, start: int, end: int, text: str) -> None:
        """Replace characters ``start:end`` of the notes by ``text``."""
        if isinstance(end, int) and isinstance(start, int) and end < start:
            raise InvalidValue("notes.index", "end before start")
        self._notes_edit("edit notes", start, end - start, text)

    def append_notes(self, text: str) -> None:
        """Add ``text`` at the end of the notes."""
        self._notes_edit("edit notes", len(str(root_text(self.doc, "notes"))), 0, text)

    def set_notes(self, text: str) -> None:
        """Make the notes read ``text``, changing only the characters that differ."""
        self._set_text("notes", text, _EDIT)

    # -- status, signature, submission -----------------------------------------------

    def set_status(self, status: Status) -> None:
        """Set the status: devices only in_progress/completed; sent is the relay's,
        processed and reopening the office's (:meth:`mark_processed`, :meth:`reopen`)."""
        self._begin("set the status", _EDIT)
        try:
            status = Status(status)
        except ValueError:
            raise InvalidValue("state.status", f"unknown status {status!r}") from None
        if self.role is Role.DEVICE and status not in DEVICE_STATUSES:
            raise InvalidValue("state.status", "devices set only in_progress or completed")
        if status in LOCKED_STATUSES:
            raise InvalidValue("state.status", "use mark_processed, or submit to send")
        if self.status() in LOCKED_STATUSES:
            raise InvalidValue("state.status", "the work order is sent: reopen it first")
        self._write_state({"status": status})

    def sign(
        self, strokes: Sequence[Sequence[Sequence[float]]], *, signer_name: str = ""
    ) -> Signature:
        """Record the customer's signature over the current content; return it.

        Strokes are lists of ``(x, y, t)`` points (see :class:`~.models.Signature`);
        a blank ``signer_name`` is refused when the policy requires a name. The
        content hash is computed from the document now, so any later content
        change makes the signature stale.
        """
        self._begin("sign", _DEVICE)
        try:
            points = [[Point(*point) for point in stroke] for stroke in strokes]
        except TypeError:
            raise InvalidValue("signature.strokes", "points are (x, y, t) triples") from None
        name_required = self.policy is not None and self.policy.required.signer_name
        if name_required and (not isinstance(signer_name, str) or not signer_name.strip()):
            raise InvalidValue("signature.signer_name", "the policy requires a name")
        values = {"strokes": points, "signer_name": signer_name, "signed_at": self._now()}
        values |= {"device": self.device, "content_hash": content_hash(self.doc)}
        signature = validate(Signature, values, "signature")
        root_map(self.doc, "signature")[SIGNATURE_KEY] = stored(signature)
        return signature

    def clear_signature(self) -> None:
        """Remove the signature (no error if there is none)."""
        self._begin("clear the signature", _DEVICE)
        signature = root_map(self.doc, "signature")
        if SIGNATURE_KEY in signature:
            del signature[SIGNATURE_KEY]

    def mark_sent(self, submission_id: str) -> None:
        """Record an accepted submission (relay only): status sent, sent_at, submission_id.

        Idempotent for the same ``submission_id``; InvalidValue if the work
        order is already sent or processed under another one.
        """
        self._begin("mark sent", _RELAY)
        check_text(submission_id, "state.submission_id", max_length=500)
        if not submission_id:
            raise InvalidValue("state.submission_id", "must not be empty")
        state = root_map(self.doc, "state")
        if self.status() in LOCKED_STATUSES:
            if state.get("submission_id") == submission_id:
                return
            raise InvalidValue("state.status", f"already {self.status()}")
        self._write_state(
            {"status": Status.SENT, "sent_at": iso(self._now()), "submission_id": submission_id}
        )
