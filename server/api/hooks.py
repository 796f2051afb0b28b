"""Webhook management (office credentials only).

| endpoint | what |
|---|---|
| ``POST /webhooks`` | register a URL (and a secret, or one is generated and returned once) |
| ``GET /webhooks`` | the tenant's webhooks with their backlog (pending, failing, oldest) |
| ``GET /webhooks/{id}`` | one webhook with its backlog |
| ``DELETE /webhooks/{id}`` | delete it and its undelivered deliveries |

Receivers verify each request with :func:`server.webhooks.verify_signature`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import AnyHttpUrl, BaseModel, Field, StringConstraints

from ..webhooks import Webhook, WebhookNotFound, WebhookRegistry
from .auth import API_PREFIX, OfficeRole, office_of
from .problems import PROBLEM_RESPONSES, Problem, problem_doc

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["webhooks"], responses=PROBLEM_RESPONSES)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: problem_doc("No such webhook in this tenant")}

Kind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.([a-z][a-z0-9_]*|\*))*$")]


class WebhookCreate(BaseModel):
    url: AnyHttpUrl
    secret: str | None = Field(
        None, min_length=16, max_length=200, description="Omit to have one generated."
    )
    kinds: list[Kind] = Field(
        default_factory=list,
        max_length=50,
        description="Change kinds to deliver (e.g. 'document.updated', 'workorder.*'); empty: all.",
    )


class BacklogOut(BaseModel):
    pending: int
    failing: int
    oldest: datetime | None


class WebhookOut(BaseModel):
    id: str
    url: str
    kinds: list[str]
    created_at: datetime
    backlog: BacklogOut


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret: shown here once, never again.")


class WebhookList(BaseModel):
    items: list[WebhookOut]


async def _out(registry: WebhookRegistry, webhook: Webhook) -> WebhookOut:
    backlog = await registry.backlog(webhook.tenant_id, webhook_id=webhook.id)
    return WebhookOut(
        id=webhook.id,
        url=webhook.url,
        kinds=list(webhook.kinds),
        created_at=webhook.created_at,
        backlog=BacklogOut(pending=backlog.pending, failing=backlog.failing, oldest=backlog.oldest),
    )


@router.post("/webhooks", status_code=201, response_model=WebhookCreated)
async def create_webhook(
    request: Request, body: WebhookCreate, principal: OfficeRole
) -> WebhookCreated:
    """Deliver the tenant's future changes (of ``kinds``) to ``url``, signed with ``secret``."""
    registry = office_of(request).webhooks
    try:
        created = await registry.create(
            principal.tenant_id, str(body.url), secret=body.secret, kinds=body.kinds
        )
    except ValueError as exc:
        raise Problem(422, "invalid_value", str(exc)) from exc
    out = await _out(registry, created.webhook)
    return WebhookCreated(**out.model_dump(), secret=created.secret)


@router.get("/webhooks", response_model=WebhookList)
async def list_webhooks(request: Request, principal: OfficeRole) -> WebhookList:
    registry = office_of(request).webhooks
    hooks = await registry.list(principal.tenant_id)
    return WebhookList(items=[await _out(registry, hook) for hook in hooks])


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut, responses=_NOT_FOUND)
async def get_webhook(request: Request, webhook_id: str, principal: OfficeRole) -> WebhookOut:
    registry = office_of(request).webhooks
    try:
        webhook = await registry.get(principal.tenant_id, webhook_id)
    except WebhookNotFound as exc:
        raise Problem(404, "not_found", f"no webhook {webhook_id}") from exc
    return await _out(registry, webhook)


@router.delete("/webhooks/{webhook_id}", status_code=204, responses=_NOT_FOUND)
async def delete_webhook(request: Request, webhook_id: str, principal: OfficeRole) -> Response:
    try:
        await office_of(request).webhooks.delete(principal.tenant_id, webhook_id)
    except WebhookNotFound as exc:
        raise Problem(404, "not_found", f"no webhook {webhook_id}") from exc
    return Response(status_code=204)
