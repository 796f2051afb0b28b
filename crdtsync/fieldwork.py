"""A technician's app on top of a :class:`~crdtsync.device.Device`: work orders, typed.

``async with FieldDevice(path, connector, technician) as field`` opens the
device and follows the technician's planning (``planning/{technician}``): every
work order it lists is opened and synced, including those assigned while the
device was offline, as soon as the planning syncs. The company ``settings``
document is opened too; the policy in force for the technician is read from
the local replica of it.

Everything works offline on what the device already holds: reading, editing,
attaching photos (stored on the device, uploaded later) and sending (queued,
sent when the connection returns). The relay checks everything again: what
this layer refuses early (:class:`~crdtsync.exceptions.SubmissionBlocked`,
:class:`~crdtsync.exceptions.WorkOrderLocked`) saves a round trip, no more.

Editors are cheap: create one per editing step. A replica the relay replaced
(after a refused field write) is a new ``Doc``, and an editor made before that
edits the old one, whose changes are archived, not synced.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from pycrdt import Doc

from .device import Backoff, Device, SubmissionState
from .exceptions import SkeletonError, SubmissionBlocked, WorkOrderError, WorkOrderLocked
from .transport import Connector
from .workorder import (
    SETTINGS_DOCUMENT,
    Assignment,
    AttachmentKind,
    Planning,
    Policy,
    Problem,
    Role,
    WorkOrder,
    WorkOrderEditor,
    effective_policy,
    missing_steps,
    planning_document,
    schema_of,
    workorder_document,
)
from .workorder.names import validate_id

__all__ = ["AssignedWorkOrder", "FieldDevice", "assigned_documents"]


class AssignedWorkOrder(NamedTuple):
    """A work order on the technician's planning, as the device holds it now."""

    workorder: WorkOrder
    problems: list[Problem]  # values left out when reading (see WorkOrder.from_doc)
    assignment: Assignment


