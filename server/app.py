"""The relay as one ASGI app: sync endpoints and the office's HTTP API.

``create_app(settings)`` returns a FastAPI app whose lifespan opens the SQLite
store, the office side (:class:`~server.office.Office`: tenants, change feed,
events, webhooks with their dispatcher, on its own connection to the same
file) and the relay; mount it into another ASGI app or serve it with uvicorn
(``python -m server``). While it runs, ``app.state`` holds ``store``,
``relay``, ``office`` and ``metrics`` (a :class:`~server.metrics.RelayMetrics`,
the relay observer).

Endpoints:

* ``GET /healthz``: 200 and JSON when the store answers, 503 otherwise.
* ``GET /metrics``: Prometheus text format (unless ``metrics`` is off).
* ``/api/v1/...``: the office API (``server.api``); OpenAPI at ``/openapi.json``.
* websocket ``/sync``: the native protocol, many documents on one connection.
* websocket ``/yjs/{doc_id}``: plain y-websocket, one document, for stock Yjs clients.

With a token configured, both websockets need it as ``?token=`` or
``Authorization: Bearer``; a wrong or missing one is answered with an
UNAUTHORIZED error frame (native endpoint) and close code 4401.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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

from .api import install_api
from .channel import StarletteChannel
from .dispatcher import RetryPolicy
from .metrics import CONTENT_TYPE, RelayMetrics
from .office import Office, OfficeConfig
from .settings import RelaySettings

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
    config = RelayConfig(
        max_frame_size=settings.max_frame_size,
        max_update_size=settings.max_update_size,
        send_queue_size=settings.send_queue_size,
        idle_eviction_seconds=settings.idle_eviction_seconds,
    )
    metrics = RelayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            SQLiteStore(settings.db, synchronous=settings.synchronous) as store,
            Office(settings.db, office_config(settings), metrics=metrics) as office,
            Relay(store, config) as relay,
        ):
            app.state.relay = relay
            app.state.store = store
            app.state.office = office
            if settings.token is None:
                log.warning("no token configured: the relay accepts every connection")
            try:
                yield
            finally:
                del app.state.relay

    app = FastAPI(title="crdtsync relay", version=__version__, lifespan=lifespan)
    app.state.metrics = metrics
    metrics.watch_relay(lambda: app.state.relay.stats if hasattr(app.state, "relay") else None)
    install_api(app)

    def authorized(websocket: WebSocket) -> bool:
        if settings.token is None:
            return True
        presented = _presented_token(websocket) or ""
        expected = settings.token.get_secret_value()
        return hmac.compare_digest(presented.encode(), expected.encode())

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
            }
        )

    if settings.metrics:

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics() -> Response:
            await app.state.office.refresh_metrics()
            return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.websocket("/sync")
    async def sync(websocket: WebSocket) -> None:
        await websocket.accept()
        if not authorized(websocket):
            frame = encode_frame("", Error(ErrorCode.UNAUTHORIZED, 0, "missing or wrong token"))
            await websocket.send_bytes(frame)
            await websocket.close(CloseCode.UNAUTHORIZED, "unauthorized")
            return
        peer = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else ""
        await app.state.relay.serve(StarletteChannel(websocket), peer=peer)

    @app.websocket("/yjs/{doc_id:path}")
    async def yjs(websocket: WebSocket, doc_id: str) -> None:
        await websocket.accept()
        if not authorized(websocket):
            await websocket.close(CloseCode.UNAUTHORIZED, "unauthorized")
            return
        try:
            validate_document_name(doc_id)
        except InvalidDocumentName:
            await websocket.close(CloseCode.POLICY_VIOLATION, "invalid document name")
            return
        peer = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else ""
        await app.state.relay.serve(StarletteChannel(websocket), document=doc_id, peer=peer)

    return app
