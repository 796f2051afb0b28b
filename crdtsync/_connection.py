"""The relay's side of one connection: its session, its send queue and its writer.

Invariants:

* Frames leave in the order they were queued. Updates for a document that sit
  next to each other in the queue leave as **one** Update: merged with
  ``pycrdt.merge_updates``, which is equivalent to applying them in order, so a
  peer that falls a little behind catches up with fewer, larger frames.
* The queue holds at most ``limit`` frames; queueing one more fails the
  connection as a slow consumer (1013) instead of buffering without bound.
  Control entries (the final Error, the end marker) are never refused.
* One writer task per connection (:meth:`RelayConnection.write_loop`) is the
  only code that sends on the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pycrdt import merge_updates

from .access import Principal
from .exceptions import CloseCode, ConnectionClosed, ErrorCode
from .protocol import DocState, SyncSession
from .transport import Channel

__all__ = ["RelayConnection", "SendQueue"]

_MAX_MERGE = 256  # updates folded into one frame at most


@dataclass(frozen=True, slots=True)
class _UpdateOut:
    document: str
    update: bytes


_Item = bytes | _UpdateOut | None  # None: the writer stops after sending what precedes it


class SendQueue:
    """A bounded FIFO of outgoing frames that the writer can look ahead in."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[_Item] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: _Item, *, force: bool = False) -> bool:
        """Queue ``item``; False (nothing queued) when full, unless ``force``."""
        if not force and len(self._items) >= self.limit:
            return False
        self._items.append(item)
        self._ready.set()
        return True

    def clear(self) -> None:
        self._items.clear()

    async def get(self) -> _Item:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def take_updates(self, document: str) -> list[bytes]:
        """Pop the updates for ``document`` at the head of the queue (at most a few hundred)."""
        taken: list[bytes] = []
        while self._items and len(taken) < _MAX_MERGE:
            head = self._items[0]
            if not (isinstance(head, _UpdateOut) and head.document == document):
                break
            self._items.popleft()
            taken.append(head.update)
        return taken


class RelayConnection:
    """Relay side of one peer. ``rooms`` maps the document names it joined to the relay's rooms."""

    _ids = itertools.count(1)

    def __init__(
        self,
        channel: Channel,
        session: SyncSession,
        queue_size: int,
        peer: str,
        on_slow: Callable[[], None] | None = None,
    ) -> None:
        self.id = next(self._ids)
        self._on_slow = on_slow
        self.peer = peer or f"conn-{self.id}"
        self.channel = channel
        self.session = session
        self.queue = SendQueue(queue_size)
        self.rooms: dict[str, Any] = {}  # the names it joined -> the relay's rooms
        self.writable: set[str] = set()  # names it was found allowed to write
        self.principal = Principal()  # who is on it: set by the relay before serving
        self.close_code: int = CloseCode.NORMAL
        self.close_reason = ""
        self.closing = False
        self.slow = False  # failed because its queue overflowed

    def send(self, frame: bytes) -> bool:
        """Queue a frame; a full queue fails the connection as a slow consumer."""
        if self.closing or not frame:
            return not self.closing
        if not self.queue.put(frame):
            self._overflow()
            return False
        return True

    def send_update(self, document: str, update: bytes) -> bool:
        """Queue an Update for ``document``; it may leave merged with its neighbours."""
        if self.closing:
            return False
        if not self.queue.put(_UpdateOut(document, update)):
            self._overflow()
            return False
        return True

    def _overflow(self) -> None:
        self.slow = True
        if self._on_slow is not None:
            self._on_slow()
        self.fail(ErrorCode.SLOW_CONSUMER, CloseCode.TRY_AGAIN_LATER, "send queue full")

    def finish(self) -> None:
        """The peer is gone or done: stop the writer after what is queued."""
        if not self.closing:
            self.closing = True
            self.queue.put(None, force=True)

    def fail(self, code: ErrorCode, close_code: int, reason: str, *, frame: bytes = b"") -> None:
        """Stop reading and writing: drop what is queued, send ``frame`` (or a fresh
        Error), then close with ``close_code``."""
        if self.closing:
            return
        self.closing = True
        self.close_code, self.close_reason = close_code, reason[:120]
        self.queue.clear()
        error = frame or self.session.send_error("", code, reason)
        if error:
            self.queue.put(error, force=True)
        self.queue.put(None, force=True)

    def _encode(self, item: _UpdateOut) -> bytes:
        """The Update frame for ``item`` and the updates queued right behind it."""
        updates = [item.update, *self.queue.take_updates(item.document)]
        if self.session.state(item.document) is DocState.CLOSED:
            return b""  # the peer left the document meanwhile
        return self.session.send_update(item.document, _merged(updates))

    async def write_loop(self) -> None:
        """Send queued frames until the end marker, then close the channel."""
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    break
                frame = self._encode(item) if isinstance(item, _UpdateOut) else item
                if frame:
                    await self.channel.send(frame)
        except ConnectionClosed:
            self.closing = True
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.channel.close(self.close_code, self.close_reason)


def _merged(updates: Iterable[bytes]) -> bytes:
    updates = list(updates)
    if len(updates) == 1:
        return updates[0]
    return merge_updates(*updates)
