"""The connection of a device: reconnecting, the handshake, events, refusals.

Private: the middle of :class:`~crdtsync.device.Device` (replicas below it in
:mod:`crdtsync._replicas`, the public API above it). One connection at a time;
per connection one task group holds the writer, the upload loop and the
submission loop, all cancelled when the reader ends. Every frame goes through
the connection's :class:`~crdtsync._link.DeviceLink`, so nothing is sent for a
document the relay closed.

Refusals: Error FORBIDDEN_FIELD replaces the document's replica (see
:meth:`~crdtsync._replicas.ReplicaHost._replace`) and the Close that follows
opens the fresh replica again; a Close 4403 without that marks the document
withdrawn (in the file too): it stays on the device and is not synced until
it is opened again. Any other Error naming a Push records that change as rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from pathlib import Path

from ._device_types import Backoff, Rejection
from ._digest import state_digest
from ._link import DeviceLink, PendingPush
from ._replicas import ReplicaHost
from ._submissions import Submissions
from ._updates import holds_structs
from ._uploads import Uploads
from .exceptions import CloseCode, ConnectionClosed, DeviceError, ErrorCode, StoreError
from .protocol import (
    AckReceived,
    BlobStatusReceived,
    ConnectionFailed,
    DocState,
    DocumentClosed,
    ErrorReceived,
    Event,
    ResumeAnswered,
    ResumeEntry,
    Role,
    SubmissionAnswered,
    Synced,
    SyncRequested,
    SyncSession,
    UpdateReceived,
)
from .transport import Channel, Connector

__all__ = ["DeviceSync"]

log = logging.getLogger("crdtsync.device")

_RESUME_BATCH = 256  # documents per Resume frame


class DeviceSync(ReplicaHost):
    """Keeps one connection to the relay while online; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        name: str,
        connector: Connector | None,
        *,
        online: bool,
        backoff: Backoff | None,
        seed: int | None,
    ) -> None:
        super().__init__(path, name)
        self._connector = connector
        self._backoff = backoff or Backoff()
        self._rng = random.Random(seed)
        self._online = asyncio.Event()
        if online and connector is not None:
            self._online.set()
        self._channel: Channel | None = None
        self._last_sync: float | None = None
        self._fully_synced = False
        self._reconnects = 0
        self._uploads: Uploads | None = None
        self._submissions: Submissions | None = None

    def _uploads_or_raise(self) -> Uploads:
        if self._uploads is None:
            raise DeviceError("device is not open: use 'async with Device(...)'")
        return self._uploads

    def _submissions_or_raise(self) -> Submissions:
        if self._submissions is None:
            raise DeviceError("device is not open: use 'async with Device(...)'")
        return self._submissions

    # -- the sync loop -------------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        attempt = 0
        while True:
            await self._online.wait()
            assert self._connector is not None
            try:
                channel = await self._connector()
            except (OSError, TimeoutError, ConnectionClosed) as exc:
                self._last_error = f"connect failed: {exc}"
                await self._pause(self._backoff.delay(attempt, self._rng))
                attempt += 1
                continue
            if not self._online.is_set():  # go_offline() was called while connecting
                with contextlib.suppress(ConnectionClosed, OSError):
                    await channel.close(1000, "device offline")
                continue
            synced_once = await self._run_connection(channel)
            self._reconnects += 1
            attempt = 0 if synced_once else attempt + 1
            if self._online.is_set():
                await self._pause(self._backoff.delay(attempt, self._rng))

    async def _pause(self, seconds: float) -> None:
        """Sleep before the next attempt; going offline and online again skips the wait."""
        self._notify()
        online = self._online
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while online.is_set():
                    await self._signal.wait()
                await online.wait()

    async def _run_connection(self, channel: Channel) -> bool:
        """Serve one connection until it closes; True if every document synced on it."""
        session = SyncSession(Role.DEVICE)
        link = DeviceLink(session)
        self._link, self._channel = link, channel
        self._resume_all(link)
        self._last_error = None
        self._notify()
        uploads, submissions = self._uploads_or_raise(), self._submissions_or_raise()
        synced_once = False
        try:
            async with asyncio.TaskGroup() as tasks:
                workers = [
                    tasks.create_task(self._write_loop(channel, link)),
                    tasks.create_task(uploads.run(link, self._ready)),
                    tasks.create_task(
                        submissions.run(link, self._ready, uploads.pending, self._newest_seq)
                    ),
                ]
                try:
                    synced_once = await self._read_loop(channel, session)
                finally:
                    for worker in workers:
                        worker.cancel()
        finally:
            self._link = self._channel = None
            submissions.connection_lost()
            for replica in self._replicas.values():
                replica.synced = replica.live = replica.reopen = False
            with contextlib.suppress(ConnectionClosed, OSError):
                await channel.close(1000, "")
            self._notify()
        return synced_once

    def _resume_all(self, link: DeviceLink) -> None:
        """Open every replica at once (Resume), with the digest of its state: the relay
        answers which ones differ, and only those sync in full."""
        entries: list[ResumeEntry] = []
        for replica in self._replicas.values():
            replica.reopen = replica.synced = replica.live = False
            if replica.withdrawn:
                continue
            replica.resume_state = replica.doc.get_state()
            entries.append(
                ResumeEntry(replica.name, state_digest(replica.doc), self._newest_seq(replica.name))
            )
        for start in range(0, len(entries), _RESUME_BATCH):
            link.resume(entries[start : start + _RESUME_BATCH])

    def _resumed(self, name: str, in_sync: bool) -> None:
        replica = self._replicas.get(name)
        link = self._link
        if replica is None or link is None:
            return
        state, replica.resume_state = replica.resume_state, None
        if not in_sync or state is None:  # sync it in full: SyncStep1, then the usual answer
            link.send(name, lambda s: s.send_step1(name, replica.doc.get_state()))
            return
        replica.live = True
        diff = replica.doc.get_update(state)  # edits made while the Resume was under way
        seq = self._newest_seq(name)
        if holds_structs(diff):
            link.send(name, lambda s: s.send_push(name, seq, diff))
        self._after_sync()

    async def _write_loop(self, channel: Channel, link: DeviceLink) -> None:
        while True:
            item = await link.queue.get()
            if item is None:  # going offline
                await channel.close(1000, "device offline")
                return
            if isinstance(item, PendingPush):
                document, epoch = item.document, item.epoch
                if not link.current(document, epoch):
                    continue  # the document closed (or reopened) since
                frame = link.encode(item)
            else:
                document, epoch, frame = item
                if not link.current(document, epoch):
                    continue  # the document closed (or reopened) since: the relay must not get it
            if not frame:
                continue
            try:
                await channel.send(frame)
            except ConnectionClosed:
                return  # the link is gone: the reader sees the close and ends the connection

    def _all_synced(self) -> bool:
        return all(r.synced for r in self._replicas.values() if not r.withdrawn)

    async def _read_loop(self, channel: Channel, session: SyncSession) -> bool:
        synced_once = False
        while True:
            try:
                data = await channel.recv()
            except ConnectionClosed as exc:
                if exc.code not in (1000, 1001, None):
                    self._last_error = f"relay closed the connection: {exc.code} {exc.reason}"
                return synced_once
            for event in session.receive_frame(data):
                self._handle(event)
            if not synced_once and self._replicas and self._all_synced():
                synced_once = True

    def _handle(self, event: Event) -> None:
        match event:
            case UpdateReceived(document=name, update=update):
                self._apply_remote(name, update)
            case Synced(document=name):
                replica = self._replicas.get(name)
                if replica is not None:
                    replica.synced = True
                    self._changed(name)
                self._after_sync()
            case SyncRequested(document=name, state_vector=sv):
                self._resume(name, sv)
            case ResumeAnswered(document=name, in_sync=in_sync):
                self._resumed(name, in_sync)
            case AckReceived(document=name, seq=seq):
                outbox = self._outbox.get(name)
                while outbox and outbox[0] <= seq:
                    outbox.popleft()
                self._held_acks[name] = max(seq, self._held_acks.get(name, 0))
                self._hold()
                self._after_sync()
            case ErrorReceived(document=name, code=code, seq=seq, message=message):
                self._on_error(name, int(code), seq, message)
            case DocumentClosed(document=name, code=code, reason=reason):
                self._on_closed(name, code, reason)
            case SubmissionAnswered(document=name, key=key, body=body):
                self._submissions_or_raise().answered(name, key, body)
            case BlobStatusReceived():
                self._uploads_or_raise().on_status(event)
            case ConnectionFailed(error=error, data=frame):
                self._last_error = f"relay broke the protocol: {error}"
                if self._link is not None:
                    self._link.send_raw(frame)
                    self._link.close()
            case _:
                pass

    def _on_error(self, name: str, code: int, seq: int, message: str) -> None:
        self._last_error = f"relay error {code} on {name or 'connection'}: {message}"
        log.warning("%s: %s", self.name, self._last_error)
        if name and code == ErrorCode.FORBIDDEN_FIELD:
            self._uploads_or_raise().document_closed(name)
            self._replace(name, seq, code, message)
        elif name and seq:
            self.store.reject(name, seq, code, message)
            self._rejected.append(Rejection(name, seq, code, message))
            outbox = self._outbox.get(name)
            if outbox and seq in outbox:
                outbox.remove(seq)
        self._notify()

    def _on_closed(self, name: str, code: int, reason: str) -> None:
        """The relay closed ``name`` on this connection (the session now holds it CLOSED)."""
        self._uploads_or_raise().document_closed(name)
        replica = self._replicas.get(name)
        if replica is None:
            return
        replica.synced = replica.live = False
        if replica.reopen:  # replaced after a refused field write: sync the fresh replica
            replica.reopen = False
            self._start_sync(replica)
        elif code == CloseCode.FORBIDDEN:
            replica.withdrawn = True
            self.store.set_withdrawn(name, True)
            self._last_error = f"access to {name} withdrawn: {reason}"
            log.warning("%s: %s", self.name, self._last_error)
        self._after_sync()

    def _resume(self, name: str, relay_state: bytes) -> None:
        replica = self._replicas.get(name)
        link = self._link
        if replica is None or link is None or replica.reopen or replica.withdrawn:
            return
        if link.state(name) is DocState.CLOSED:
            return
        try:
            diff = replica.doc.get_update(relay_state)
        except ValueError as exc:
            self._last_error = f"relay sent an invalid state vector for {name}: {exc}"
            return
        seq = self._newest_seq(name)
        # Without unacknowledged changes, a diff of nothing but the delete set holds no news:
        # the relay has every deletion this replica knows (its own ones were acknowledged),
        # and sending it would be a write to documents the device may only read.
        if seq or holds_structs(diff):
            link.send(name, lambda s: s.send_push(name, seq, diff))
        replica.live = True
        self._notify()

    def _after_sync(self) -> None:
        if (
            self._link is not None
            and self._all_synced()
            and not any(seqs for name, seqs in self._outbox.items() if not self._is_withdrawn(name))
        ):
            # Once per burst: what the status now shows as acknowledged is in the file too,
            # before anyone waiting for the device to be in sync looks at it.
            if self._held_acks:
                self.flush()
            if self._last_sync is None or not self._fully_synced:
                with contextlib.suppress(StoreError):
                    self.store.mark_synced(time.time())
            self._last_sync = time.time()
            self._fully_synced = True
        else:
            self._fully_synced = False
        self._notify()

    def _is_withdrawn(self, name: str) -> bool:
        replica = self._replicas.get(name)
        return replica is not None and replica.withdrawn
