"""Submissions of a device: queued in the file, sent when they can be judged, answered once.

Private; :class:`~crdtsync.device.Device` owns one :class:`Submissions`.

A submission asks the relay to judge a document and record it (idempotent by
its key). It goes out, as Submit with the document's newest outbox sequence,
only when the document is open, synced and live on the connection (so every
local change before it travels ahead of it, on the same connection) and the
document has no blob upload pending (the relay cannot accept a document whose
blobs it lacks). Answers:

* ``accepted`` / ``rejected`` are final: stored, never sent again.
* ``waiting``: the relay lacks referenced blobs. The same key goes out again as
  soon as an upload for that document completes, otherwise after a backoff.
* No answer (the connection dropped after sending): the submission stays
  ``sent`` and goes out again, same key, on the next connection; the relay
  answers a retry with the answer it recorded.

An answer that is not readable JSON with a known status counts as ``waiting``
(retried later, with the same key). Every state change is written to the file
before it shows, so all of this survives restarts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ._device_types import Backoff, SubmissionState, SubmissionStatus
from ._link import DeviceLink, Signal
from .exceptions import DeviceError
from .store import LocalStore

__all__ = ["Submissions"]

log = logging.getLogger("crdtsync.device")

_ANSWERED = {
    "accepted": SubmissionStatus.ACCEPTED,
    "rejected": SubmissionStatus.REJECTED,
    "waiting": SubmissionStatus.WAITING,
}


@dataclass(slots=True)
class _Retry:
    attempts: int = 0
    at: float = 0.0  # loop time from which a waiting submission may go again


class Submissions:
    """The device's submissions: the file's ``submissions`` table mirrored in memory."""

    def __init__(
        self, store: LocalStore, changed: Signal, backoff: Backoff, rng: random.Random
    ) -> None:
        self._store = store
        self._changed = changed
        self._backoff = backoff
        self._rng = rng
        self._items: dict[str, SubmissionState] = {}
        for key, document, body, created_at, status, answer in store.submissions():
            self._items[key] = SubmissionState(
                key,
                document,
                SubmissionStatus(status),
                json.loads(body),
                created_at,
                _parse(answer)[1] if answer is not None else None,
            )
        self._in_flight: set[str] = set()  # sent on the current connection, unanswered
        self._retries: dict[str, _Retry] = {}

    # -- what the device asks ------------------------------------------------------------------

    def add(self, document: str, body: dict[str, Any]) -> str:
        """Queue a submission of ``document`` with JSON ``body``; return its new key."""
        try:
            text = json.dumps(body, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise DeviceError(f"a submission body must be plain JSON: {exc}") from exc
        key = uuid.uuid4().hex
        created_at = time.time()
        self._store.add_submission(key, document, text, created_at)
        self._items[key] = SubmissionState(
            key, document, SubmissionStatus.QUEUED, json.loads(text), created_at
        )
        self._changed.notify()
        return key

    def get(self, key: str) -> SubmissionState | None:
        return self._items.get(key)

    def all(self, document: str | None = None) -> list[SubmissionState]:
        """Submissions (of ``document``, or all), oldest first."""
        return [s for s in self._items.values() if document in (None, s.document)]

    def pending_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self._items.values():
            if not item.final:
                counts[item.document] = counts.get(item.document, 0) + 1
        return counts

    # -- what the connection tells -------------------------------------------------------------

    def answered(self, document: str, key: str, body: str) -> None:
        """The relay answered ``key``."""
        self._in_flight.discard(key)
        item = self._items.get(key)
        if item is None or item.document != document:
            log.warning("answer for unknown submission %s of %s", key, document)
            return
        if item.final:
            return  # a duplicate answer; the first one stands
        status, answer = _parse(body)
        if status is SubmissionStatus.WAITING:
            retry = self._retries.setdefault(key, _Retry())
            delay = self._backoff.delay(retry.attempts, self._rng)
            retry.attempts += 1
            retry.at = asyncio.get_running_loop().time() + delay
        else:
            self._retries.pop(key, None)
        self._set(item, status, answer)

    def uploads_done(self, document: str) -> None:
        """An upload for ``document`` completed: waiting submissions of it may go now."""
        for key, item in self._items.items():
            if item.document == document and item.status is SubmissionStatus.WAITING:
                self._retries.setdefault(key, _Retry()).at = 0.0
        self._changed.notify()

    def connection_lost(self) -> None:
        """Whatever was sent and not answered goes again on the next connection."""
        self._in_flight.clear()

    # -- the loop ----------------------------------------------------------------------------------

    async def run(
        self,
        link: DeviceLink,
        ready: Callable[[str], bool],
        uploading: Callable[[str], bool],
        newest_seq: Callable[[str], int],
    ) -> None:
        """Send what may go while the connection lasts (cancelled when it ends)."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            next_retry: float | None = None
            for item in list(self._items.values()):
                if item.final or item.key in self._in_flight:
                    continue
                retry = self._retries.get(item.key)
                if item.status is SubmissionStatus.WAITING and retry is not None and retry.at > now:
                    next_retry = retry.at if next_retry is None else min(next_retry, retry.at)
                    continue
                if ready(item.document) and not uploading(item.document):
                    self._send(link, item, newest_seq(item.document))
            await self._changed.wait(None if next_retry is None else next_retry - now)

    def _send(self, link: DeviceLink, item: SubmissionState, seq: int) -> None:
        body = json.dumps(item.body, sort_keys=True)
        key, document = item.key, item.document
        if link.send(document, lambda s: s.send_submit(document, key, seq, body)):
            self._in_flight.add(key)
            if item.status is not SubmissionStatus.SENT:
                self._set(item, SubmissionStatus.SENT, None)

    def _set(
        self, item: SubmissionState, status: SubmissionStatus, answer: dict[str, Any] | None
    ) -> None:
        self._store.set_submission(
            item.key, status.value, None if answer is None else json.dumps(answer)
        )
        self._items[item.key] = replace(
            item, status=status, answer=answer if answer is not None else item.answer
        )
        self._changed.notify()


def _parse(body: str) -> tuple[SubmissionStatus, dict[str, Any]]:
    """The status an answer gives and the answer as a dict (an unreadable one: waiting)."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return SubmissionStatus.WAITING, {
            "status": "waiting",
            "reason": f"unreadable answer from the relay: {body[:200]!r}",
        }
    status = _ANSWERED.get(str(answer.get("status")))
    if status is None:
        return SubmissionStatus.WAITING, {
            **answer,
            "reason": f"unknown status in the relay's answer: {answer.get('status')!r}",
        }
    return status, answer
