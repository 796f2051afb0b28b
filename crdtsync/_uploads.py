"""Blob uploads of a device: resumable, idempotent, one connection at a time.

Private; :class:`~crdtsync.device.Device` owns one :class:`Uploads`.

Each upload is a blob (stored in the device's file) and the document that
references it: the relay authorizes blob messages per document, so an upload
starts only once that document is open, synced and live on the connection
(``ready``). Per upload, on one connection:

1. BlobQuery; the relay answers BlobStatus with what it holds (``have``).
   COMPLETE ends it there: an upload the relay already has costs one query.
2. BlobPut chunks from ``have`` on, at most ``window`` unanswered at a time,
   so that the connection stays responsive for edits. Each chunk is answered
   with a BlobStatus; one whose ``have`` is not the end of its chunk (the relay
   lost or skipped bytes) makes the loop wait for the chunks in flight and go
   on from the last ``have`` the relay reported.
3. COMPLETE marks the upload ``uploaded``. REFUSED (the bytes did not hash to
   their name, or the blob is too large for the relay) restarts it once from
   0; a second REFUSED marks it ``failed`` with the reason.

A dropped connection cancels the loop; the next connection starts again with a
query, so it resumes from what the relay holds. Uploads run one after the
other, in the order they were queued; state changes are written to the file
before they show in the status.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ._device_types import Upload, UploadState
from ._link import DeviceLink, Signal
from .protocol import BlobState, BlobStatusReceived, SyncSession
from .store import LocalStore

__all__ = ["DEFAULT_CHUNK_SIZE", "DEFAULT_WINDOW", "Uploads"]

log = logging.getLogger("crdtsync.device")

DEFAULT_CHUNK_SIZE = 256 * 1024
DEFAULT_WINDOW = 4  # chunks in flight per upload


@dataclass(slots=True)
class _Row:
    document: str
    sha: str
    size: int
    state: UploadState
    restarts: int = 0
    reason: str | None = None

    def public(self) -> Upload:
        return Upload(self.document, self.sha, self.size, self.state, self.reason)


class _Aborted(Exception):
    """The document left the connection (or the upload was removed) mid-upload."""


class _Stalled(Exception):
    """The relay keeps answering without progress: leave the upload for the next connection."""


_MAX_STALLS = 3


class Uploads:
    """The device's uploads: the file's ``uploads`` table mirrored in memory."""

    def __init__(
        self,
        store: LocalStore,
        changed: Signal,
        on_complete: Callable[[str], None],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        if chunk_size < 1 or window < 1:
            raise ValueError("chunk_size and window must be at least 1")
        self._store = store
        self._changed = changed
        self._on_complete = on_complete
        self.chunk_size = chunk_size
        self.window = window
        self._rows: dict[tuple[str, str], _Row] = {}
        for document, sha, size, state, restarts, reason in store.uploads():
            self._rows[(document, sha)] = _Row(
                document, sha, size, UploadState(state), restarts, reason
            )
        self._answers: dict[tuple[str, str], asyncio.Queue[BlobStatusReceived | None]] = {}

    # -- what the device asks ------------------------------------------------------------------

    def add(self, document: str, data: bytes) -> str:
        """Store ``data`` and queue its upload for ``document``; return its sha256."""
        sha = hashlib.sha256(data).hexdigest()
        if self._store.add_blob(document, sha, data):
            self._rows.pop((document, sha), None)  # a failed one moves to the end, pending
            self._rows[(document, sha)] = _Row(document, sha, len(data), UploadState.PENDING)
            self._changed.notify()
        return sha

    def remove(self, document: str, sha: str) -> bool:
        """Forget the upload of ``sha`` for ``document``; False if there is none."""
        if self._rows.pop((document, sha), None) is None:
            return False
        self._store.remove_upload(document, sha)
        self._abort(document, sha)
        self._changed.notify()
        return True

    def retry(self, document: str | None = None) -> int:
        """Queue failed uploads (of ``document``, or all) again; return how many."""
        again = [
            row
            for row in self._rows.values()
            if row.state is UploadState.FAILED and document in (None, row.document)
        ]
        for row in again:
            self._set(row, UploadState.PENDING, restarts=0, reason=None)
        return len(again)

    def get(self, document: str, sha: str) -> Upload | None:
        row = self._rows.get((document, sha))
        return None if row is None else row.public()

    def all(self, document: str | None = None) -> list[Upload]:
        return [row.public() for row in self._rows.values() if document in (None, row.document)]

    def pending(self, document: str) -> bool:
        return any(
            row.document == document and row.state is UploadState.PENDING
            for row in self._rows.values()
        )

    def pending_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._rows.values():
            if row.state is UploadState.PENDING:
                counts[row.document] = counts.get(row.document, 0) + 1
        return counts

    def failed(self) -> list[Upload]:
        return [row.public() for row in self._rows.values() if row.state is UploadState.FAILED]

    # -- what the connection tells -------------------------------------------------------------

    def on_status(self, event: BlobStatusReceived) -> None:
        """A BlobStatus arrived; statuses nobody waits for (stale ones) are dropped."""
        answers = self._answers.get((event.document, event.sha256))
        if answers is not None:
            answers.put_nowait(event)

    def document_closed(self, document: str) -> None:
        """``document`` left the connection: stop waiting for answers about it."""
        for (name, _), answers in self._answers.items():
            if name == document:
                answers.put_nowait(None)

    def _abort(self, document: str, sha: str) -> None:
        answers = self._answers.get((document, sha))
        if answers is not None:
            answers.put_nowait(None)

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self, link: DeviceLink, ready: Callable[[str], bool]) -> None:
        """Upload while the connection lasts (cancelled when it ends)."""
        stalled: set[tuple[str, str]] = set()
        while True:
            row = next(
                (
                    row
                    for key, row in self._rows.items()
                    if row.state is UploadState.PENDING
                    and ready(row.document)
                    and key not in stalled
                ),
                None,
            )
            if row is None:
                await self._changed.wait()
                continue
            key = (row.document, row.sha)
            self._answers[key] = asyncio.Queue()
            try:
                await self._upload(link, row, self._answers[key])
            except _Aborted:
                pass  # the document closed, or the upload was removed: picked up again later
            except _Stalled:
                stalled.add(key)
            finally:
                del self._answers[key]

    async def _upload(
        self, link: DeviceLink, row: _Row, answers: asyncio.Queue[BlobStatusReceived | None]
    ) -> None:
        document, sha, size = row.document, row.sha, row.size
        if not link.send(document, lambda s: s.send_blob_query(document, sha, size)):
            raise _Aborted
        status = await self._answer(answers)
        stalled = 0
        while row.state is UploadState.PENDING:
            if status.state == BlobState.COMPLETE:
                self._set(row, UploadState.UPLOADED)
                self._on_complete(document)
                return
            if status.state == BlobState.REFUSED:
                self._refused(row)
                return  # a restart begins with a fresh query
            before = status.have
            status = await self._send_from(link, row, before, answers)
            stalled = (
                stalled + 1 if status.state == BlobState.PARTIAL and status.have <= before else 0
            )
            if stalled >= _MAX_STALLS:
                log.warning("upload of %s for %s makes no progress", sha, document)
                raise _Stalled

    async def _send_from(
        self,
        link: DeviceLink,
        row: _Row,
        offset: int,
        answers: asyncio.Queue[BlobStatusReceived | None],
    ) -> BlobStatusReceived:
        """Send chunks from ``offset`` on until an answer ends the run: COMPLETE, REFUSED,
        or a ``have`` that is not where its chunk ended. Every chunk still in flight is
        answered before this returns the answer that tells where things stand."""
        document, sha, size = row.document, row.sha, row.size
        ends: deque[int] = deque()
        sent_any = False
        while True:
            while len(ends) < self.window and (offset < size or not sent_any):
                chunk = self._store.blob_chunk(sha, offset, self.chunk_size) if size else b""
                if not link.send(document, _blob_put(document, sha, size, offset, chunk)):
                    raise _Aborted
                offset += len(chunk)
                ends.append(offset)
                sent_any = True
            status = await self._answer(answers)
            expected = ends.popleft()
            if (
                status.state == BlobState.PARTIAL
                and status.have == expected
                and (ends or offset < size)
            ):
                continue
            for _ in ends:
                later = await self._answer(answers)
                if status.state == BlobState.PARTIAL or later.state == BlobState.COMPLETE:
                    status = later
            return status

    async def _answer(
        self, answers: asyncio.Queue[BlobStatusReceived | None]
    ) -> BlobStatusReceived:
        status = await answers.get()
        if status is None:
            raise _Aborted
        return status

    def _refused(self, row: _Row) -> None:
        if row.restarts < 1:
            log.warning("relay refused blob %s of %s: starting over", row.sha, row.document)
            self._set(row, UploadState.PENDING, restarts=row.restarts + 1)
            return
        reason = (
            f"the relay refused the blob twice ({row.size} bytes): larger than it accepts, "
            "or the bytes do not hash to its name"
        )
        log.error("upload of %s for %s failed: %s", row.sha, row.document, reason)
        self._set(row, UploadState.FAILED, reason=reason)

    def _set(
        self,
        row: _Row,
        state: UploadState,
        *,
        restarts: int | None = None,
        reason: str | None = None,
    ) -> None:
        restarts = row.restarts if restarts is None else restarts
        self._store.update_upload(row.document, row.sha, state.value, restarts, reason)
        row.state, row.restarts, row.reason = state, restarts, reason
        self._changed.notify()


def _blob_put(
    document: str, sha: str, size: int, offset: int, data: bytes
) -> Callable[[SyncSession], bytes]:
    def build(session: SyncSession) -> bytes:
        return session.send_blob_put(document, sha, size, offset, data)

    return build
