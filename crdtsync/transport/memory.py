"""An in-memory channel pair: real code for tests and for embedding a relay in-process.

Each end has an inbox. With ``capacity`` set, ``send`` waits while the peer's
inbox holds that many frames, like a socket whose buffers are full; closing
never waits and never fails, whatever the inboxes hold, and wakes every waiter.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ..exceptions import ConnectionClosed

__all__ = ["MemoryChannel", "memory_channel_pair"]


@dataclass(frozen=True, slots=True)
class _Closed:
    code: int
    reason: str


class MemoryChannel:
    """One end of a pair. ``capacity`` bounds the frames in flight towards this end."""

    def __init__(self, capacity: int = 0) -> None:
        self._capacity = capacity
        self._inbox: deque[bytes] = deque()
        self._readable = asyncio.Event()  # set while the inbox holds frames or we are closed
        self._writable = asyncio.Event()  # set while the inbox has room or we are closed
        self._writable.set()
        self._peer: MemoryChannel | None = None
        self._closed: _Closed | None = None

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def _raise_closed(self) -> None:
        closed = self._closed
        if closed is None and self._peer is not None:
            closed = self._peer._closed
        raise ConnectionClosed(closed.code if closed else None, closed.reason if closed else "")

    async def send(self, data: bytes) -> None:
        peer = self._peer
        while True:
            if self._closed is not None or peer is None or peer._closed is not None:
                self._raise_closed()
            assert peer is not None
            if not peer._capacity or len(peer._inbox) < peer._capacity:
                break
            peer._writable.clear()
            await peer._writable.wait()
        peer._inbox.append(bytes(data))
        peer._readable.set()

    async def recv(self) -> bytes:
        while not self._inbox:
            if self._closed is not None:
                raise ConnectionClosed(self._closed.code, self._closed.reason)
            self._readable.clear()
            await self._readable.wait()
        data = self._inbox.popleft()
        self._writable.set()
        return data

    def _mark_closed(self, marker: _Closed) -> None:
        if self._closed is None:
            self._closed = marker
        self._readable.set()
        self._writable.set()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close both ends; frames already delivered stay readable. Never waits."""
        if self._closed is not None:
            return
        marker = _Closed(code, reason)
        self._mark_closed(marker)
        if self._peer is not None:
            self._peer._mark_closed(marker)


def memory_channel_pair(capacity: int = 0) -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected channels; ``capacity`` 0 means unbounded, else ``send`` waits when full."""
    left = MemoryChannel(capacity)
    right = MemoryChannel(capacity)
    left._peer, right._peer = right, left
    return left, right
