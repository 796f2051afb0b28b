"""Request and response bodies of the work-order, settings and attachment routes.

Responses reuse the domain's models for the merged state
(:class:`~crdtsync.workorder.WorkOrder`, :class:`~crdtsync.workorder.Policy`);
requests are their own models that refuse unknown keys (a misspelt field is a
422, never silently ignored) and strings UTF-8 cannot carry. Value rules beyond
the shape (an end before a start, an unknown status) are the domain's: its
:class:`~crdtsync.workorder.InvalidValue` becomes a 422 naming the field.

PATCH semantics: a key that is absent leaves its field as it is; ``null``
clears a field that may be empty (customer data, planning fields, references);
nested objects change only the keys they hold.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from crdtsync.workorder import InvalidValue, Party, Policy, Schedule, Status, WorkOrder
from crdtsync.workorder import Problem as DomainProblem

from ..viewrows import WorkOrderView

__all__ = [
    "ID_PATTERN",
    "MemoIn",
    "MemoOut",
    "PartyIn",
    "PlanningIn",
    "PolicyCreated",
    "PolicyIn",
    "SettingsOut",
    "SubmissionDetail",
    "SubmissionOut",
    "SubmissionList",
    "UploadOut",
    "VersionIn",
    "WorkOrderCreate",
    "WorkOrderOut",
    "WorkOrderPage",
    "WorkOrderPatch",
    "WorkOrderSummary",
    "summary_json",
]

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: Longest description or memo the API takes (text edits diff the old and new text).
MAX_TEXT = 20_000


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("holds characters UTF-8 cannot encode") from None
    return value


Short = Annotated[str, Field(max_length=500), AfterValidator(_utf8)]
Name = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_utf8)]
Long = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_utf8)]
Id = Annotated[str, Field(pattern=ID_PATTERN)]


M = TypeVar("M", bound=BaseModel)


def _domain(model: type[M], data: dict[str, Any], field: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join([field, *(str(part) for part in error["loc"])])
        raise InvalidValue(path, error["msg"]) from exc


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PartyIn(_In):
    """Address and contact; in a PATCH only the keys given change (null clears)."""

    name: Short | None = None
    street: Short | None = None
    postal_code: Short | None = None
    city: Short | None = None
    country: Short | None = None
    contact_name: Short | None = None
    phone: Short | None = None
    email: Annotated[str, Field(max_length=320), AfterValidator(_utf8)] | None = None

    def given(self) -> dict[str, Any]:
        """The keys the request holds (with their values, None to clear)."""
        return {key: getattr(self, key) for key in self.model_fields_set}

    def party(self, field: str) -> Party:
        """The domain's :class:`Party`; InvalidValue (naming ``field``) where it refuses."""
        return _domain(Party, self.given(), field)


class PlanningIn(_In):
    """When and by whom; ``technician`` assigns the work order (null unassigns), ``crew``
    adds other technicians."""

    planned_date: dt.date | None = None
    planned_start: AwareDatetime | None = None
    planned_end: AwareDatetime | None = None
    deadline: AwareDatetime | None = None
    technician: Id | None = None
    crew: list[Id] | None = Field(
        None,
        max_length=20,
        description="Other technicians who work on it too (it is on their plannings as well); "
        "replaces the whole list, null clears it.",
    )

    def given(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.model_fields_set}

    def schedule(self) -> Schedule:
        """The domain's :class:`Schedule`; InvalidValue where it refuses."""
        return _domain(Schedule, self.given(), "planning")


class WorkOrderCreate(_In):
    """A new work order: its whole CRDT skeleton is created at once."""

    id: Id | None = Field(None, description="Omit to have one generated.")
    number: Name
    external_ref: Short | None = None
    work_type: Short | None = None
    customer: PartyIn | None = None
    delivery: PartyIn | None = None
    planning: PlanningIn | None = Field(
        None, description="With a technician, the work order is assigned to them."
    )
    short_description: Short = ""
    description: Long = ""
    tasks: list[Name] = Field(default_factory=list, max_length=200)
    memo: Long = Field("", description="The office-only memo (never sent to devices).")


