"""The models on their own: validation rules, computed values, JSON serialisation."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from crdtsync.workorder import (
    Attachment,
    AttachmentKind,
    HourKind,
    HoursEntry,
    Material,
    Party,
    Point,
    Signature,
    Status,
    Task,
    WorkOrder,
)

T0 = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
HASH = "ab" * 32


def hours(**overrides: object) -> HoursEntry:
    values: dict[str, object] = {
        "id": "h1",
        "date": "2024-05-01",
        "start": T0,
        "end": T0 + dt.timedelta(hours=2),
    }
    values.update(overrides)
    return HoursEntry.model_validate(values)


def test_hours_duration_subtracts_break() -> None:
    entry = hours(break_minutes=15)
    assert entry.duration == dt.timedelta(minutes=105)
    assert entry.duration_minutes == 105
    assert entry.kind is HourKind.WORK


@pytest.mark.parametrize(
    "overrides",
    [
        {"end": T0},
        {"end": T0 - dt.timedelta(minutes=1)},
        {"end": T0 + dt.timedelta(hours=25)},
        {"break_minutes": 120},
        {"break_minutes": -1},
        {"start": dt.datetime(2024, 5, 1, 8, 0)},
        {"kind": "nap"},
        {"break_minutes": 1.5},
    ],
)
def test_hours_rules(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        hours(**overrides)


def test_numbers_read_back_as_floats_are_accepted() -> None:
    assert hours(break_minutes=15.0).break_minutes == 15


def test_material_quantity_must_be_positive_and_finite() -> None:
    Material(id="m", article="A", quantity=0.5)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValidationError):
            Material(id="m", article="A", quantity=bad)


def test_attachment_hash_and_mime() -> None:
    Attachment(id="a", sha256=HASH, kind=AttachmentKind.PHOTO, name="p", mime="image/jpeg", size=1)
    for field, bad in (("sha256", "AB" * 32), ("sha256", "ab"), ("mime", "jpeg"), ("size", -1)):
        values: dict[str, object] = {
            "id": "a",
            "sha256": HASH,
            "kind": "photo",
            "name": "p",
            "mime": "image/jpeg",
            "size": 1,
        }
        values[field] = bad
        with pytest.raises(ValidationError):
            Attachment.model_validate(values)


def test_party_email() -> None:
    assert Party(email="a@b.nl").email == "a@b.nl"
    with pytest.raises(ValidationError):
        Party(email="not an email")


def signature(strokes: object) -> Signature:
    return Signature.model_validate(
        {"strokes": strokes, "signed_at": T0, "content_hash": HASH, "signer_name": "Jan"}
    )


def test_signature_points_serialise_as_lists() -> None:
    sig = signature([[[0, 0, 0], [1, 1, 5]], [[0.5, 0.5, 0]]])
    assert sig.strokes[0][1] == Point(1, 1, 5)
    assert sig.model_dump(mode="json")["strokes"][1] == [[0.5, 0.5, 0.0]]


@pytest.mark.parametrize(
    "strokes",
    [
        [],
        [[[0.1, 0.1, 0]]],
        [[[0.1, 0.1, 0], [0.2, 0.2, 1]], []],
        [[[0.1, 0.1, 5], [0.2, 0.2, 1]]],
        [[[1.1, 0.1, 0], [0.2, 0.2, 1]]],
        [[[0.1, -0.1, 0], [0.2, 0.2, 1]]],
        [[[0.1, float("nan"), 0], [0.2, 0.2, 1]]],
        [[[0.1, 0.1], [0.2, 0.2]]],
        [[[0.0, 0.0, float(i)] for i in range(20_001)]],
    ],
)
def test_signature_rules(strokes: object) -> None:
    with pytest.raises(ValidationError):
        signature(strokes)


def test_signature_allows_equal_times() -> None:
    signature([[[0.1, 0.1, 3], [0.2, 0.2, 3]]])


def test_workorder_defaults_and_accessors() -> None:
    task_a = Task(id="b", title="B", position=1)
    task_b = Task(id="a", title="A", position=1)
    task_c = Task(id="c", title="C", position=0)
    photo = {"sha256": HASH, "kind": "photo", "name": "p", "mime": "image/png", "size": 3}
    workorder = WorkOrder.model_validate(
        {
            "tasks": {"b": task_a, "a": task_b, "c": task_c},
            "attachments": {
                "x": {"id": "x", **photo},
                "y": {"id": "y", **photo},
                "z": {"id": "z", **photo, "kind": "file", "sha256": "cd" * 32},
            },
        }
    )
    assert [task.id for task in workorder.sorted_tasks()] == ["c", "a", "b"]
    assert workorder.photo_hashes() == {HASH}
    assert workorder.status is Status.REGISTERED
    assert not workorder.locked
    assert workorder.id == ""
    assert workorder.number == ""


def test_json_serialisation_round_trips() -> None:
    workorder = WorkOrder.model_validate(
        {"hours": {"h1": hours().model_dump()}, "answers": {"q1": [1, {"a": "b"}]}}
    )
    text = json.dumps(workorder.model_dump(mode="json"), allow_nan=False)
    assert WorkOrder.model_validate_json(text) == workorder


def test_models_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Party(name="a").name = "b"  # type: ignore[misc]
