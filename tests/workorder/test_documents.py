"""Office memo and planning documents."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Text

from crdtsync.exceptions import InvalidValue, SkeletonError
from crdtsync.workorder import (
    OfficeData,
    Planning,
    Settings,
    assign_workorder,
    create_office_data,
    create_planning,
    release_workorder,
    set_memo,
    unassign_workorder,
)

from .conftest import START, replica, sync
from .strategies import garbage_updates


@pytest.fixture
def planning_doc() -> Doc[Any]:
    doc: Doc[Any] = Doc()
    create_planning(doc, technician="anna")
    return doc


def test_assign_and_unassign(planning_doc: Doc[Any]) -> None:
    day = dt.date(2024, 5, 2)
    assignment = assign_workorder(planning_doc, "wo1", assigned_at=START, planned_date=day)
    assign_workorder(planning_doc, "wo2", assigned_at=START)
    assign_workorder(planning_doc, "wo0", assigned_at=START, planned_date=dt.date(2024, 5, 1))
    planning, problems = Planning.from_doc(replica(planning_doc))
    assert problems == []
    assert planning.technician == "anna"
    assert planning.workorders["wo1"] == assignment
    assert planning.sorted_ids() == ["wo0", "wo1", "wo2"]
    assert unassign_workorder(planning_doc, "wo2")
    assert not unassign_workorder(planning_doc, "wo2")
    assert set(Planning.from_doc(planning_doc)[0].workorders) == {"wo0", "wo1"}


def test_assign_is_validated(planning_doc: Doc[Any]) -> None:
    state = planning_doc.get_state()
    with pytest.raises(InvalidValue):
        assign_workorder(planning_doc, "wo 1")
    with pytest.raises(InvalidValue):
        assign_workorder(planning_doc, "wo1", assigned_at=dt.datetime(2024, 1, 1))
    with pytest.raises(InvalidValue):
        assign_workorder(planning_doc, "wo1", planned_date=START)  # type: ignore[arg-type]
    assert planning_doc.get_state() == state
    with pytest.raises(SkeletonError):
        assign_workorder(Doc(), "wo1")


def test_planning_reader_skips_garbage(planning_doc: Doc[Any]) -> None:
    workorders = planning_doc.get("workorders", type=Map)
    workorders["ok"] = {"assigned_at": START.isoformat()}
    workorders["no time"] = {"planned_date": "2024-01-01"}
    workorders["bad"] = {"assigned_at": "x"}
    workorders["scalar"] = 3
    planning, problems = Planning.from_doc(planning_doc)
    assert list(planning.workorders) == ["ok"]
    assert {p.path.split(".")[1] for p in problems} == {"no time", "bad", "scalar"}
    assert Planning.from_doc(Doc())[1][0].path == "meta.technician"


def test_memo_merges_by_character() -> None:
    office: Doc[Any] = Doc()
    create_office_data(office, id="wo1", memo="Customer pays cash.")
    other = replica(office)
    set_memo(office, "Customer pays cash. Call first.")
    set_memo(other, "NB: Customer pays cash.")
    sync(office, other)
    memo = "NB: Customer pays cash. Call first."
    assert (
        OfficeData.from_doc(office)
        == OfficeData.from_doc(other)
        == (
            OfficeData(id="wo1", memo=memo),
            [],
        )
    )
    assert str(office.get("memo", type=Text)) == memo
    with pytest.raises(InvalidValue):
        set_memo(office, 5)  # type: ignore[arg-type]
    with pytest.raises(SkeletonError):
        set_memo(Doc(), "x")


def test_office_reader_without_skeleton() -> None:
    data, problems = OfficeData.from_doc(Doc())
    assert data == OfficeData()
    assert [p.path for p in problems] == ["meta.id"]


OTHER_ROOTS = st.sampled_from(
    ["meta", "memo", "workorders", "policy", "versions", "overrides", "x"]
)


@settings(max_examples=100, deadline=None)
@given(garbage_updates(OTHER_ROOTS))
def test_readers_never_raise_on_garbage(update: bytes) -> None:
    doc: Doc[Any] = Doc()
    doc.apply_update(update)
    for reader in (OfficeData.from_doc, Planning.from_doc, Settings.from_doc):
        model, problems = reader(doc)  # type: ignore[operator]
        model.model_dump(mode="json")
        assert all(problem.path for problem in problems)


def test_a_released_assignment_stays_until_its_retention_ends() -> None:
    doc: Doc[Any] = Doc()
    create_planning(doc, technician="anna")
    assign_workorder(doc, "1001")
    assign_workorder(doc, "1002")
    at = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    assert release_workorder(doc, "1001", released_at=at)
    assert not release_workorder(doc, "9999", released_at=at)
    planning, problems = Planning.from_doc(doc)
    assert problems == []
    assert planning.workorders["1001"].released_at == at
    assert planning.active_ids() == ["1002"]
    week = dt.timedelta(days=7)
    assert planning.current_ids(at + dt.timedelta(days=6), week) == {"1001", "1002"}
    assert planning.current_ids(at + dt.timedelta(days=8), week) == {"1002"}
    # Releasing again keeps the first time; assigning again ends the release.
    release_workorder(doc, "1001", released_at=at + dt.timedelta(days=1))
    assert Planning.from_doc(doc)[0].workorders["1001"].released_at == at
    assign_workorder(doc, "1001")
    assert Planning.from_doc(doc)[0].active_ids() == ["1001", "1002"]
    # Old releases go when another one is written.
    release_workorder(doc, "1001", released_at=at)
    release_workorder(doc, "1002", released_at=at + week * 2, drop_before=at + week)
    assert sorted(Planning.from_doc(doc)[0].workorders) == ["1002"]
