"""Pydantic models: the typed, validated view of a work-order document.

A :class:`WorkOrder` mirrors the document's layout (see :mod:`.layout`): one
sub-model per map root (``meta``, ``state``, ``customer``, ``delivery``,
``planning``, ``info``), a ``str`` per text root (``description``, ``notes``),
and a dict per collection root, keyed by entry id (``tasks``, ``hours``,
``materials``, ``attachments``), technician (``timers``) or question id
(``answers``). Models are frozen; every datetime is timezone-aware; floats are
finite. They serialise to JSON for the HTTP API with
``model_dump(mode="json")``.

:meth:`WorkOrder.from_doc` builds one from any document and never raises: what
does not validate is left out and reported as a :class:`Problem`.

``state.status`` is the *effective* status: ``processed`` while
``state.processed_at`` is set, ``sent`` while ``state.submission_id`` is set,
else the stored ``state.status``. Only the relay and the office write those two
fields, so a device's concurrent (offline) status write can never unlock a sent
work order.
"""

from __future__ import annotations

import datetime as dt
import itertools
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, model_validator

if TYPE_CHECKING:
    from pycrdt import Doc

__all__ = [
    "DEVICE_STATUSES",
    "LOCKED_STATUSES",
    "MAX_CREW",
    "MAX_SIGNATURE_POINTS",
    "SCHEMA_VERSION",
    "Attachment",
    "AttachmentKind",
    "HourKind",
    "HoursEntry",
    "Info",
    "Material",
    "Meta",
    "Party",
    "Point",
    "Problem",
    "Schedule",
    "Signature",
    "State",
    "Status",
    "Task",
    "Timer",
    "WorkOrder",
]

#: The layout version this code writes and understands (``meta.schema``).
SCHEMA_VERSION = 1
#: Upper bound on the points of one signature (all strokes together).
MAX_SIGNATURE_POINTS = 20_000
#: Upper bound on the technicians of a work order's crew.
MAX_CREW = 20

ShortStr = Annotated[str, Field(max_length=500)]
LongStr = Annotated[str, Field(max_length=5_000)]
Name = Annotated[str, Field(min_length=1, max_length=500)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Mime = Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$", max_length=255)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Status(StrEnum):
    """The life cycle of a work order."""

    REGISTERED = "registered"
    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    SENT = "sent"
    PROCESSED = "processed"


#: The statuses a device may set.
DEVICE_STATUSES = frozenset({Status.IN_PROGRESS, Status.COMPLETED})
#: The statuses in which a work order refuses device edits.
LOCKED_STATUSES = frozenset({Status.SENT, Status.PROCESSED})


class HourKind(StrEnum):
    """What an hours entry (or a running timer) counts."""

    WORK = "work"
    TRAVEL = "travel"
    PAUSE = "pause"


class AttachmentKind(StrEnum):
    """A photo counts towards the policy's ``min_photos``; a file does not."""

    PHOTO = "photo"
    FILE = "file"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class Problem(_Model):
    """Something in a document that did not validate and was left out of the view."""

    path: str
    message: str


class Meta(_Model):
    """Root ``meta``: identity of the work order (``schema`` is stored as ``meta.schema``)."""

    schema_version: int = 0
    id: str = ""
    number: ShortStr = ""
    external_ref: ShortStr | None = None
    work_type: ShortStr | None = None
    created_at: AwareDatetime | None = None


class State(_Model):
    """Root ``state``: status and the submission fields (see the module docstring)."""

    status: Status = Status.REGISTERED
    status_at: AwareDatetime | None = None
    status_by: ShortStr | None = None
    sent_at: AwareDatetime | None = None
    submission_id: ShortStr | None = None
    processed_at: AwareDatetime | None = None
    reopened_at: AwareDatetime | None = None


class Party(_Model):
    """Roots ``customer`` and ``delivery``: an address and a contact."""

    name: ShortStr | None = None
    street: ShortStr | None = None
    postal_code: ShortStr | None = None
    city: ShortStr | None = None
    country: ShortStr | None = None
    contact_name: ShortStr | None = None
    phone: ShortStr | None = None
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)] | None = None


class Schedule(_Model):
    """Root ``planning``: when and by whom the work is planned.

    ``technician`` leads the work; ``crew`` lists other technicians who work on
    it too (each has it on their planning, so their devices sync it). The crew
    is one value: a change replaces the whole list (last writer wins).
    """

    planned_date: dt.date | None = None
    planned_start: AwareDatetime | None = None
    planned_end: AwareDatetime | None = None
    deadline: AwareDatetime | None = None
    technician: ShortStr | None = None
    crew: Annotated[list[ShortStr], Field(max_length=MAX_CREW)] | None = None

    @model_validator(mode="after")
    def _distinct_crew(self) -> Schedule:
        if self.crew is not None and len(set(self.crew)) != len(self.crew):
            raise ValueError("crew members must be distinct")
        return self

    def team(self) -> list[str]:
        """The technician and the crew, without repeats: everyone it is planned for."""
        members = [self.technician] if self.technician else []
        return list(dict.fromkeys([*members, *(self.crew or ())]))


class Info(_Model):
    """Root ``info``: the short description (the long one is the ``description`` text)."""

    short_description: ShortStr = ""


class Task(_Model):
    """An entry of ``tasks``; ``position`` orders the list (ties broken by id)."""

    id: str
    title: Name
    done: bool = False
    done_at: AwareDatetime | None = None
    done_by: ShortStr | None = None
    position: float = 0.0


