"""The transport seam: a :class:`Channel` moves whole binary frames, in order.

Anything that can send and receive messages in order fits in about thirty
lines: an in-memory pair (``memory``), a websockets client (``websocket``), the
relay's ASGI adapter (``server``). Closed channels raise
:class:`~crdtsync.exceptions.ConnectionClosed` from ``send`` and ``recv``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

__all__ = ["Channel", "Connector"]


@runtime_checkable
class Channel(Protocol):
    """An ordered, message-oriented, bidirectional link."""

    async def send(self, data: bytes) -> None:
        """Send one frame. Raises ConnectionClosed once the channel is closed."""
        ...

    async def recv(self) -> bytes:
        """Wait for the next frame. Raises ConnectionClosed (with the close code) at the end."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the channel; idempotent."""
        ...


#: Opens a new channel to the relay; raises ConnectionClosed or OSError when it cannot.
Connector = Callable[[], Awaitable[Channel]]
