"""The sending side of one device connection, and the device's change signal.

Private. :class:`DeviceLink` is the only way device code queues frames, so
these invariants hold for everything the device sends:

* Nothing is built for a document the session holds CLOSED (or in a state in
  which the session refuses that message): :meth:`DeviceLink.send` returns
  False instead of letting :class:`~crdtsync.exceptions.UnexpectedMessage`
  escape into an edit call or a loop.
* Each frame is tagged with the document's *epoch* on this connection (one
  per opening). The writer drops frames whose document was closed, or closed
  and opened again, after they were queued: a frame built for a replica that
  was since replaced never reaches the relay.
* Local edits queue as :class:`PendingPush` rather than bytes: Pushes of one
  document waiting next to each other leave as one (the updates merged, the
  newest sequence, which the relay's cumulative Ack then covers), so a device
  editing faster than its link sends fewer, larger frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from pycrdt import merge_updates

from .exceptions import UnexpectedMessage
from .protocol import DocState, ResumeEntry, SyncSession

__all__ = ["DeviceLink", "Outgoing", "PendingPush", "Signal"]


@dataclass(frozen=True, slots=True)
class PendingPush:
    """A local edit waiting to go out (encoded when the writer sends it)."""

    document: str
    epoch: int
    seq: int
    update: bytes


#: A queued frame: (document, epoch, bytes) or a push; ``None`` asks the writer to close.
Outgoing = tuple[str, int, bytes] | PendingPush | None

_MAX_MERGE = 256  # pushes folded into one frame at most


class OutQueue:
    """The connection's FIFO of outgoing frames; the writer can take neighbouring pushes."""

    def __init__(self) -> None:
        self._items: deque[Outgoing] = deque()
        self._ready = asyncio.Event()

    def put_nowait(self, item: Outgoing) -> None:
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Outgoing:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def take_pushes(self, first: PendingPush) -> list[PendingPush]:
        """The pushes of ``first``'s document and epoch queued right behind it (popped)."""
        taken: list[PendingPush] = []
        while self._items and len(taken) < _MAX_MERGE:
            head = self._items[0]
            if not (
                isinstance(head, PendingPush)
                and (head.document, head.epoch) == (first.document, first.epoch)
            ):
                break
            self._items.popleft()
            taken.append(head)
        return taken


class Signal:
    """Wakes everyone waiting whenever :meth:`notify` is called (an edge, not a level)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float | None = None) -> None:
        """Return at the next :meth:`notify`, or after ``timeout`` seconds."""
        event = self._event
        if timeout is None:
            await event.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0.0)):
                await event.wait()


class DeviceLink:
    """One connection's session and send queue, as the device's loops see them."""

    def __init__(self, session: SyncSession) -> None:
        self.session = session
        self.queue = OutQueue()
        self._epochs: dict[str, int] = {}
        self._counter = itertools.count(1)

    def state(self, document: str) -> DocState:
        return self.session.state(document)

    def is_open(self, document: str) -> bool:
        return self.session.state(document) is DocState.OPEN

    def open(self, document: str, state_vector: bytes) -> bool:
        """Start syncing ``document`` (SyncStep1); False when it is not CLOSED on this link."""
        if self.session.state(document) is not DocState.CLOSED:
            return False
        frame = self.session.open_document(document, state_vector)
        self._epochs[document] = next(self._counter)
        self.queue.put_nowait((document, self._epochs[document], frame))
        return True

    def resume(self, entries: list[ResumeEntry]) -> None:
        """Open the entries' documents at once (each must be CLOSED on this link)."""
        frame = self.session.resume(entries)
        for entry in entries:
            self._epochs[entry.document] = next(self._counter)
        self.queue.put_nowait(("", 0, frame))

    def send(self, document: str, build: Callable[[SyncSession], bytes]) -> bool:
        """Queue ``build(session)`` for ``document``; False (nothing queued) when the
        document is closed on this link or the session refuses the message now."""
        if self.session.state(document) is DocState.CLOSED:
            return False
        try:
            frame = build(self.session)
        except UnexpectedMessage:
            return False
        self.queue.put_nowait((document, self._epochs.get(document, 0), frame))
        return True

    def push(self, document: str, seq: int, update: bytes) -> bool:
        """Queue a local edit (outbox ``seq``); False when the document is not open here."""
        if self.session.state(document) is DocState.CLOSED:
            return False
        self.queue.put_nowait(PendingPush(document, self._epochs.get(document, 0), seq, update))
        return True

    def encode(self, first: PendingPush) -> bytes:
        """The Push frame for ``first`` and the pushes queued right behind it, merged; empty
        when the session refuses a Push for the document now."""
        pushes = [first, *self.queue.take_pushes(first)]
        update = (
            pushes[0].update
            if len(pushes) == 1
            else merge_updates(*(push.update for push in pushes))
        )
        try:
            return self.session.send_push(first.document, pushes[-1].seq, update)
        except UnexpectedMessage:
            return b""

    def send_raw(self, frame: bytes) -> None:
        """Queue a connection-level frame (an Error before closing)."""
        self.queue.put_nowait(("", 0, frame))

    def close(self) -> None:
        """The writer closes the channel after what is queued."""
        self.queue.put_nowait(None)

    def current(self, document: str, epoch: int) -> bool:
        """True if a frame queued for ``document`` at ``epoch`` may still be sent."""
        if not document:
            return True
        return (
            self.session.state(document) is not DocState.CLOSED
            and self._epochs.get(document, 0) == epoch
        )
