"""The relay as one ASGI app: sync endpoints and the office's HTTP API.

``create_app(settings)`` returns a FastAPI app whose lifespan opens the SQLite
store, the office side (:class:`~server.office.Office`: tenants, change feed,
events, webhooks with their dispatcher, on its own connection to the same
file) and the relay; mount it into another ASGI app or serve it with uvicorn
(``python -m server``). While it runs, ``app.state`` holds ``store``,
``relay``, ``service`` (the relay's :class:`~crdtsync.service.FieldService`),
``office``, ``views`` (the work orders' materialised views,
:class:`~server.views.WorkOrderViews`) and ``metrics`` (a
:class:`~server.metrics.RelayMetrics`, the relay observer).

Endpoints:

* ``GET /healthz``: 200 and JSON when the store answers, 503 otherwise;
  ``views_backlog`` counts work orders whose view is still being built.
* ``GET /metrics``: Prometheus text format (unless ``metrics`` is off).
* ``/api/v1/...``: the office API (``server.api``); OpenAPI at ``/openapi.json``.
* websocket ``/sync``: the native protocol, many documents on one connection.
* websocket ``/yjs/{doc_id}``: plain y-websocket, one document, for stock Yjs clients.

The relay enforces the field-service rules (:class:`crdtsync.service.FieldService`).
Both websockets take a token as ``?token=`` or ``Authorization: Bearer``: a
credential token acts for its tenant, role and technician; without one, the
shared token (or nothing, when the relay runs open) acts as an office outside
every tenant (see :mod:`server.sync_auth`). A refused token is answered with an
UNAUTHORIZED error frame (native endpoint) and close code 4401. Revoking a
credential, or its expiry, cuts its open connections.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, Response, WebSocket
from fastapi.responses import JSONResponse

from crdtsync import (
    CloseCode,
    ErrorCode,
    InvalidDocumentName,
    Relay,
    RelayConfig,
    SQLiteStore,
    StoreError,
    __version__,
)
from crdtsync.protocol import Error, encode_frame, validate_document_name
from crdtsync.service import FieldService

from .api import install_api
from .channel import StarletteChannel
from .dispatcher import RetryPolicy
from .metrics import CONTENT_TYPE, RelayMetrics
from .office import Office, OfficeConfig
from .settings import RelaySettings
from .sync_auth import SyncAuthenticator, serve_until_expiry
from .views import WorkOrderViews
from .workorders import OfficeWorkOrders

__all__ = ["create_app", "office_config"]

log = logging.getLogger("crdtsync.server")


def _presented_token(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return websocket.query_params.get("token")


def office_config(settings: RelaySettings) -> OfficeConfig:
    """The office side's tunables from the relay settings."""
    return OfficeConfig(
        synchronous=settings.synchronous,
        event_queue_size=settings.event_queue_size,
        event_heartbeat=settings.event_heartbeat_seconds,
        webhook_timeout=settings.webhook_timeout_seconds,
        webhook_concurrency=settings.webhook_concurrency,
        webhook_failing_after=settings.webhook_failing_after,
        webhook_retry=RetryPolicy(
            initial=settings.webhook_retry_initial_seconds,
            maximum=settings.webhook_retry_max_seconds,
        ),
    )


def create_app(settings: RelaySettings | None = None) -> FastAPI:
    """Build the relay app. Store, office and relay live for the app's lifespan."""
    settings = settings or RelaySettings()
    metrics = RelayMetrics()
    app = FastAPI(
        title="crdtsync relay", version=__version__, lifespan=_lifespan(settings, metrics)
    )
    app.state.metrics = metrics
    metrics.watch_relay(lambda: app.state.relay.stats if hasattr(app.state, "relay") else None)
    install_api(app)
    _add_health(app, settings, metrics)
    _add_sync(app)
    return app


def _lifespan(
    settings: RelaySettings, metrics: RelayMetrics
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    config = RelayConfig(
        max_frame_size=settings.max_frame_size,
        max_update_size=settings.max_update_size,
        send_queue_size=settings.send_queue_size,
        idle_eviction_seconds=settings.idle_eviction_seconds,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        retention = timedelta(days=settings.release_retention_days)
        service = FieldService(release_retention=retention)
        async with (
            SQLiteStore(settings.db, synchronous=settings.synchronous) as store,
            Office(settings.db, office_config(settings), metrics=metrics) as office,
            Relay(store, config, observer=metrics, application=service) as relay,
            WorkOrderViews(relay, office) as views,
        ):
            app.state.relay = relay
            app.state.store = store
            app.state.office = office
            app.state.service = service
            app.state.views = views
            app.state.workorders = OfficeWorkOrders(relay, release_retention=retention)
            shared = settings.token.get_secret_value() if settings.token else None
            app.state.sync_auth = SyncAuthenticator(office.tenants, shared)

            def cut(credential_id: str) -> None:
                relay.disconnect(lambda who: who.credential == credential_id, "credential revoked")

            office.tenants.on_revoke.append(cut)
            if settings.token is None:
                log.warning("no token configured: the relay accepts every connection")
            try:
                yield
            finally:
                del app.state.relay

    return lifespan


def _add_health(app: FastAPI, settings: RelaySettings, metrics: RelayMetrics) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        relay: Relay = app.state.relay
        try:
            await app.state.store.ping()
            await app.state.office.ping()
        except StoreError as exc:
            return JSONResponse({"status": "error", "detail": str(exc)}, status_code=503)
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "connections": relay.stats.connections,
                "documents_loaded": relay.stats.rooms_loaded,
                "updates_stored": relay.stats.updates_stored,
                "views_backlog": app.state.views.backlog,
            }
        )

    if settings.metrics:

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics() -> Response:
            await app.state.office.refresh_metrics()
            return Response(metrics.render(), media_type=CONTENT_TYPE)


def _add_sync(app: FastAPI) -> None:
    async def connect(websocket: WebSocket, document: str | None) -> None:
        """Accept, authenticate, and serve one sync connection until it closes."""
        await websocket.accept()
        found = await app.state.sync_auth.principal(_presented_token(websocket))
        if found is None:
            if document is None:
                error = Error(ErrorCode.UNAUTHORIZED, 0, "missing, wrong, revoked or expired token")
                await websocket.send_bytes(encode_frame("", error))
            await websocket.close(CloseCode.UNAUTHORIZED, "unauthorized")
            return
        principal, expires_at = found
        peer = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else ""
        relay: Relay = app.state.relay
        serving = relay.serve(
            StarletteChannel(websocket), document=document, peer=peer, principal=principal
        )
        await serve_until_expiry(relay, serving, principal, expires_at)

    @app.websocket("/sync")
    async def sync(websocket: WebSocket) -> None:
        await connect(websocket, None)

    @app.websocket("/yjs/{doc_id:path}")
    async def yjs(websocket: WebSocket, doc_id: str) -> None:
        try:
            validate_document_name(doc_id)
        except InvalidDocumentName:
            await websocket.accept()
            await websocket.close(CloseCode.POLICY_VIOLATION, "invalid document name")
            return
        await connect(websocket, doc_id)
