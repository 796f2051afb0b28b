"""What the office keeps about a work order besides its state: memo, submissions, signatures.

| endpoint | roles |
|---|---|
| ``GET /workorders/{id}/memo`` | office, viewer (devices never see the memo) |
| ``PUT /workorders/{id}/memo`` | office: character-level edit of ``office/{id}`` |
| ``GET /workorders/{id}/submissions`` | office, viewer: the immutable submission records |
| ``GET /workorders/{id}/submissions/{n}`` | office, viewer: one record with its snapshot |
| ``GET /workorders/{id}/submissions/{n}/signature`` | office, viewer: its signature, SVG |
| ``GET /workorders/{id}/signature`` | office, viewer: the current signature, SVG |

Submission records are written by the relay when a device sends a work order
(:class:`crdtsync.service.FieldService`); this API only reads them. A record's
``content_hash`` is the sha256 of the signed content when it was judged, and
its snapshot the whole document at that moment.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pycrdt import Doc

from crdtsync import Principal as RelayPrincipal
from crdtsync import RecordStore, SubmissionRecord
from crdtsync.workorder import Problem as DomainProblem
from crdtsync.workorder import Signature, WorkOrder, WorkOrderError, signature_svg

from .access import NOT_FOUND, domain_problem, relay_of, visible_view, workorders_of
from .auth import API_PREFIX, OfficeRole, Reader
from .models import ID_PATTERN, MemoIn, MemoOut, SubmissionDetail, SubmissionList, SubmissionOut
from .problems import PROBLEM_RESPONSES, Problem, problem_doc

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["work orders"], responses=PROBLEM_RESPONSES)

WorkOrderId = Annotated[str, Path(pattern=ID_PATTERN)]
RecordNumber = Annotated[int, Path(ge=1, le=2**62)]
SVG = "image/svg+xml"
_SVG_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {SVG: {"schema": {"type": "string"}}}, "description": "The signature"},
    404: problem_doc("No such work order or record, or it has no signature"),
}


def _stored(tenant: str, ident: str) -> str:
    return RelayPrincipal(tenant=tenant).namespace + f"wo/{ident}"


def _out(record: SubmissionRecord) -> dict[str, Any]:
    result = json.loads(record.result)
    return {
        "id": record.id,
        "key": record.key,
        "accepted": record.accepted,
        "submission_id": result.get("record_id") if record.accepted else None,
        "content_hash": record.content_hash,
        "recorded_at": dt.datetime.fromtimestamp(record.recorded_at, dt.UTC),
        "result": result,
    }


async def _records(request: Request, tenant: str, ident: str) -> list[SubmissionRecord]:
    store = relay_of(request).store
    if not isinstance(store, RecordStore):  # pragma: no cover (the app's store keeps records)
        return []
    return await store.submissions(_stored(tenant, ident))


async def _record(request: Request, tenant: str, ident: str, number: int) -> SubmissionRecord:
    for record in await _records(request, tenant, ident):
        if record.id == number:
            return record
    raise Problem(404, "not_found", f"work order {ident} has no submission record {number}")


def _snapshot(record: SubmissionRecord) -> tuple[WorkOrder, list[DomainProblem]]:
    doc: Doc[Any] = Doc()
    doc.apply_update(record.snapshot)
    return WorkOrder.from_doc(doc)


def _svg(signature: Signature | None, what: str) -> Response:
    if signature is None:
        raise Problem(404, "no_signature", f"{what} has no signature")
    return Response(signature_svg(signature), media_type=SVG)


# -- memo ------------------------------------------------------------------------------------


@router.get("/workorders/{workorder_id}/memo", response_model=MemoOut, responses=NOT_FOUND)
async def get_memo(request: Request, workorder_id: WorkOrderId, principal: Reader) -> MemoOut:
    """The office-only memo of a work order."""
    await visible_view(request, principal, workorder_id)
    memo = await workorders_of(request).memo(principal.tenant_id, workorder_id)
    return MemoOut(id=workorder_id, memo=memo)


@router.put("/workorders/{workorder_id}/memo", response_model=MemoOut, responses=NOT_FOUND)
async def put_memo(
    request: Request, workorder_id: WorkOrderId, body: MemoIn, principal: OfficeRole
) -> MemoOut:
    """Make the memo read ``memo`` (edits only the characters that differ, so concurrent
    office edits elsewhere in it merge)."""
    await visible_view(request, principal, workorder_id)
    office = workorders_of(request)
    try:
        await office.set_memo(principal.tenant_id, workorder_id, body.memo)
    except WorkOrderError as exc:
        raise domain_problem(exc) from exc
    return MemoOut(id=workorder_id, memo=await office.memo(principal.tenant_id, workorder_id))


# -- submissions -----------------------------------------------------------------------------


@router.get(
    "/workorders/{workorder_id}/submissions", response_model=SubmissionList, responses=NOT_FOUND
)
async def list_submissions(
    request: Request, workorder_id: WorkOrderId, principal: Reader
) -> SubmissionList:
    """Every submission record of the work order (accepted and rejected), oldest first."""
    await visible_view(request, principal, workorder_id)
    records = await _records(request, principal.tenant_id, workorder_id)
    return SubmissionList(items=[SubmissionOut(**_out(record)) for record in records])


@router.get(
    "/workorders/{workorder_id}/submissions/{record_id}",
    response_model=SubmissionDetail,
    responses=NOT_FOUND,
)
async def get_submission(
    request: Request, workorder_id: WorkOrderId, record_id: RecordNumber, principal: Reader
) -> SubmissionDetail:
    """One submission record with the work order as it was judged (its snapshot)."""
    await visible_view(request, principal, workorder_id)
    record = await _record(request, principal.tenant_id, workorder_id, record_id)
    snapshot, problems = _snapshot(record)
    return SubmissionDetail(**_out(record), snapshot=snapshot, problems=problems)


@router.get(
    "/workorders/{workorder_id}/submissions/{record_id}/signature",
    response_class=Response,
    responses=_SVG_RESPONSES,
)
async def get_submission_signature(
    request: Request, workorder_id: WorkOrderId, record_id: RecordNumber, principal: Reader
) -> Response:
    """The signature the work order carried when this submission was judged, as SVG."""
    await visible_view(request, principal, workorder_id)
    record = await _record(request, principal.tenant_id, workorder_id, record_id)
    snapshot, _ = _snapshot(record)
    return _svg(snapshot.signature, f"submission record {record_id}")


@router.get(
    "/workorders/{workorder_id}/signature", response_class=Response, responses=_SVG_RESPONSES
)
async def get_signature(request: Request, workorder_id: WorkOrderId, principal: Reader) -> Response:
    """The work order's current signature as SVG (from its view)."""
    view = await visible_view(request, principal, workorder_id)
    raw = view.data().get("signature")
    return _svg(Signature.model_validate(raw) if raw else None, f"work order {workorder_id}")
