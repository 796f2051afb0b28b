"""WorkOrder.from_doc: keeps what validates, reports the rest, never raises."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from crdtsync.workorder import (
    Policy,
    RequiredSteps,
    Role,
    Status,
    WorkOrder,
    WorkOrderWatch,
    check_changes,
    content_hash,
    missing_steps,
    signature_svg,
    snapshot_json,
)

from .conftest import new_workorder, replica
from .strategies import garbage_updates


def paths(problems: list[Any]) -> list[str]:
    return [problem.path for problem in problems]


def test_created_workorder_reads_without_problems(office_doc: Doc[Any]) -> None:
    workorder, problems = WorkOrder.from_doc(office_doc)
    assert problems == []
    assert workorder.id == "wo1"
    assert workorder.number == "2024-001"
    assert workorder.meta.schema_version == 1
    assert workorder.customer.name == "ACME"
    assert workorder.description == "Boiler makes noise."
    assert [task.title for task in workorder.sorted_tasks()] == ["Check boiler", "Replace valve"]


def test_empty_document_reads_as_defaults() -> None:
    workorder, problems = WorkOrder.from_doc(Doc())
    assert workorder == WorkOrder()
    assert paths(problems) == ["meta.schema"]


def test_bad_fields_are_dropped_one_by_one(office_doc: Doc[Any]) -> None:
    customer = office_doc.get("customer", type=Map)
    customer["name"] = 5
    customer["email"] = "nope"
    office_doc.get("state", type=Map)["status"] = "bogus"
    office_doc.get("planning", type=Map)["planned_date"] = "yesterday"
    workorder, problems = WorkOrder.from_doc(office_doc)
    assert set(paths(problems)) == {
        "customer.name",
        "customer.email",
        "state.status",
        "planning.planned_date",
    }
    assert workorder.customer.name is None
    assert workorder.customer.city == "Utrecht"
    assert workorder.status is Status.REGISTERED


def test_bad_entries_are_dropped_whole(office_doc: Doc[Any]) -> None:
    hours = office_doc.get("hours", type=Map)
    good = {"date": "2024-05-01", "start": "2024-05-01T08:00:00+00:00"}
    good["end"] = "2024-05-01T09:00:00+00:00"
    hours["ok"] = Map({**good, "break_minutes": 15.0, "remark": 7})
    hours["backwards"] = Map({**good, "end": "2024-05-01T07:00:00+00:00"})
    hours["missing"] = Map({"date": "2024-05-01"})
    hours["scalar"] = "not an entry"
    materials = office_doc.get("materials", type=Map)
    materials["nan"] = Map({"article": "A", "quantity": float("nan")})
    workorder, problems = WorkOrder.from_doc(office_doc)
    assert list(workorder.hours) == ["ok"]
    assert workorder.hours["ok"].break_minutes == 15
    assert workorder.hours["ok"].remark == ""
    assert {"hours.ok.remark", "hours.backwards", "hours.scalar", "materials.nan"} <= set(
        paths(problems)
    )
    assert any(path.startswith("hours.missing") for path in paths(problems))
    assert workorder.materials == {}


def test_signature_garbage_is_left_out(office_doc: Doc[Any]) -> None:
    office_doc.get("signature", type=Map)["current"] = {"strokes": "scribble"}
    workorder, problems = WorkOrder.from_doc(office_doc)
    assert workorder.signature is None
    assert paths(problems)[0].startswith("signature")


def test_answers_keep_json_and_drop_non_finite(office_doc: Doc[Any]) -> None:
    answers = office_doc.get("answers", type=Map)
    answers["q1"] = {"a": [1, "b"]}
    answers["q2"] = float("inf")
    workorder, problems = WorkOrder.from_doc(office_doc)
    assert workorder.answers == {"q1": {"a": [1.0, "b"]}}
    assert paths(problems) == ["answers.q2"]


def test_effective_status_follows_submission_fields(office_doc: Doc[Any]) -> None:
    state = office_doc.get("state", type=Map)
    state["status"] = "completed"
    state["submission_id"] = "s1"
    assert WorkOrder.from_doc(office_doc)[0].status is Status.SENT
    state["processed_at"] = "2024-05-02T10:00:00+00:00"
    assert WorkOrder.from_doc(office_doc)[0].status is Status.PROCESSED


def test_reading_writes_nothing(office_doc: Doc[Any]) -> None:
    before = office_doc.get_state(), office_doc.get_update()
    WorkOrder.from_doc(office_doc)
    assert (office_doc.get_state(), office_doc.get_update()) == before


# -- garbage documents ---------------------------------------------------------------------

STRICT = Policy(
    required=RequiredSteps(
        signature=True, signer_name=True, min_photos=2, hours=True, all_tasks_done=True
    )
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage_updates(), st.booleans())
def test_garbage_never_raises(update: bytes, onto_workorder: bool) -> None:
    doc = replica(new_workorder()) if onto_workorder else Doc()
    watch = WorkOrderWatch(doc)
    doc.apply_update(update)
    changes = watch.collect()
    for role in Role:
        check_changes(changes, role, STRICT)
    workorder, problems = WorkOrder.from_doc(doc)
    assert all(problem.path and problem.message for problem in problems)
    json.dumps(snapshot_json(workorder), allow_nan=False)
    assert len(content_hash(workorder)) == 64
    missing_steps(workorder, STRICT)
    if workorder.signature is not None:
        signature_svg(workorder.signature)
