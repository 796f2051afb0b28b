"""Starlette's server-side WebSocket as a crdtsync Channel."""

from __future__ import annotations

import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from crdtsync import ConnectionClosed

__all__ = ["StarletteChannel"]


class StarletteChannel:
    """Binary frames in and out; a text frame is handed on as its UTF-8 bytes (and refused)."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def send(self, data: bytes) -> None:
        if self.websocket.application_state is not WebSocketState.CONNECTED:
            raise ConnectionClosed(None, "closed")
        try:
            await self.websocket.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise ConnectionClosed(getattr(exc, "code", None), "send failed") from exc

    async def recv(self) -> bytes:
        if self.websocket.application_state is not WebSocketState.CONNECTED:
            raise ConnectionClosed(None, "closed")
        try:
            message = await self.websocket.receive()
        except (RuntimeError, OSError) as exc:
            raise ConnectionClosed(None, str(exc)) from exc
        if message["type"] == "websocket.disconnect":
            raise ConnectionClosed(message.get("code"), message.get("reason") or "")
        data = message.get("bytes")
        if data is None:
            text = message.get("text") or ""
            return text.encode("utf-8")
        return bytes(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.close(code, reason)
