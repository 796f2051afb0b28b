"""Everyone in the story (:class:`Cast`), the planning (:data:`WORKORDERS`), the policy.

The cast holds the office client, the relay, the technicians, the ledger, the
event log, the story clock, the pace and the seeded random generator. Its
helpers write office edits to the ledger (:meth:`Cast.patch`) and finish a work
order the way a technician does (:meth:`Cast.send_and_confirm`).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from crdtsync import DecodeError
from crdtsync.protocol import SubmitResult, decode_frame

from .day import DayClock, EventLog, Pace
from .ledger import Edit, EditKind, Ledger
from .office import Office
from .relay import DemoError, Relay
from .technician import Technician

__all__ = [
    "MATERIALS",
    "NOTES",
    "POLICY",
    "WORKORDERS",
    "Cast",
    "Step",
    "WorkOrderPlan",
    "is_submit_answer",
    "plan",
]


@dataclass(frozen=True, slots=True)
class WorkOrderPlan:
    """One work order the office plans (``story`` is its id in the story)."""

    story: str
    technician: str
    start: str
    customer: str
    city: str
    title: str
    tasks: tuple[str, ...]
    crew: tuple[str, ...] = ()


WORKORDERS = (
    WorkOrderPlan(
        "1001", "anna", "08:15", "Bakkerij De Vries", "Utrecht", "Annual boiler service",
        ("Check the boiler pressure", "Clean the burner", "Test the safety valve"),
    ),
    WorkOrderPlan(
        "1002", "bram", "09:00", "Fam. Jansen", "Amersfoort", "Leaking valve in the basement",
        ("Find the leak", "Replace the valve"),
    ),
    WorkOrderPlan(
        "1003", "anna", "10:00", "Sportcentrum De Wetering", "Utrecht", "Install a heat pump",
        ("Place the outdoor unit", "Connect the indoor unit", "Fill and bleed the system"),
        crew=("bram",),
    ),
    WorkOrderPlan(
        "1004", "chris", "13:00", "Cafe Het Hoekje", "Zeist", "Replace the thermostat",
        ("Remove the old thermostat", "Fit and configure the new one"),
    ),
    WorkOrderPlan(
        "1005", "chris", "10:30", "Fam. Bakker", "Houten", "Flush the radiators",
        ("Flush the circuit", "Bleed the radiators"),
    ),
    WorkOrderPlan(
        "1006", "chris", "14:00", "Tandartspraktijk Smile", "Nieuwegein", "Airco service",
        ("Clean the filters", "Check the refrigerant"),
    ),
    WorkOrderPlan(
        "1007", "bram", "13:00", "Basisschool De Regenboog", "Amersfoort", "Gas installation check",
        ("Leak test", "Check the flue", "Record the readings"),
    ),
)  # fmt: skip


def plan(story: str) -> WorkOrderPlan:
    """The planned work order with story id ``story``."""
    return next(p for p in WORKORDERS if p.story == story)


#: The company policy: a signature and a photo before sending, and a short form.
POLICY: dict[str, Any] = {
    "required": {"signature": True, "min_photos": 1},
    "forms": [
        {
            "id": "checks",
            "title": "Checks",
            "questions": [
                {"id": "pressure_bar", "label": "System pressure (bar)", "kind": "number",
                 "min": 0, "max": 10},
                {"id": "safe", "label": "Installation safe to use", "kind": "bool"},
            ],
        }
    ],
}  # fmt: skip

MATERIALS = (
    ("VALVE-22", "Ball valve 22 mm"),
    ("GASKET-S", "Gasket set"),
    ("PIPE-15", "Copper pipe 15 mm (m)"),
    ("FILTER-AC", "Air filter"),
    ("SENSOR-T", "Temperature sensor"),
)
NOTES = (
    "Customer present, access through the back door.",
    "Old part kept for the customer.",
    "Checked for leaks after the repair: none.",
    "Advised to replace the expansion vessel next year.",
    "Pressure was low, topped up the system.",
    "Left the installation running normally.",
)


@dataclass(slots=True)
class Cast:
    """Everyone in the story, and what they share."""

    office: Office
    relay: Relay
    techs: dict[str, Technician]
    ledger: Ledger
    log: EventLog
    clock: DayClock
    pace: Pace
    rng: random.Random
    ids: dict[str, str]  # story id -> work-order id on the relay
    tech_ids: dict[str, str]  # technician name -> technician id on the relay
    keys: dict[str, str] = field(default_factory=dict)  # story id -> submission key
    facts: dict[str, Any] = field(default_factory=dict)  # figures for the summary

    def wo(self, story: str) -> str:
        return self.ids[story]

    async def patch(self, story: str, changes: dict[str, Any]) -> dict[str, Any]:
        """An office PATCH, with its edits in the ledger."""
        result = await self.office.patch_workorder(self.wo(story), changes)
        wo = self.wo(story)
        for key, value in changes.get("planning", {}).items():
            if key == "technician":
                self.ledger.add(Edit("office", wo, EditKind.ASSIGNED, "", value))
            else:
                self.ledger.add(Edit("office", wo, EditKind.PLANNING, key, value))
        if "description" in changes:
            self.ledger.add(Edit("office", wo, EditKind.DESCRIPTION, "", changes["description"]))
        return result

    def material(self) -> tuple[str, str]:
        return self.rng.choice(MATERIALS)

    def note(self) -> str:
        return self.rng.choice(NOTES)

    async def send_and_confirm(self, tech: Technician, story: str, signer: str) -> None:
        """Photo, signature, completed, send; wait for the accepted answer."""
        wo = self.wo(story)
        tech.photo(wo, f"{story}-done.jpg", "after the work")
        tech.sign(wo, signer)
        tech.complete(wo)
        key = tech.send(wo)
        if key is None:
            raise DemoError(f"{tech.name} could not send {story}")
        self.keys[story] = key
        await tech.wait_accepted(key)
        record = (tech.field.device.submission(key).answer or {}).get("record_id")
        self.log.add(tech.name, f"{story} sent and accepted (record {record})", "good")


Step = tuple[str, str, Callable[[Cast], Awaitable[None]]]


def is_submit_answer(message: str | bytes) -> bool:
    """True for a frame carrying the relay's answer to a sending (SubmitResult)."""
    if not isinstance(message, bytes):
        return False
    try:
        return isinstance(decode_frame(message).message, SubmitResult)
    except DecodeError:
        return False