class WorkOrderPatch(_In):
    """Office edits, merged with concurrent device edits field by field."""

    number: Name | None = None
    external_ref: Short | None = None
    work_type: Short | None = None
    planning: PlanningIn | None = None
    customer: PartyIn | None = None
    delivery: PartyIn | None = None
    short_description: Short | None = None
    description: Long | None = None


class WorkOrderSummary(BaseModel):
    """A work order in a list (from its view: no document is decoded)."""

    id: str
    number: str
    status: Status
    technician: str | None
    planned_date: dt.date | None
    customer_name: str | None
    short_description: str
    changed_at: AwareDatetime = Field(description="The relay's time of the last change.")
    sent_submission_id: str | None = Field(
        description="The accepted submission it was sent with, while sent or processed."
    )
    changed_after_sending: bool


class WorkOrderPage(BaseModel):
    items: list[WorkOrderSummary]
    next_cursor: str | None = Field(description="Pass as ``cursor`` for the next page.")


class WorkOrderOut(WorkOrderSummary):
    """One work order: the merged state, what did not validate, what changed after sending."""

    changed_paths: list[str] = Field(
        description="What changed since the accepted submission (empty unless sent)."
    )
    problems: list[DomainProblem]
    workorder: WorkOrder


def summary_json(view: WorkOrderView) -> dict[str, Any]:
    """The :class:`WorkOrderSummary` of ``view`` as JSON-ready values (no validation pass)."""
    return {
        "id": view.id,
        "number": view.number,
        "status": view.status,
        "technician": view.technician,
        "planned_date": view.planned_date.isoformat() if view.planned_date else None,
        "customer_name": view.customer_name,
        "short_description": view.short_description,
        "changed_at": view.changed_at.isoformat(),
        "sent_submission_id": view.sent_submission_id,
        "changed_after_sending": view.changed_after_sending,
    }


class MemoIn(_In):
    memo: Long


class MemoOut(BaseModel):
    id: str
    memo: str


class SubmissionOut(BaseModel):
    """A submission record: immutable, one per idempotency key."""

    id: int = Field(description="The record's number in this relay.")
    key: str = Field(description="The device's idempotency key.")
    accepted: bool
    submission_id: str | None = Field(description="For an accepted one: the work order's mark.")
    content_hash: str = Field(description="sha256 of the signed content when it was judged.")
    recorded_at: AwareDatetime
    result: dict[str, Any] = Field(description="The answer the device received, verbatim.")


class SubmissionList(BaseModel):
    items: list[SubmissionOut]


class SubmissionDetail(SubmissionOut):
    snapshot: WorkOrder = Field(description="The work order as it was judged.")
    problems: list[DomainProblem]


class SettingsOut(BaseModel):
    """The tenant's settings document: policy versions (immutable), the current one, and
    per-technician overrides."""

    published: bool = Field(description="False until a first policy is published.")
    current: int | None
    versions: dict[int, Policy]
    overrides: dict[str, int]
    effective: Policy | None = Field(
        description="The policy in force for the caller (a device: its technician)."
    )
    problems: list[DomainProblem]


def _check_strings(value: object) -> None:
    if isinstance(value, str):
        _utf8(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


class PolicyIn(Policy):
    """A policy to publish (its ``version`` is ignored: publishing numbers it)."""

    @model_validator(mode="before")
    @classmethod
    def _utf8_strings(cls, data: Any) -> Any:
        _check_strings(data)
        return data


class PolicyCreated(BaseModel):
    version: int
    current: int | None


class VersionIn(_In):
    version: int = Field(ge=1)


class UploadOut(BaseModel):
    sha256: str
    size: int
    created: bool = Field(description="False when the relay held this blob already.")
