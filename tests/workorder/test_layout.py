"""Skeletons: created once, with every root, validated before anything is written."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Map, Text

from crdtsync.exceptions import InvalidValue, SkeletonError
from crdtsync.workorder import (
    COLLECTION_ROOTS,
    FIELD_ROOTS,
    JSON_ROOTS,
    SCHEMA_VERSION,
    TEXT_ROOTS,
    WORKORDER_ROOTS,
    OfficeData,
    Planning,
    Schedule,
    Status,
    WorkOrder,
    create_office_data,
    create_planning,
    create_workorder,
    schema_of,
)
from crdtsync.workorder.layout import require_skeleton

from .conftest import START, new_workorder, replica


def test_root_groups_partition_the_skeleton() -> None:
    groups = [*FIELD_ROOTS, *COLLECTION_ROOTS, *JSON_ROOTS, *TEXT_ROOTS]
    assert sorted(groups) == sorted(WORKORDER_ROOTS)
    assert len(groups) == len(set(groups)) == 15
    assert all(WORKORDER_ROOTS[name] is Text for name in TEXT_ROOTS)
    assert all(WORKORDER_ROOTS[name] is Map for name in set(WORKORDER_ROOTS) - set(TEXT_ROOTS))


def test_create_writes_meta_state_and_values(office_doc: Doc[Any]) -> None:
    meta = office_doc.get("meta", type=Map).to_py()
    assert meta == {
        "schema": SCHEMA_VERSION,
        "id": "wo1",
        "number": "2024-001",
        "created_at": START.isoformat(),
    }
    assert office_doc.get("state", type=Map)["status"] == "registered"
    tasks = office_doc.get("tasks", type=Map)
    assert all(isinstance(entry, Map) for entry in tasks.values())
    assert schema_of(office_doc) == SCHEMA_VERSION
    assert set(WORKORDER_ROOTS) <= set(office_doc.keys())


def test_skeleton_reaches_a_replica(office_doc: Doc[Any]) -> None:
    copy = replica(office_doc)
    require_skeleton(copy, "wo")
    assert WorkOrder.from_doc(copy)[0] == WorkOrder.from_doc(office_doc)[0]


def test_planned_creation_with_schedule() -> None:
    schedule = Schedule(planned_date=START.date(), technician="anna")
    doc = new_workorder(status=Status.PLANNED, planning=schedule, tasks=[])
    workorder, _ = WorkOrder.from_doc(doc)
    assert workorder.status is Status.PLANNED
    assert workorder.planning == schedule
    assert workorder.tasks == {}


def test_created_twice_is_refused(office_doc: Doc[Any]) -> None:
    with pytest.raises(SkeletonError):
        create_workorder(office_doc, id="wo1", number="again")


@pytest.mark.parametrize(
    "overrides",
    [
        {"id": "bad id"},
        {"number": ""},
        {"number": 5},
        {"status": Status.SENT},
        {"tasks": [""]},
        {"short_description": "x" * 501},
        {"external_ref": 7},
        {"created_at": START.replace(tzinfo=None)},
    ],
)
def test_invalid_creation_writes_nothing(overrides: dict[str, Any]) -> None:
    doc: Doc[Any] = Doc()
    values: dict[str, Any] = {"id": "wo1", "number": "1", **overrides}
    with pytest.raises(InvalidValue):
        create_workorder(doc, **values)
    assert doc.get_state() == Doc().get_state()
    assert schema_of(doc) is None


def test_require_skeleton_names_the_reason() -> None:
    doc: Doc[Any] = Doc()
    with pytest.raises(SkeletonError, match="no skeleton"):
        require_skeleton(doc, "wo")
    doc.get("meta", type=Map)["schema"] = SCHEMA_VERSION + 1
    with pytest.raises(SkeletonError, match="not supported") as info:
        require_skeleton(doc, "wo")
    assert info.value.kind == "wo"


@pytest.mark.parametrize("value", ["1", True, 0, 1.5, None, {"v": 1}])
def test_schema_of_garbage_is_none(value: object) -> None:
    doc: Doc[Any] = Doc()
    doc.get("meta", type=Map)["schema"] = value
    assert schema_of(doc) is None


def test_office_and_planning_skeletons() -> None:
    office: Doc[Any] = Doc()
    create_office_data(office, id="wo1", memo="call first")
    assert OfficeData.from_doc(office) == (OfficeData(id="wo1", memo="call first"), [])
    with pytest.raises(SkeletonError):
        create_office_data(office, id="wo1")
    planning: Doc[Any] = Doc()
    create_planning(planning, technician="anna")
    assert Planning.from_doc(planning) == (Planning(technician="anna"), [])
    with pytest.raises(InvalidValue):
        create_planning(Doc(), technician="a b")
