"""Shared fixtures for the work-order tests: documents, a settable clock, syncing replicas."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from pycrdt import Doc

from crdtsync.workorder import (
    Party,
    Policy,
    Role,
    WorkOrderEditor,
    create_workorder,
)

START = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)


class Clock:
    """A clock the test moves by hand: every read returns ``now``."""

    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


def sync(*docs: Doc[Any]) -> None:
    """Bring every doc up to date with every other (two rounds of pairwise diffs)."""
    for _ in range(2):
        for source in docs:
            for target in docs:
                if source is not target:
                    target.apply_update(source.get_update(target.get_state()))


def replica(doc: Doc[Any]) -> Doc[Any]:
    """A new document holding everything ``doc`` holds."""
    copy: Doc[Any] = Doc()
    copy.apply_update(doc.get_update())
    return copy


def new_workorder(**overrides: Any) -> Doc[Any]:
    """An office document with a created work order ``wo1`` and two tasks."""
    doc: Doc[Any] = Doc()
    values: dict[str, Any] = {
        "id": "wo1",
        "number": "2024-001",
        "created_at": START,
        "customer": Party(name="ACME", city="Utrecht", email="info@acme.example"),
        "tasks": ["Check boiler", "Replace valve"],
        "description": "Boiler makes noise.",
    }
    values.update(overrides)
    create_workorder(doc, **values)
    return doc


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def office_doc() -> Doc[Any]:
    return new_workorder()


@pytest.fixture
def device_doc(office_doc: Doc[Any]) -> Doc[Any]:
    return replica(office_doc)


EditorFactory = Callable[..., WorkOrderEditor]


@pytest.fixture
def make_editor(clock: Clock) -> EditorFactory:
    def make(
        doc: Doc[Any],
        role: Role = Role.DEVICE,
        actor: str = "tech1",
        policy: Policy | None = None,
    ) -> WorkOrderEditor:
        return WorkOrderEditor(doc, actor=actor, role=role, clock=clock, policy=policy, device="d1")

    return make
