"""Sending a work order: what is still missing, and what changed after sending.

**Required steps.**

:func:`missing_steps` is pure: a work order and a policy in, a list of
:class:`MissingStep` out, in a fixed order, one per code at most. An empty list
means the work order may be sent. Each step has a stable ``code`` (for
programs), structured details (counts, ids) and an English ``message`` (for
people). :func:`require_sendable` raises SubmissionBlocked instead.

Codes, in order: ``signature`` (required, none), ``signature_stale`` (required,
but the content changed after signing), ``signer_name`` (required, blank),
``photos`` (fewer distinct photos than ``min_photos``), ``hours`` (no work or
travel hours), ``tasks`` (open tasks), ``form_answer`` (required questions
unanswered), ``form_answer_invalid`` (answers the current form definition
refuses), ``timer_running`` (an hours timer still runs) and ``blobs_missing``
(attachments whose blob the relay does not hold; only checked when the caller
passes the set of blobs present).

**After sending.** The relay records :func:`snapshot_json` of a work order
when it accepts a submission; later, :func:`diff_snapshots` of that record and
the current state tells the office what changed after sending (edits are never
refused for arriving late; they are shown).

Paths: in ``meta``, ``state``, ``customer``, ``delivery``, ``planning`` and
``info`` one per changed key (``customer.name``); in ``tasks``, ``hours``,
``materials``, ``attachments``, ``answers`` and ``timers`` one per added,
removed or changed entry (``hours.<id>``, ``answers.q1``); ``description``,
``notes`` and ``signature`` as a whole. Unknown top-level keys (from a newer
snapshot format) are compared as a whole too.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..exceptions import SubmissionBlocked
from .models import HourKind, WorkOrder
from .policy import Policy, is_answered
from .signature import signature_valid

__all__ = [
    "MissingStep",
    "StepCode",
    "diff_snapshots",
    "missing_steps",
    "require_sendable",
    "snapshot_json",
]


class StepCode(StrEnum):
    """The stable codes of :class:`MissingStep`."""

    SIGNATURE = "signature"
    SIGNATURE_STALE = "signature_stale"
    SIGNER_NAME = "signer_name"
    PHOTOS = "photos"
    HOURS = "hours"
    TASKS = "tasks"
    FORM_ANSWER = "form_answer"
    FORM_ANSWER_INVALID = "form_answer_invalid"
    TIMER_RUNNING = "timer_running"
    BLOBS_MISSING = "blobs_missing"


class MissingStep(BaseModel):
    """A step still to do. ``have``/``need`` count where counting makes sense; ``ids`` names
    the tasks, questions, technicians or blobs concerned."""

    model_config = ConfigDict(frozen=True)

    code: StepCode
    message: str
    have: int | None = None
    need: int | None = None
    ids: list[str] = []


def _signature_steps(workorder: WorkOrder, policy: Policy) -> list[MissingStep]:
    required = policy.required
    signature = workorder.signature
    steps: list[MissingStep] = []
    if required.signature and signature is None:
        steps.append(MissingStep(code=StepCode.SIGNATURE, message="The customer has not signed."))
    elif required.signature and not signature_valid(workorder):
        message = "The work order changed after it was signed; the customer must sign again."
        steps.append(MissingStep(code=StepCode.SIGNATURE_STALE, message=message))
    if required.signer_name and signature is not None and not signature.signer_name.strip():
        message = "The name of the person who signed is missing."
        steps.append(MissingStep(code=StepCode.SIGNER_NAME, message=message))
    return steps


def _work_steps(workorder: WorkOrder, policy: Policy) -> list[MissingStep]:
    required = policy.required
    steps: list[MissingStep] = []
    photos = len(workorder.photo_hashes())
    if photos < required.min_photos:
        need = required.min_photos
        message = f"{need - photos} more photo(s) needed ({photos} of {need})."
        steps.append(MissingStep(code=StepCode.PHOTOS, message=message, have=photos, need=need))
    if required.hours:
        counted = [h for h in workorder.hours.values() if h.kind is not HourKind.PAUSE]
        if not counted:
            message = "No hours are registered."
            steps.append(MissingStep(code=StepCode.HOURS, message=message, have=0, need=1))
    if required.all_tasks_done:
        open_ids = [task.id for task in workorder.sorted_tasks() if not task.done]
        if open_ids:
            total = len(workorder.tasks)
            message = f"{len(open_ids)} task(s) not done."
            steps.append(
                MissingStep(
                    code=StepCode.TASKS,
                    message=message,
                    have=total - len(open_ids),
                    need=total,
                    ids=open_ids,
                )
            )
    return steps


def _form_steps(workorder: WorkOrder, policy: Policy) -> list[MissingStep]:
    unanswered: list[str] = []
    invalid: list[str] = []
    for question in policy.questions():
        value = workorder.answers.get(question.id)
        if not is_answered(value):
            if question.required:
                unanswered.append(question.id)
            continue
        try:
            question.check(value)
        except ValueError:
            invalid.append(question.id)
    steps: list[MissingStep] = []
    if unanswered:
        message = f"{len(unanswered)} required question(s) unanswered."
        steps.append(MissingStep(code=StepCode.FORM_ANSWER, message=message, ids=unanswered))
    if invalid:
        message = f"{len(invalid)} answer(s) do not fit the form."
        steps.append(MissingStep(code=StepCode.FORM_ANSWER_INVALID, message=message, ids=invalid))
    return steps


def missing_steps(
    workorder: WorkOrder, policy: Policy, *, blobs_present: Container[str] | None = None
) -> list[MissingStep]:
    """What must still be done before ``workorder`` may be sent under ``policy`` (see above).

    ``blobs_present``, when given, holds the sha256 of the blobs the relay
    stores; attachments referring to others are reported as ``blobs_missing``.
    """
    steps = [
        *_signature_steps(workorder, policy),
        *_work_steps(workorder, policy),
        *_form_steps(workorder, policy),
    ]
    if policy.required.no_running_timers and workorder.timers:
        technicians = sorted(workorder.timers)
        message = "An hours timer is still running; stop it first."
        steps.append(MissingStep(code=StepCode.TIMER_RUNNING, message=message, ids=technicians))
    if blobs_present is not None:
        absent = sorted(
            {a.sha256 for a in workorder.attachments.values() if a.sha256 not in blobs_present}
        )
        if absent:
            message = f"{len(absent)} attachment(s) not uploaded yet."
            steps.append(MissingStep(code=StepCode.BLOBS_MISSING, message=message, ids=absent))
    return steps


def require_sendable(
    workorder: WorkOrder, policy: Policy, *, blobs_present: Container[str] | None = None
) -> None:
    """Raise SubmissionBlocked (carrying the steps) unless :func:`missing_steps` is empty."""
    steps = missing_steps(workorder, policy, blobs_present=blobs_present)
    if steps:
        raise SubmissionBlocked(steps)


#: Top-level parts whose keys are reported one by one.
_KEYED = frozenset(
    {
        "meta",
        "state",
        "customer",
        "delivery",
        "planning",
        "info",
        "tasks",
        "hours",
        "materials",
        "attachments",
        "answers",
        "timers",
    }
)


def snapshot_json(workorder: WorkOrder) -> dict[str, Any]:
    """``workorder`` as a JSON-ready dict (``model_dump(mode="json")``): store it as is."""
    return dict(workorder.model_dump(mode="json"))


def diff_snapshots(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The sorted paths that differ between two snapshots (see the module docstring)."""
    paths: list[str] = []
    for part in sorted(set(old) | set(new)):
        before, after = old.get(part), new.get(part)
        if before == after:
            continue
        before_map = {} if before is None else before
        after_map = {} if after is None else after
        if part in _KEYED and isinstance(before_map, Mapping) and isinstance(after_map, Mapping):
            for key in sorted(set(before_map) | set(after_map)):
                if before_map.get(key, _ABSENT) != after_map.get(key, _ABSENT):
                    paths.append(f"{part}.{key}")
        else:
            paths.append(part)
    return paths


_ABSENT = object()
