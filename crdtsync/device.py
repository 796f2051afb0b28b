"""An offline-first replica of a device's documents, blobs and submissions.

``async with Device(path, connector) as device`` opens the device's SQLite file,
and keeps one connection to the relay for all of its documents while it is
online, reconnecting with exponential backoff and full jitter.

How nothing gets lost or reordered:

* A local edit is written to the device's file (and counted in its outbox)
  inside pycrdt's observer, before the edit call returns.
* On (re)connecting, the device sends each document's state vector; the relay
  answers with what the device lacks and with its own state vector, and the
  device answers that with **one** diff of everything the relay lacks, tagged
  with the newest outbox sequence. Only missing changes cross the wire, the
  diff is self-contained (no client's updates arrive out of order), and it
  also repairs anything the relay lost.
* Later local edits go out one Push each, in outbox order. An Ack for ``seq``
  means the relay committed everything up to it; only then do outbox rows go.
* Blobs (:meth:`Device.add_blob`) and submissions (:meth:`Device.submit`) are
  queued in the same file and sent by two loops that live and die with the
  connection (see :mod:`crdtsync._uploads` and :mod:`crdtsync._submissions`).

What the relay may refuse:

* **Access** (Error FORBIDDEN, then Close 4403 for the document): the document
  stops syncing on the connection and is marked withdrawn (also in the file);
  its data stays, local edits still go to the file and the outbox. It syncs
  again only when the app opens it again or a followed directory lists it again.
* **A field write** (Error FORBIDDEN_FIELD with the Push's seq, then Close): the
  replica is replaced by a fresh one synced from the relay; its local log and
  outbox move to the archive (:meth:`Device.archived`) and the rejection shows
  in :attr:`DeviceStatus.rejected` with the number of changes discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pycrdt import Doc

from ._device_sync import DeviceSync
from ._device_types import (
    ArchivedUpdate,
    Backoff,
    DeviceStatus,
    Rejection,
    SubmissionState,
    SubmissionStatus,
    Upload,
    UploadState,
)
from ._submissions import Submissions
from ._uploads import DEFAULT_CHUNK_SIZE, DEFAULT_WINDOW, Uploads
from .exceptions import ConnectionClosed, DeviceError, InvalidDocumentName
from .protocol import validate_document_name
from .store import LocalStore
from .transport import Connector

__all__ = [
    "ArchivedUpdate",
    "Backoff",
    "Device",
    "DeviceStatus",
    "Rejection",
    "SubmissionState",
    "SubmissionStatus",
    "Upload",
    "UploadState",
]

log = logging.getLogger("crdtsync.device")

#: Lists the documents a directory document names (see :meth:`Device.follow`).
Names = Callable[[Doc[Any]], Iterable[str]]


@dataclass(slots=True)
class _Follow:
    names: Names
    listed: set[str]


class Device(DeviceSync):
    """A device's replica of its documents, usable with or without a relay.

    ``connector`` opens a channel to the relay (``websocket_connector(url)``, or
    an in-memory pair in tests); ``None`` keeps the device offline for good.
    Blobs go up in chunks of ``blob_chunk_size`` bytes, ``blob_window`` at most
    unanswered; a submission the relay answers ``waiting`` is sent again after
    ``submission_backoff`` (or as soon as an upload for its document completes).
    """

    def __init__(
        self,
        path: str | Path,
        connector: Connector | None = None,
        *,
        documents: Iterable[str] = (),
        online: bool = True,
        backoff: Backoff | None = None,
        submission_backoff: Backoff | None = None,
        blob_chunk_size: int = DEFAULT_CHUNK_SIZE,
        blob_window: int = DEFAULT_WINDOW,
        seed: int | None = None,
        name: str = "",
    ) -> None:
        if blob_chunk_size < 1 or blob_window < 1:
            raise ValueError("blob_chunk_size and blob_window must be at least 1")
        super().__init__(path, name, connector, online=online, backoff=backoff, seed=seed)
        self._initial_documents = list(documents)
        self._submission_backoff = submission_backoff or Backoff(initial=2.0, maximum=60.0)
        self._blob_chunk_size = blob_chunk_size
        self._blob_window = blob_window
        self._follows: dict[str, _Follow] = {}
        self._follows_due: set[str] = set()
        self._follow_handle: asyncio.Handle | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._loop_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._store = store = LocalStore(self.path)
        withdrawn = set(store.withdrawn())
        for name in store.documents():
            self._open_replica(name, withdrawn=name in withdrawn)
        for name in self._initial_documents:
            self.open(name)
        self._outbox = {name: deque(seqs) for name, seqs in store.outbox().items()}
        self._rejected = [Rejection(*row) for row in store.rejected()]
        self._last_sync = store.last_synced()
        self._uploads = Uploads(
            store,
            self._signal,
            self._upload_complete,
            chunk_size=self._blob_chunk_size,
            window=self._blob_window,
        )
        self._submissions = Submissions(store, self._signal, self._submission_backoff, self._rng)
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._loop_task = self._tasks.create_task(self._sync_loop(), name=f"device-{self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        if self._channel is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._channel.close(1001, "device closing")
        assert self._tasks is not None
        await self._tasks.__aexit__(exc_type, exc, tb)
        if self._follow_handle is not None:
            self._follow_handle.cancel()
            self._follow_handle = None
        self._close_replicas()
        if self._store is not None:
            self.flush()
            self._store.close()
            self._store = None
        self._uploads = self._submissions = None

    # -- documents ---------------------------------------------------------------------------

    def open(self, name: str) -> Doc[Any]:
        """The replica of ``name``, created (empty) if the device does not hold it yet.

        Edit it with pycrdt as usual; every change is stored and synced. A
        document whose access the relay withdrew syncs again (the relay decides).
        The ``Doc`` object is replaced if the relay refuses a field write of it:
        fetch it again (or use :meth:`doc`) rather than keeping it for long.
        """
        replica = self._replicas.get(name)
        if replica is None:
            return self._open_replica(name).doc
        if replica.withdrawn:
            self._readmit(replica)
        return replica.doc

    def doc(self, name: str) -> Doc[Any]:
        """The replica of a document the device already holds; DeviceError otherwise."""
        replica = self._replicas.get(name)
        if replica is None:
            raise DeviceError(f"device {self.name!r} does not hold document {name!r}")
        return replica.doc

    @property
    def documents(self) -> list[str]:
        return sorted(self._replicas)

    def follow(self, document: str, names: Names) -> None:
        """Open ``document`` as a directory: after it syncs and whenever it changes, open
        every document ``names(doc)`` lists. A listed document whose access was withdrawn
        syncs again only once the directory stops listing it and lists it again.

        ``names`` is called with the directory's replica, outside any transaction; it
        must not raise (invalid document names it returns are skipped and logged).
        """
        self.open(document)
        follow = _Follow(names, set())
        self._follows[document] = follow
        follow.listed = set(self._listed(document, follow))
        self._refresh_follow(document)

    def _listed(self, directory: str, follow: _Follow) -> list[str]:
        listed: list[str] = []
        for name in follow.names(self._replicas[directory].doc):
            try:
                listed.append(validate_document_name(name))
            except InvalidDocumentName:
                log.warning("%s: %s lists an invalid document name %r", self.name, directory, name)
        return listed

    def _refresh_follow(self, directory: str) -> None:
        follow = self._follows.get(directory)
        if follow is None or directory not in self._replicas:
            return
        listed = self._listed(directory, follow)
        for name in listed:
            replica = self._replicas.get(name)
            if replica is None:
                self._open_replica(name)
            elif replica.withdrawn and name not in follow.listed:
                self._readmit(replica)
        follow.listed = set(listed)

    def _changed(self, name: str) -> None:
        if name in self._follows:
            self._follows_due.add(name)
            if self._follow_handle is None:
                self._follow_handle = asyncio.get_running_loop().call_soon(self._run_follows)

    def _run_follows(self) -> None:
        self._follow_handle = None
        due, self._follows_due = self._follows_due, set()
        if self._store is not None:
            for directory in sorted(due):
                self._refresh_follow(directory)

    # -- blobs -------------------------------------------------------------------------------

    def add_blob(self, document: str, data: bytes) -> str:
        """Store ``data`` on the device and queue its upload for ``document`` (which
        references it); return its sha256 (hex). Idempotent per document and blob;
        an upload that failed is queued again. DeviceError if the device does not
        hold ``document``."""
        self.doc(document)
        return self._uploads_or_raise().add(document, bytes(data))

    def blob(self, sha256: str) -> bytes | None:
        """The bytes of a blob stored on this device, or None."""
        return self.store.blob(sha256)

    def uploads(self, document: str | None = None) -> list[Upload]:
        """Every upload (of ``document``, or all), in the order they were queued."""
        return self._uploads_or_raise().all(document)

    def upload(self, document: str, sha256: str) -> Upload | None:
        return self._uploads_or_raise().get(document, sha256)

    def cancel_upload(self, document: str, sha256: str) -> bool:
        """Forget an upload (its bytes too, unless another upload needs them); False if
        there is none. An upload already complete stays on the relay."""
        return self._uploads_or_raise().remove(document, sha256)

    def retry_uploads(self, document: str | None = None) -> int:
        """Queue failed uploads (of ``document``, or all) again; return how many."""
        return self._uploads_or_raise().retry(document)

    def _upload_complete(self, document: str) -> None:
        if self._submissions is not None:
            self._submissions.uploads_done(document)

    # -- submissions ---------------------------------------------------------------------------

    def submit(self, document: str, body: dict[str, Any]) -> str:
        """Queue a submission of ``document`` with a JSON ``body``; return its key.

        It is stored at once and sent when the device is connected, the document
        is synced and its uploads are complete (see :class:`SubmissionStatus`).
        DeviceError if the device does not hold ``document`` or ``body`` is not JSON.
        """
        self.doc(document)
        return self._submissions_or_raise().add(document, body)

    def submission(self, key: str) -> SubmissionState:
        """The state of submission ``key``; DeviceError if the device has none."""
        state = self._submissions_or_raise().get(key)
        if state is None:
            raise DeviceError(f"device {self.name!r} has no submission {key!r}")
        return state

    def submissions(self, document: str | None = None) -> list[SubmissionState]:
        """Every submission (of ``document``, or all), oldest first."""
        return self._submissions_or_raise().all(document)

    async def wait_submission(self, key: str, timeout: float = 30.0) -> SubmissionState:
        """Wait for the final answer (accepted or rejected) to ``key``; TimeoutError after
        ``timeout`` seconds (a ``waiting`` submission keeps being retried meanwhile)."""
        async with asyncio.timeout(timeout):
            while not (state := self.submission(key)).final:
                await self._signal.wait()
        return state

    # -- the archive -----------------------------------------------------------------------------

    def archived(self, document: str | None = None) -> list[ArchivedUpdate]:
        """Local history moved aside when replicas were replaced, oldest first."""
        return [ArchivedUpdate(*row) for row in self.store.archived(document)]

    # -- status --------------------------------------------------------------------------------

    @property
    def status(self) -> DeviceStatus:
        uploads, submissions = self._uploads, self._submissions
        return DeviceStatus(
            online=self._online.is_set(),
            connected=self._link is not None,
            pending={name: len(self._outbox.get(name, ())) for name in self._replicas},
            synced={name: r.synced for name, r in self._replicas.items()},
            last_sync=self._last_sync,
            reconnects=self._reconnects,
            last_error=self._last_error,
            rejected=list(self._rejected),
            withdrawn=sorted(name for name, r in self._replicas.items() if r.withdrawn),
            uploads_pending=uploads.pending_counts() if uploads is not None else {},
            uploads_failed=uploads.failed() if uploads is not None else [],
            submissions_pending=submissions.pending_counts() if submissions is not None else {},
        )

    async def wait_for(self, predicate: Callable[[DeviceStatus], bool], timeout: float) -> None:
        """Wait until ``predicate(status)`` holds; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate(self.status):
                await self._signal.wait()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        """Wait until connected, every document synced, and every change acknowledged."""
        await self.wait_for(lambda status: status.in_sync, timeout)

    def go_offline(self) -> None:
        """Drop the connection and stay offline (edits keep working and queue up)."""
        self._online.clear()
        if self._link is not None:
            self._link.close()  # the writer closes the channel, the reader ends
        self._notify()

    def go_online(self) -> None:
        if self._connector is None:
            raise DeviceError("device has no connector: it can only work offline")
        self._online.set()
        self._notify()
