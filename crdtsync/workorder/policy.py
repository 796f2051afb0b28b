"""The company policy: required steps, form definitions, fields devices may not write.

A :class:`Policy` is published as an immutable, numbered version in the
``settings`` document (see :mod:`.settings`); ``version`` is 0 for a policy
that was never published. Question ids are unique across all forms, because
answers are stored per question id.

``device_readonly`` lists what devices may not write, as *field specs* the
relay can check per change without knowing anything else: ``"customer"``
protects the whole root, ``"state.sent_at"`` one key of a root. The submission
fields and status values have fixed rules on top of this list (see
:func:`~crdtsync.workorder.check_changes`), so no policy can open them to
devices.
"""

from __future__ import annotations

import datetime as dt
import math
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from .layout import WORKORDER_ROOTS
from .names import ID_PATTERN

__all__ = [
    "DEFAULT_DEVICE_READONLY",
    "Form",
    "Policy",
    "Question",
    "QuestionKind",
    "RequiredSteps",
    "is_answered",
]

Id = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]
Label = Annotated[str, Field(min_length=1, max_length=500)]

#: What devices may not write unless a policy says otherwise.
DEFAULT_DEVICE_READONLY: tuple[str, ...] = (
    "meta",
    "customer",
    "delivery",
    "planning",
    "info",
    "description",
    "state.sent_at",
    "state.submission_id",
    "state.processed_at",
    "state.reopened_at",
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class QuestionKind(StrEnum):
    """The kind of value a form question takes."""

    TEXT = "text"
    NUMBER = "number"
    BOOL = "bool"
    CHOICE = "choice"
    DATE = "date"


class Question(_Model):
    """A form question. ``min``/``max`` bound a number's value, a text's length, or a date
    (as days since 1970-01-01); ``choices`` lists the values of a choice question."""

    id: Id
    label: Label
    kind: QuestionKind
    choices: list[Label] = []
    required: bool = False
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Question:
        if self.kind is QuestionKind.CHOICE and not self.choices:
            raise ValueError("a choice question needs choices")
        if self.kind is not QuestionKind.CHOICE and self.choices:
            raise ValueError("only a choice question has choices")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError("choices must be unique")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self

    def _bounds(self, measure: float, what: str) -> None:
        if self.min is not None and measure < self.min:
            raise ValueError(f"{what} must be at least {self.min:g}")
        if self.max is not None and measure > self.max:
            raise ValueError(f"{what} must be at most {self.max:g}")

    def check(self, value: object) -> JsonValue:
        """Return ``value`` in its stored form if it answers this question, else raise ValueError.

        text: a str; number: an int or float (not a bool), finite; bool: a bool;
        choice: one of ``choices``; date: a ``datetime.date`` or an ISO date
        string, stored as the ISO string.
        """
        if self.kind is QuestionKind.TEXT:
            if not isinstance(value, str):
                raise ValueError("must be text")
            self._bounds(len(value), "length")
            return value
        if self.kind is QuestionKind.NUMBER:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError("must be a number")
            if not math.isfinite(value) or abs(value) > 2**53:
                raise ValueError("must be a finite number within +-2**53")
            self._bounds(float(value), "value")
            return value
        if self.kind is QuestionKind.BOOL:
            if not isinstance(value, bool):
                raise ValueError("must be true or false")
            return value
        if self.kind is QuestionKind.CHOICE:
            if value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}")
            return value
        return self._check_date(value)

    def _check_date(self, value: object) -> JsonValue:
        if isinstance(value, dt.datetime):
            raise ValueError("must be a date, not a date and time")
        if isinstance(value, str):
            try:
                value = dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError("must be an ISO date (YYYY-MM-DD)") from None
        if not isinstance(value, dt.date):
            raise ValueError("must be a date")
        self._bounds((value - dt.date(1970, 1, 1)).days, "date")
        return value.isoformat()


def is_answered(value: object) -> bool:
    """False for no answer: ``None``, an empty or blank string, an empty list or object."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, dict)):
        return bool(value)
    return True


class Form(_Model):
    """A named group of questions."""

    id: Id
    title: Label
    questions: list[Question] = []


class RequiredSteps(_Model):
    """What must be done before a work order may be sent.

    ``no_running_timers`` (on by default) blocks sending while an hours timer
    still runs, since its time would not be in the submission.
    """

    signature: bool = False
    signer_name: bool = False
    min_photos: int = Field(default=0, ge=0, le=1000)
    hours: bool = False
    all_tasks_done: bool = False
    no_running_timers: bool = True


class Policy(_Model):
    """A version of the company policy (see the module docstring)."""

    version: int = Field(default=0, ge=0)
    required: RequiredSteps = RequiredSteps()
    forms: list[Form] = []
    device_readonly: tuple[str, ...] = DEFAULT_DEVICE_READONLY

    @field_validator("device_readonly")
    @classmethod
    def _known_fields(cls, specs: tuple[str, ...]) -> tuple[str, ...]:
        for spec in specs:
            root, _, key = spec.partition(".")
            if root not in WORKORDER_ROOTS or (spec != root and not key):
                raise ValueError(f"{spec!r} is not a root or root.key of a work order")
        return specs

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        form_ids = [form.id for form in self.forms]
        if len(set(form_ids)) != len(form_ids):
            raise ValueError("form ids must be unique")
        question_ids = [q.id for q in self.questions()]
        if len(set(question_ids)) != len(question_ids):
            raise ValueError("question ids must be unique across forms")
        return self

    def questions(self) -> list[Question]:
        """Every question of every form, in order."""
        return [question for form in self.forms for question in form.questions]

    def question(self, question_id: str) -> Question | None:
        """The question with ``question_id``, or None."""
        return next((q for q in self.questions() if q.id == question_id), None)

    def is_device_readonly(self, root: str, key: str | None = None) -> bool:
        """True when ``device_readonly`` covers ``root`` or ``root.key``."""
        return root in self.device_readonly or (
            key is not None and f"{root}.{key}" in self.device_readonly
        )

    def stored(self) -> dict[str, Any]:
        """The JSON form kept in the settings document."""
        return dict(self.model_dump(mode="json"))