class HoursEntry(_Model):
    """An entry of ``hours``: ``start < end`` within 24 hours, the break shorter than that."""

    id: str
    date: dt.date
    start: AwareDatetime
    end: AwareDatetime
    break_minutes: int = Field(default=0, ge=0, le=1440)
    kind: HourKind = HourKind.WORK
    technician: ShortStr | None = None
    remark: LongStr = ""

    @model_validator(mode="after")
    def _consistent(self) -> HoursEntry:
        span = self.end - self.start
        if span <= dt.timedelta(0):
            raise ValueError("end must be after start")
        if span > dt.timedelta(hours=24):
            raise ValueError("an entry may span at most 24 hours")
        if dt.timedelta(minutes=self.break_minutes) >= span:
            raise ValueError("break must be shorter than the entry")
        return self

    @property
    def duration(self) -> dt.timedelta:
        """Time counted: end - start - break."""
        return self.end - self.start - dt.timedelta(minutes=self.break_minutes)

    @property
    def duration_minutes(self) -> float:
        """:attr:`duration` in minutes."""
        return self.duration.total_seconds() / 60


class Material(_Model):
    """An entry of ``materials``: a used article and how much of it."""

    id: str
    article: Name
    description: LongStr = ""
    quantity: float = Field(gt=0, le=1e9)
    unit: Annotated[str, Field(min_length=1, max_length=20)] = "pcs"
    warehouse: ShortStr | None = None


class Attachment(_Model):
    """An entry of ``attachments``: a reference to a content-addressed blob."""

    id: str
    sha256: Sha256
    kind: AttachmentKind
    name: Name
    mime: Mime
    size: int = Field(ge=0, le=10 * 1024**3)
    added_at: AwareDatetime | None = None
    added_by: ShortStr | None = None
    caption: LongStr = ""


class Point(NamedTuple):
    """A signature point: ``x``, ``y`` normalised to [0, 1], ``t`` ms since the stroke began.

    Stored (and serialised) as the list ``[x, y, t]``.
    """

    x: Unit
    y: Unit
    t: Annotated[float, Field(ge=0.0, le=3_600_000.0)]


class Signature(_Model):
    """The customer's signature (``signature.current``, one atomic value).

    Valid strokes: at least one stroke, at least one of them with two points or
    more, no empty stroke, ``t`` never decreasing within a stroke, at most
    :data:`MAX_SIGNATURE_POINTS` points. ``content_hash`` is the
    :func:`~crdtsync.workorder.content_hash` of the work order when it was signed.
    """

    strokes: list[list[Point]]
    signer_name: ShortStr = ""
    signed_at: AwareDatetime
    device: ShortStr = ""
    content_hash: Sha256

    @model_validator(mode="after")
    def _valid_strokes(self) -> Signature:
        if not any(len(stroke) >= 2 for stroke in self.strokes):
            raise ValueError("a signature needs at least one stroke of two points or more")
        if sum(len(stroke) for stroke in self.strokes) > MAX_SIGNATURE_POINTS:
            raise ValueError(f"a signature may have at most {MAX_SIGNATURE_POINTS} points")
        for index, stroke in enumerate(self.strokes):
            if not stroke:
                raise ValueError(f"stroke {index} is empty")
            if any(b.t < a.t for a, b in itertools.pairwise(stroke)):
                raise ValueError(f"stroke {index}: t must not decrease")
        return self


class Timer(_Model):
    """A running hours timer of ``technician`` (``timers.<technician>``)."""

    technician: str
    started_at: AwareDatetime
    kind: HourKind = HourKind.WORK


class WorkOrder(_Model):
    """The merged state of a ``wo/{id}`` document (see the module docstring)."""

    meta: Meta = Meta()
    state: State = State()
    customer: Party = Party()
    delivery: Party = Party()
    planning: Schedule = Schedule()
    info: Info = Info()
    description: str = ""
    notes: str = ""
    tasks: dict[str, Task] = {}
    hours: dict[str, HoursEntry] = {}
    materials: dict[str, Material] = {}
    answers: dict[str, JsonValue] = {}
    attachments: dict[str, Attachment] = {}
    signature: Signature | None = None
    timers: dict[str, Timer] = {}

    @property
    def id(self) -> str:
        """The work order's id (``meta.id``)."""
        return self.meta.id

    @property
    def number(self) -> str:
        """The work order's number as the office shows it (``meta.number``)."""
        return self.meta.number

    @property
    def status(self) -> Status:
        """The effective status (``state.status``)."""
        return self.state.status

    @property
    def locked(self) -> bool:
        """True when devices may not edit (sent or processed)."""
        return self.state.status in LOCKED_STATUSES

    def sorted_tasks(self) -> list[Task]:
        """Tasks by position, then id."""
        return sorted(self.tasks.values(), key=lambda task: (task.position, task.id))

    def photo_hashes(self) -> set[str]:
        """The distinct sha256 of the photo attachments."""
        return {a.sha256 for a in self.attachments.values() if a.kind is AttachmentKind.PHOTO}

    @classmethod
    def from_doc(cls, doc: Doc[Any]) -> tuple[WorkOrder, list[Problem]]:
        """Read ``doc``; never raises on its content.

        Returns the view of everything that validates, and one :class:`Problem`
        per value left out (wrong type, garbage, unknown status, missing
        required field). Keys this schema does not know are ignored silently,
        so newer writers stay readable. Roots that are missing read as empty.
        Must not be called from inside a pycrdt observer callback.
        """
        from ._read import read_workorder

        return read_workorder(doc)
