"""A websockets (asyncio) client as a :class:`~crdtsync.transport.base.Channel`."""

from __future__ import annotations

from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ..exceptions import ConnectionClosed
from .base import Connector

__all__ = ["WebSocketChannel", "websocket_connector"]


class WebSocketChannel:
    """Wraps a websockets client connection; translates its closes into ConnectionClosed."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, data: bytes) -> None:
        try:
            await self.connection.send(data)
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def recv(self) -> bytes:
        try:
            data = await self.connection.recv()
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from exc
        return data.encode("utf-8") if isinstance(data, str) else data

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.connection.close(code, reason)


def _closed(exc: websockets.ConnectionClosed) -> ConnectionClosed:
    frame = exc.rcvd or exc.sent
    return ConnectionClosed(frame.code if frame else None, frame.reason if frame else "")


def websocket_connector(
    url: str,
    *,
    token: str | None = None,
    max_size: int = 16 * 1024 * 1024,
    open_timeout: float = 10.0,
    **options: Any,
) -> Connector:
    """A connector that opens ``url`` with ``Authorization: Bearer token`` when given.

    Connection failures surface as ``OSError``, ``TimeoutError`` or
    :class:`ConnectionClosed` (a refused handshake, with its HTTP status as code).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else None

    async def open_channel() -> WebSocketChannel:
        try:
            connection = await connect(
                url,
                additional_headers=headers,
                max_size=max_size,
                open_timeout=open_timeout,
                compression=None,
                **options,
            )
        except websockets.InvalidStatus as exc:
            raise ConnectionClosed(exc.response.status_code, "handshake refused") from exc
        except websockets.InvalidHandshake as exc:
            raise ConnectionClosed(None, f"handshake failed: {exc}") from exc
        return WebSocketChannel(connection)

    return open_channel
