"""The tenant's change feed over HTTP: pages (``GET /changes``) and live events (``GET /events``).

Both are for office and viewer credentials and only ever show the caller's
tenant. A cursor is the ``seq`` of the last change seen (0: from the start).

``GET /events`` is a ``text/event-stream``. Where it starts: the
``Last-Event-ID`` header (a reconnecting EventSource sends it), else the
``cursor`` query parameter, else now (live changes only). Each change is an
event whose ``id`` is its ``seq``; idle streams get a comment every
``event_heartbeat`` seconds; a stream ends with ``event: dropped`` when the
client fell too far behind or ``event: shutdown`` when the relay stops, and
the client reconnects to resume.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..changes import MAX_LIMIT, Change
from ..events import change_stream
from .auth import API_PREFIX, Reader, office_of
from .problems import PROBLEM_RESPONSES, Problem

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["changes"], responses=PROBLEM_RESPONSES)


class ChangeOut(BaseModel):
    seq: int
    document: str
    kind: str
    at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, change: Change) -> ChangeOut:
        return cls(
            seq=change.seq,
            document=change.document,
            kind=change.kind,
            at=change.at,
            data=change.data,
        )


class ChangePage(BaseModel):
    items: list[ChangeOut]
    next_cursor: int
    has_more: bool


@router.get("/changes", response_model=ChangePage)
async def list_changes(
    request: Request,
    principal: Reader,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> ChangePage:
    """The tenant's changes after ``cursor``, oldest first; continue with ``next_cursor``.

    ``has_more`` is true when the page is full (there may be more right now).
    """
    items, next_cursor = await office_of(request).changes.since(principal.tenant_id, cursor, limit)
    return ChangePage(
        items=[ChangeOut.of(c) for c in items],
        next_cursor=next_cursor,
        has_more=len(items) == limit,
    )


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
)
async def events(
    request: Request,
    principal: Reader,
    cursor: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Live changes as server-sent events, resuming after ``Last-Event-ID`` or ``cursor``."""
    office = office_of(request)
    start = cursor
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise Problem(422, "invalid_last_event_id", "Last-Event-ID must be a change seq")
        start = int(last_event_id.strip())
    if start is None:
        start = await office.changes.head()
    stream = change_stream(
        office.changes,
        office.events,
        principal.tenant_id,
        start,
        heartbeat=office.config.event_heartbeat,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
