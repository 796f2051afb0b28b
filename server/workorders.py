"""The office's work-order operations, applied through the relay as a trusted CRDT peer.

Every write is a :meth:`crdtsync.Relay.edit`: one pycrdt transaction on the
relay's own replica, fanned out to connected devices and committed before the
call returns. So an office edit merges with concurrent (also offline) device
edits like any peer's: fields it does not touch keep what devices wrote.

Contracts:

* **Validated before written.** A change to a work order is first applied to a
  throw-away copy of the document inside the same synchronous step; only if
  every part validates is it applied to the real one, in one transaction. A
  refused change (:class:`~crdtsync.workorder.InvalidValue`,
  :class:`WorkOrderNotFound`, :class:`WorkOrderExists`, :class:`NotSent`)
  writes nothing.
* **Assignment follows the work order.** When ``planning.technician`` or
  ``planning.crew`` changes, the work order is put on the ``planning/{tech}``
  of each technician it now names (created if missing) and taken off the
  plannings of those it no longer names, which is what grants and withdraws
  the devices' access (:class:`crdtsync.service.FieldService`). These are
  separate documents, so not one transaction: a crash in between leaves the
  work order on both plannings or on none, and repeating the same change
  repairs it (assigning replaces, unassigning is idempotent). Changes to one
  work order are serialised in this process, so two concurrent reassignments
  cannot leave it on two plannings.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pycrdt import Doc

from crdtsync import CrdtsyncError, Relay
from crdtsync.workorder import (
    LOCKED_STATUSES,
    OfficeData,
    Party,
    Role,
    Schedule,
    Status,
    WorkOrder,
    WorkOrderEditor,
    assign_workorder,
    create_office_data,
    create_planning,
    create_workorder,
    office_document,
    planning_document,
    release_workorder,
    schema_of,
    set_memo,
    workorder_document,
)

__all__ = [
    "NewWorkOrder",
    "NotSent",
    "OfficeWorkOrders",
    "WorkOrderChanges",
    "WorkOrderExists",
    "WorkOrderNotFound",
]

T = TypeVar("T")


class WorkOrderNotFound(CrdtsyncError):
    """No work order with this id in the tenant (no skeleton)."""


class WorkOrderExists(CrdtsyncError):
    """A work order with this id exists already."""


class NotSent(CrdtsyncError):
    """Reopening or processing a work order that is not sent (``status`` says what it is)."""

    def __init__(self, status: Status, operation: str) -> None:
        super().__init__(f"only a sent work order can be {operation}; this one is {status.value}")
        self.status = status


@dataclass(frozen=True, slots=True)
class NewWorkOrder:
    """What the office gives to create a work order (``schedule.technician`` assigns it)."""

    id: str
    number: str
    external_ref: str | None = None
    work_type: str | None = None
    customer: Party | None = None
    delivery: Party | None = None
    schedule: Schedule | None = None
    short_description: str = ""
    description: str = ""
    tasks: list[str] = field(default_factory=list)
    memo: str = ""


@dataclass(frozen=True, slots=True)
class WorkOrderChanges:
    """Office edits; every mapping holds only the keys to change (a None value clears)."""

    meta: dict[str, Any] = field(default_factory=dict)
    planning: dict[str, Any] = field(default_factory=dict)
    customer: dict[str, Any] = field(default_factory=dict)
    delivery: dict[str, Any] = field(default_factory=dict)
    short_description: str | None = None
    description: str | None = None

    def apply(self, editor: WorkOrderEditor) -> None:
        """Apply every part through ``editor`` (inside the caller's transaction)."""
        if self.meta:
            editor.set_meta(**self.meta)
        if self.planning:
            editor.set_planning(**self.planning)
        if self.customer:
            editor.set_customer(**self.customer)
        if self.delivery:
            editor.set_delivery(**self.delivery)
        if self.short_description is not None:
            editor.set_short_description(self.short_description)
        if self.description is not None:
            editor.set_description(self.description)


def _copy(doc: Doc[Any]) -> Doc[Any]:
    copy: Doc[Any] = Doc()
    copy.apply_update(doc.get_update())
    return copy


def _existing(doc: Doc[Any], ident: str) -> WorkOrder:
    if schema_of(doc) is None:
        raise WorkOrderNotFound(f"no work order {ident}")
    workorder, _ = WorkOrder.from_doc(doc)
    return workorder


class OfficeWorkOrders:
    """Office operations on one relay; ``actor`` strings name who did it in the document."""

    def __init__(
        self, relay: Relay, *, release_retention: dt.timedelta = dt.timedelta(days=7)
    ) -> None:
        self.relay = relay
        self.release_retention = release_retention
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, tenant: str, ident: str) -> asyncio.Lock:
        lock = self._locks.get((tenant, ident))
        if lock is None:
            lock = asyncio.Lock()
            self._locks[(tenant, ident)] = lock
        return lock

    async def _edit(self, tenant: str, document: str, change: Callable[[Doc[Any]], T]) -> T:
        return await self.relay.edit(document, change, tenant=tenant)

    # -- creating --------------------------------------------------------------------------------

    async def create(self, tenant: str, new: NewWorkOrder) -> None:
        """Create ``wo/{id}`` with its whole skeleton, ``office/{id}`` with the memo, and put
        it on the technician's planning when ``new.schedule`` names one.

        Raises :class:`WorkOrderExists`, or InvalidValue (nothing written).
        """
        schedule = new.schedule
        planned = schedule is not None and schedule.technician and schedule.planned_date
        status = Status.PLANNED if planned else Status.REGISTERED

        def create(doc: Doc[Any]) -> None:
            if schema_of(doc) is not None:
                raise WorkOrderExists(f"work order {new.id} exists already")
            create_workorder(
                doc,
                id=new.id,
                number=new.number,
                external_ref=new.external_ref,
                work_type=new.work_type,
                status=status,
                customer=new.customer,
                delivery=new.delivery,
                planning=schedule,
                short_description=new.short_description,
                description=new.description,
                tasks=new.tasks,
            )

        async with self._lock(tenant, new.id):
            await self._edit(tenant, workorder_document(new.id), create)
            await self.set_memo(tenant, new.id, new.memo)
            if schedule is not None and schedule.team():
                await self._plan(tenant, new.id, [], schedule.team(), schedule.planned_date)

    # -- changing --------------------------------------------------------------------------------

    async def update(self, tenant: str, ident: str, changes: WorkOrderChanges, actor: str) -> None:
        """Apply office ``changes`` to work order ``ident`` as one CRDT transaction.

        Raises :class:`WorkOrderNotFound` or InvalidValue (nothing written).
        """

        def change(doc: Doc[Any]) -> tuple[Schedule, Schedule]:
            before = _existing(doc, ident).planning
            trial = _copy(doc)
            changes.apply(WorkOrderEditor(trial, actor=actor, role=Role.OFFICE))
            with doc.transaction():
                changes.apply(WorkOrderEditor(doc, actor=actor, role=Role.OFFICE))
            after, _ = WorkOrder.from_doc(doc)
            return before, after.planning

        async with self._lock(tenant, ident):
            before, after = await self._edit(tenant, workorder_document(ident), change)
            moved = set(before.team()) != set(after.team())
            redated = before.planned_date != after.planned_date
            if moved or (redated and after.team()):
                await self._plan(tenant, ident, before.team(), after.team(), after.planned_date)

    async def _plan(
        self,
        tenant: str,
        ident: str,
        before: list[str],
        after: list[str],
        planned_date: dt.date | None,
    ) -> None:
        """Put ``ident`` on the planning of everyone in ``after`` first (the technician and
        the crew), then release it on the plannings of those in ``before`` only: their
        devices may still send what they changed before they learnt of it (see
        :func:`~crdtsync.workorder.release_workorder`); releases past the retention go."""
        drop_before = dt.datetime.now(dt.UTC) - self.release_retention
        for technician in after:

            def assign(doc: Doc[Any], technician: str = technician) -> None:
                if schema_of(doc) is None:
                    create_planning(doc, technician=technician)
                assign_workorder(doc, ident, planned_date=planned_date)

            await self._edit(tenant, planning_document(technician), assign)
        for technician in before:
            if technician in after:
                continue

            def release(doc: Doc[Any]) -> None:
                if schema_of(doc) is not None:
                    release_workorder(doc, ident, drop_before=drop_before)

            await self._edit(tenant, planning_document(technician), release)

    async def _life_cycle(
        self, tenant: str, ident: str, actor: str, operation: str, processed: bool
    ) -> None:
        def change(doc: Doc[Any]) -> None:
            status = _existing(doc, ident).status
            editor = WorkOrderEditor(doc, actor=actor, role=Role.OFFICE)
            if processed:
                if status is not Status.SENT:
                    raise NotSent(status, operation)
                editor.mark_processed()
            else:
                if status not in LOCKED_STATUSES:
                    raise NotSent(status, operation)
                editor.reopen()

        async with self._lock(tenant, ident):
            await self._edit(tenant, workorder_document(ident), change)

    async def reopen(self, tenant: str, ident: str, actor: str) -> None:
        """Reopen a sent or processed work order (devices may edit it again).

        Raises :class:`WorkOrderNotFound` or :class:`NotSent`.
        """
        await self._life_cycle(tenant, ident, actor, "reopened", processed=False)

    async def mark_processed(self, tenant: str, ident: str, actor: str) -> None:
        """Mark a sent work order processed. Raises :class:`WorkOrderNotFound` or
        :class:`NotSent`."""
        await self._life_cycle(tenant, ident, actor, "processed", processed=True)

    # -- the office memo -------------------------------------------------------------------------

    async def memo(self, tenant: str, ident: str) -> str:
        """The memo of work order ``ident`` (empty when it has none)."""
        doc = await self.relay.read(office_document(ident), tenant=tenant)
        data, _ = OfficeData.from_doc(doc)
        return data.memo

    async def set_memo(self, tenant: str, ident: str, memo: str) -> None:
        """Make the memo read ``memo`` (character-level edits; creates ``office/{id}`` when
        missing). Raises InvalidValue."""

        def change(doc: Doc[Any]) -> None:
            if schema_of(doc) is None:
                create_office_data(doc, id=ident, memo=memo)  # validates, then writes
            else:
                set_memo(doc, memo)

        await self._edit(tenant, office_document(ident), change)