def assigned_documents(doc: Doc[Any]) -> list[str]:
    """The work-order documents a planning document lists, by planned date (released ones
    too: changes made to them before the release still go out)."""
    planning, _ = Planning.from_doc(doc)
    return [workorder_document(wo_id) for wo_id in planning.sorted_ids()]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FieldDevice:
    """The device of technician ``technician``. Use with ``async with``.

    ``clock`` (timezone-aware; default: UTC now) dates edits and submissions;
    the other keyword arguments go to :class:`~crdtsync.device.Device`.
    """

    def __init__(
        self,
        path: str | Path,
        connector: Connector | None,
        technician: str,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        online: bool = True,
        backoff: Backoff | None = None,
        submission_backoff: Backoff | None = None,
        seed: int | None = None,
        name: str = "",
    ) -> None:
        self.technician = validate_id(technician, "technician")
        self.clock = clock or _now
        self.device = Device(
            path,
            connector,
            online=online,
            backoff=backoff,
            submission_backoff=submission_backoff,
            seed=seed,
            name=name,
        )
        self.planning_document = planning_document(technician)

    async def __aenter__(self) -> Self:
        await self.device.__aenter__()
        try:
            self.device.open(SETTINGS_DOCUMENT)
            self.device.follow(self.planning_document, assigned_documents)
        except BaseException as exc:
            await self.device.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.device.__aexit__(exc_type, exc, tb)

    # -- reading -------------------------------------------------------------------------------

    def planning(self) -> Planning:
        """The technician's planning as the device holds it (empty before the first sync)."""
        planning, _ = Planning.from_doc(self.device.doc(self.planning_document))
        return planning

    def policy(self) -> Policy:
        """The policy in force for the technician, from the local settings replica
        (``Policy()`` before settings ever synced). InvalidValue if it is unreadable:
        no laxer policy is used instead."""
        return effective_policy(self.device.doc(SETTINGS_DOCUMENT), self.technician)

    def workorders(self) -> list[AssignedWorkOrder]:
        """The work orders on the planning whose content the device holds, by planned date.
        Ones assigned but not synced yet (no skeleton on the device) are left out."""
        planning = self.planning()
        result: list[AssignedWorkOrder] = []
        for wo_id in planning.sorted_ids():
            name = workorder_document(wo_id)
            if name not in self.device.documents:
                continue
            doc = self.device.doc(name)
            if schema_of(doc) is None:
                continue
            workorder, problems = WorkOrder.from_doc(doc)
            result.append(AssignedWorkOrder(workorder, problems, planning.workorders[wo_id]))
        return result

    def workorder(self, wo_id: str) -> tuple[WorkOrder, list[Problem]]:
        """One work order the device holds (DeviceError if it holds none by that id)."""
        return WorkOrder.from_doc(self.device.doc(workorder_document(wo_id)))

    # -- editing -------------------------------------------------------------------------------

    def editor(self, wo_id: str) -> WorkOrderEditor:
        """An editor of work order ``wo_id`` as this technician's device, with the policy in
        force for them. DeviceError if the device does not hold the work order;
        WorkOrderLocked (status ``released``) if it was taken from the technician: what
        they changed before still syncs, nothing new is made."""
        doc = self.device.doc(workorder_document(wo_id))
        assignment = self.planning().workorders.get(wo_id)
        if assignment is not None and assignment.released:
            raise WorkOrderLocked("released", "it was reassigned")
        return WorkOrderEditor(
            doc,
            actor=self.technician,
            role=Role.DEVICE,
            clock=self.clock,
            policy=self.policy(),
            device=self.device.name,
        )

    def attach_photo(self, wo_id: str, data: bytes, name: str, mime: str, caption: str = "") -> str:
        """Store the photo on the device and queue its upload, then reference it in the work
        order; return the attachment id. The blob comes first, so a reference never names
        bytes the device does not have. If the reference is refused (InvalidValue,
        WorkOrderLocked, ...), an upload queued by this call is taken back."""
        document = workorder_document(wo_id)
        editor = self.editor(wo_id)
        if schema_of(editor.doc) is None:
            raise SkeletonError("wo", "no skeleton: the work order has not synced yet")
        data = bytes(data)
        queued_before = self.device.upload(document, hashlib.sha256(data).hexdigest())
        sha = self.device.add_blob(document, data)
        try:
            return editor.attach(
                sha,
                kind=AttachmentKind.PHOTO,
                name=name,
                mime=mime,
                size=len(data),
                caption=caption,
            )
        except WorkOrderError:
            if queued_before is None:
                self.device.cancel_upload(document, sha)
            raise

    # -- sending -------------------------------------------------------------------------------

    def send(self, wo_id: str) -> str:
        """Queue the work order for sending; return the submission's key.

        Raises SubmissionBlocked (``missing`` lists the steps) when the policy in force
        requires steps not done yet, WorkOrderLocked when it is sent or processed. While
        an earlier submission of it has no final answer, its key is returned and nothing
        new is queued.
        """
        document = workorder_document(wo_id)
        doc = self.device.doc(document)
        if schema_of(doc) is None:
            raise SkeletonError("wo", "no skeleton: the work order has not synced yet")
        earlier = self.sent_state(wo_id)
        if earlier is not None and not earlier.final:
            return earlier.key
        assignment = self.planning().workorders.get(wo_id)
        if assignment is not None and assignment.released:
            raise WorkOrderLocked("released", "send")
        workorder, _ = WorkOrder.from_doc(doc)
        if workorder.locked:
            raise WorkOrderLocked(workorder.status.value, "send")
        policy = self.policy()
        missing = missing_steps(workorder, policy)
        if missing:
            raise SubmissionBlocked(missing)
        body = {
            "policy_version": policy.version or None,
            "device_time": self.clock().isoformat(),
            "technician": self.technician,
        }
        return self.device.submit(document, body)

    def sent_state(self, wo_id: str) -> SubmissionState | None:
        """The latest submission of work order ``wo_id`` (None if it was never sent)."""
        states = self.device.submissions(workorder_document(wo_id))
        return states[-1] if states else None
