"""Policy: form definitions, answer checks, device_readonly specs."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from crdtsync.workorder import (
    DEFAULT_DEVICE_READONLY,
    Form,
    Policy,
    Question,
    QuestionKind,
    RequiredSteps,
)
from crdtsync.workorder.policy import is_answered


def question(kind: QuestionKind, **extra: object) -> Question:
    return Question.model_validate({"id": "q", "label": "Q", "kind": kind, **extra})


def test_defaults_require_nothing_but_stopped_timers() -> None:
    policy = Policy()
    assert policy.version == 0
    assert policy.required == RequiredSteps()
    assert policy.required.no_running_timers
    assert policy.device_readonly == DEFAULT_DEVICE_READONLY
    assert policy.questions() == []


@pytest.mark.parametrize(
    "extra",
    [
        {"kind": "choice"},
        {"kind": "text", "choices": ["a"]},
        {"kind": "choice", "choices": ["a", "a"]},
        {"kind": "number", "min": 5, "max": 1},
        {"kind": "number", "id": "bad id"},
        {"kind": "number", "label": ""},
        {"kind": "colour"},
    ],
)
def test_question_definitions_are_checked(extra: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Question.model_validate({"id": "q", "label": "Q", **extra})


def test_question_ids_are_unique_across_forms() -> None:
    q = question(QuestionKind.BOOL)
    with pytest.raises(ValidationError, match="unique"):
        Policy(
            forms=[Form(id="a", title="A", questions=[q]), Form(id="b", title="B", questions=[q])]
        )
    with pytest.raises(ValidationError, match="unique"):
        Policy(forms=[Form(id="a", title="A"), Form(id="a", title="B")])


@pytest.mark.parametrize(
    ("kind", "extra", "value", "stored"),
    [
        (QuestionKind.TEXT, {"min": 2, "max": 3}, "abc", "abc"),
        (QuestionKind.NUMBER, {"min": -1, "max": 1}, -1, -1),
        (QuestionKind.NUMBER, {}, 2.5, 2.5),
        (QuestionKind.BOOL, {}, True, True),
        (QuestionKind.CHOICE, {"choices": ["ja", "nee"]}, "nee", "nee"),
        (QuestionKind.DATE, {}, dt.date(2024, 1, 2), "2024-01-02"),
        (QuestionKind.DATE, {"min": 19000}, "2024-01-02", "2024-01-02"),
    ],
)
def test_check_accepts(
    kind: QuestionKind, extra: dict[str, object], value: object, stored: object
) -> None:
    assert question(kind, **extra).check(value) == stored


@pytest.mark.parametrize(
    ("kind", "extra", "value"),
    [
        (QuestionKind.TEXT, {"min": 2}, "a"),
        (QuestionKind.TEXT, {"max": 1}, "ab"),
        (QuestionKind.TEXT, {}, None),
        (QuestionKind.NUMBER, {}, "1"),
        (QuestionKind.NUMBER, {}, False),
        (QuestionKind.NUMBER, {}, float("inf")),
        (QuestionKind.NUMBER, {"max": 1}, 1.01),
        (QuestionKind.BOOL, {}, 1),
        (QuestionKind.CHOICE, {"choices": ["ja"]}, "Ja"),
        (QuestionKind.DATE, {}, "2024-13-01"),
        (QuestionKind.DATE, {}, 20240101),
        (QuestionKind.DATE, {"max": 0}, "2024-01-02"),
    ],
)
def test_check_refuses(kind: QuestionKind, extra: dict[str, object], value: object) -> None:
    with pytest.raises(ValueError, match="must"):
        question(kind, **extra).check(value)


@pytest.mark.parametrize(
    ("value", "answered"),
    [(None, False), ("", False), ("  ", False), ([], False), ({}, False), (0, True), (False, True)],
)
def test_is_answered(value: object, answered: bool) -> None:
    assert is_answered(value) is answered


def test_device_readonly_specs() -> None:
    policy = Policy(device_readonly=("customer", "state.status_by"))
    assert policy.is_device_readonly("customer", "name")
    assert policy.is_device_readonly("state", "status_by")
    assert not policy.is_device_readonly("state", "status")
    assert not policy.is_device_readonly("hours", None)
    for bad in (("nowhere",), ("state.",), ("",)):
        with pytest.raises(ValidationError):
            Policy(device_readonly=bad)


def test_stored_form_round_trips() -> None:
    policy = Policy(
        version=3,
        required=RequiredSteps(min_photos=2),
        forms=[Form(id="f", title="F", questions=[question(QuestionKind.NUMBER, max=4)])],
    )
    assert Policy.model_validate(policy.stored()) == policy
    assert policy.question("q") is not None
    assert policy.question("other") is None
