"""An in-memory channel pair: real code for tests and for embedding a relay in-process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..exceptions import ConnectionClosed

__all__ = ["MemoryChannel", "memory_channel_pair"]


@dataclass(frozen=True, slots=True)
class _Closed:
    code: int
    reason: str


class MemoryChannel:
    """One end of a pair. ``capacity`` bounds the frames in flight towards this end."""

    def __init__(self, inbox: asyncio.Queue[bytes | _Closed]) -> None:
        self._inbox = inbox
        self._peer: MemoryChannel | None = None
        self._closed: _Closed | None = None

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def send(self, data: bytes) -> None:
        if self._closed is not None or self._peer is None or self._peer._closed is not None:
            closed = self._closed or (self._peer._closed if self._peer else None)
            raise ConnectionClosed(closed.code if closed else None, closed.reason if closed else "")
        await self._peer._inbox.put(bytes(data))

    async def recv(self) -> bytes:
        if self._closed is not None and self._inbox.empty():
            raise ConnectionClosed(self._closed.code, self._closed.reason)
        item = await self._inbox.get()
        if isinstance(item, _Closed):
            self._closed = self._closed or item
            self._inbox.put_nowait(item)  # every later recv sees the close too
            raise ConnectionClosed(item.code, item.reason)
        return item

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed is not None:
            return
        marker = _Closed(code, reason)
        self._closed = marker
        self._inbox.put_nowait(marker)
        if self._peer is not None and self._peer._closed is None:
            self._peer._closed = marker
            self._peer._inbox.put_nowait(marker)


def memory_channel_pair(capacity: int = 0) -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected channels; ``capacity`` 0 means unbounded, else ``send`` waits when full."""
    left = MemoryChannel(asyncio.Queue(capacity))
    right = MemoryChannel(asyncio.Queue(capacity))
    left._peer, right._peer = right, left
    return left, right
