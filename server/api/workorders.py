"""Work orders: create, list, read, edit, reopen, mark processed.

| endpoint | roles |
|---|---|
| ``POST /workorders`` | office: create (whole skeleton, memo, optional assignment) |
| ``GET /workorders`` | office, viewer: the tenant's; device: its planning's. Filters, cursor |
| ``GET /workorders/{id}`` | office, viewer; device: its own only (others: 404) |
| ``PATCH /workorders/{id}`` | office: edits merged as a CRDT peer; assignment moves plannings |
| ``POST /workorders/{id}/reopen`` | office: a sent or processed one (else 409 ``not_sent``) |
| ``POST /workorders/{id}/processed`` | office: a sent one (else 409 ``not_sent``) |

Reads come from the materialised views (:mod:`server.views`), never from a
decoded document. Writes go through :class:`server.workorders.OfficeWorkOrders`
and answer once the views show them, so a read after a write sees it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from crdtsync.workorder import Status, WorkOrderError, new_id

from ..viewrows import ViewQuery, WorkOrderView
from ..workorders import (
    NewWorkOrder,
    NotSent,
    WorkOrderChanges,
    WorkOrderExists,
    WorkOrderNotFound,
)
from .access import (
    NOT_FOUND,
    Anyone,
    caught_up,
    domain_problem,
    views_of,
    visible_ids,
    visible_view,
    workorders_of,
)
from .auth import API_PREFIX, OfficeRole
from .models import (
    ID_PATTERN,
    WorkOrderCreate,
    WorkOrderOut,
    WorkOrderPage,
    WorkOrderPatch,
    summary_json,
)
from .problems import PROBLEM_RESPONSES, Problem, problem_doc

__all__ = ["router", "workorder_body"]

router = APIRouter(prefix=API_PREFIX, tags=["work orders"], responses=PROBLEM_RESPONSES)

MAX_PAGE = 500
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: problem_doc("Refused in the work order's present state"),
    503: problem_doc("Stored, but the views are behind"),
}
WorkOrderId = Annotated[str, Path(pattern=ID_PATTERN)]


def workorder_body(view: WorkOrderView) -> bytes:
    """The :class:`WorkOrderOut` JSON of ``view``: the stored JSON is spliced in as is."""
    head = summary_json(view)
    head["changed_paths"] = view.changed_paths
    head["problems"] = view.problems
    text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
    return (text[:-1] + ',"workorder":' + view.json + "}").encode()


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _cursor(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")


def _after(cursor: str) -> str:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        after = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise Problem(422, "invalid_cursor", "not a cursor this API gave out") from exc
    if not re.fullmatch(ID_PATTERN, after):
        raise Problem(422, "invalid_cursor", "not a cursor this API gave out")
    return after


async def _one(request: Request, tenant: str, ident: str, status: int = 200) -> Response:
    view = await views_of(request).get(tenant, ident)
    if view is None:  # created and then lost its view: cannot happen while the worker runs
        raise Problem(503, "views_behind", "the work-order view is not built yet")
    headers = {"Location": f"{API_PREFIX}/workorders/{ident}"} if status == 201 else None
    return _json(workorder_body(view), status, headers)


def _actor(principal: Any) -> str:
    return f"office:{principal.credential_id}"


@router.post(
    "/workorders",
    status_code=201,
    response_model=WorkOrderOut,
    responses=_CONFLICT,
)
async def create_workorder(
    request: Request, body: WorkOrderCreate, principal: OfficeRole
) -> Response:
    """Create a work order with its whole CRDT skeleton (and its ``office/{id}`` memo).

    With ``planning.technician`` it is also put on that technician's planning,
    which gives their devices access; with a technician and a ``planned_date`` it
    starts as ``planned``. An existing id is a 409 ``workorder_exists``.
    """
    ident = body.id or new_id()
    try:
        new = NewWorkOrder(
            id=ident,
            number=body.number,
            external_ref=body.external_ref,
            work_type=body.work_type,
            customer=body.customer.party("customer") if body.customer else None,
            delivery=body.delivery.party("delivery") if body.delivery else None,
            schedule=body.planning.schedule() if body.planning else None,
            short_description=body.short_description,
            description=body.description,
            tasks=list(body.tasks),
            memo=body.memo,
        )
        await workorders_of(request).create(principal.tenant_id, new)
    except (WorkOrderError, WorkOrderExists) as exc:
        raise domain_problem(exc) from exc
    await caught_up(request)
    return await _one(request, principal.tenant_id, ident, 201)


@router.get("/workorders", response_model=WorkOrderPage)
async def list_workorders(
    request: Request,
    principal: Anyone,
    status: Annotated[list[Status], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
    technician: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    planned_from: dt.date | None = None,
    planned_to: dt.date | None = None,
    changed_since: Annotated[
        dt.datetime | None, Query(description="With a time zone, e.g. 2026-01-31T12:00:00Z")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> Response:
    """The work orders matching every filter given, by id; continue with ``next_cursor``.

    ``status`` may repeat (any of them); ``planned_from``/``planned_to`` bound the
    planned date (inclusive); ``changed_since`` keeps those changed at or after
    it. A device sees only the work orders on its planning.
    """
    if changed_since is not None and changed_since.tzinfo is None:
        raise Problem(422, "invalid_value", "changed_since needs a time zone (e.g. Z)")
    query = ViewQuery(
        statuses=[s.value for s in dict.fromkeys(status)],
        technician=technician,
        planned_from=planned_from,
        planned_to=planned_to,
        changed_since=changed_since,
        ids=await visible_ids(request, principal),
        after=_after(cursor) if cursor else None,
        limit=limit,
    )
    views, more = await views_of(request).page(principal.tenant_id, query)
    page = {
        "items": [summary_json(view) for view in views],
        "next_cursor": _cursor(views[-1].id) if more else None,
    }
    return _json(json.dumps(page, ensure_ascii=False, separators=(",", ":")).encode())


@router.get("/workorders/{workorder_id}", response_model=WorkOrderOut, responses=NOT_FOUND)
async def get_workorder(request: Request, workorder_id: WorkOrderId, principal: Anyone) -> Response:
    """The merged state, its validation problems, whether (and what) changed after sending,
    and the time of the last change."""
    return _json(workorder_body(await visible_view(request, principal, workorder_id)))


@router.patch(
    "/workorders/{workorder_id}",
    response_model=WorkOrderOut,
    responses={**NOT_FOUND, **_CONFLICT},
)
async def patch_workorder(
    request: Request, workorder_id: WorkOrderId, body: WorkOrderPatch, principal: OfficeRole
) -> Response:
    """Office edits: planning and assignment, customer and delivery data, descriptions,
    number and references.

    Applied as one CRDT transaction on the relay's replica, so they merge with
    concurrent (also offline) device edits instead of overwriting them. A key
    left out is unchanged; ``null`` clears. A new ``planning.technician`` moves
    the work order to that technician's planning (their devices gain access; the
    previous technician's lose it).
    """
    for name in ("number", "planning", "customer", "delivery", "short_description", "description"):
        if name in body.model_fields_set and getattr(body, name) is None:
            raise Problem(422, "invalid_value", f"{name} cannot be null")
    meta: dict[str, Any] = {
        key: getattr(body, key)
        for key in ("number", "external_ref", "work_type")
        if key in body.model_fields_set
    }
    changes = WorkOrderChanges(
        meta=meta,
        planning=body.planning.given() if body.planning else {},
        customer=body.customer.given() if body.customer else {},
        delivery=body.delivery.given() if body.delivery else {},
        short_description=body.short_description,
        description=body.description,
    )
    try:
        await workorders_of(request).update(
            principal.tenant_id, workorder_id, changes, _actor(principal)
        )
    except (WorkOrderError, WorkOrderNotFound) as exc:
        raise domain_problem(exc) from exc
    await caught_up(request)
    return await _one(request, principal.tenant_id, workorder_id)


@router.post(
    "/workorders/{workorder_id}/reopen",
    response_model=WorkOrderOut,
    responses={**NOT_FOUND, **_CONFLICT},
)
async def reopen_workorder(
    request: Request, workorder_id: WorkOrderId, principal: OfficeRole
) -> Response:
    """Reopen a sent or processed work order: in progress again, devices may edit it."""
    try:
        await workorders_of(request).reopen(principal.tenant_id, workorder_id, _actor(principal))
    except (WorkOrderError, WorkOrderNotFound, NotSent) as exc:
        raise domain_problem(exc) from exc
    await caught_up(request)
    return await _one(request, principal.tenant_id, workorder_id)


@router.post(
    "/workorders/{workorder_id}/processed",
    response_model=WorkOrderOut,
    responses={**NOT_FOUND, **_CONFLICT},
)
async def mark_processed(
    request: Request, workorder_id: WorkOrderId, principal: OfficeRole
) -> Response:
    """Mark a sent work order processed (the office has handled it)."""
    try:
        await workorders_of(request).mark_processed(
            principal.tenant_id, workorder_id, _actor(principal)
        )
    except (WorkOrderError, WorkOrderNotFound, NotSent) as exc:
        raise domain_problem(exc) from exc
    await caught_up(request)
    return await _one(request, principal.tenant_id, workorder_id)
