"""A scripted technician: a real device replica (:class:`crdtsync.FieldDevice`) with its own
SQLite file, connected through its own :class:`~client_demo.flaky.FlakyLink`.

Every edit goes through the typed API (``FieldDevice.editor(id)`` and
``attach_photo`` / ``send``) and, once the API accepted it, is written to the
shared :class:`~client_demo.ledger.Ledger` with what identifies it (entry
ids, inserted text, sha256, submission key). An edit the API refuses raises
and is not in the ledger.

The technician's connectivity is the link's: :meth:`Technician.go_offline` takes
the link down (no signal: connections drop and new ones are refused, the device
keeps retrying on its own), :meth:`Technician.go_online` brings it back. The
device itself is never told: it finds out, like a real one. :meth:`restart`
closes the device and opens it again on the same file (the app was killed and
restarted); it must be called from the task that called :meth:`start`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import random
from pathlib import Path

from crdtsync import Backoff, DeviceStatus, FieldDevice, SubmissionBlocked, websocket_connector
from crdtsync.workorder import Status

from .day import DayClock, EventLog, Pace, until
from .flaky import FlakyLink
from .ledger import Edit, EditKind, Ledger
from .relay import DemoError

__all__ = ["Technician", "photo_bytes", "signature_strokes"]


def photo_bytes(rng: random.Random) -> bytes:
    """A made-up JPEG of 20-60 KB (the relay stores blobs as bytes; it never decodes them)."""
    body = rng.randbytes(rng.randint(20_000, 60_000))
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + body + b"\xff\xd9"


def signature_strokes(rng: random.Random) -> list[list[tuple[float, float, float]]]:
    """Two or three pen strokes of normalised points with increasing times."""
    strokes: list[list[tuple[float, float, float]]] = []
    for index in range(rng.randint(2, 3)):
        x, y, t = 0.1 + 0.3 * index, rng.uniform(0.3, 0.7), 0.0
        stroke = []
        for _ in range(rng.randint(8, 20)):
            x = min(1.0, x + rng.uniform(0.005, 0.03))
            y = min(1.0, max(0.0, y + rng.uniform(-0.05, 0.05)))
            t += rng.uniform(8, 25)
            stroke.append((round(x, 4), round(y, 4), round(t, 1)))
        strokes.append(stroke)
    return strokes


class Technician:
    """Technician ``name`` (technician id ``ident``) on device ``device_name``."""

    def __init__(
        self,
        name: str,
        ident: str,
        device_name: str,
        path: Path,
        link: FlakyLink,
        token: str,
        *,
        ledger: Ledger,
        log: EventLog,
        clock: DayClock,
        pace: Pace,
        rng: random.Random,
    ) -> None:
        self.name, self.ident, self.device_name = name, ident, device_name
        self.path, self.link, self.token = path, link, token
        self.ledger, self.log, self.clock, self.pace, self.rng = ledger, log, clock, pace, rng
        self._field: FieldDevice | None = None
        self._stack = contextlib.AsyncExitStack()
        self.restarts = 0
        self.restarting = False

    # -- the device ------------------------------------------------------------------------------

    @property
    def field(self) -> FieldDevice:
        if self._field is None:
            raise DemoError(f"{self.name}'s device is not running")
        return self._field

    @property
    def running(self) -> bool:
        return self._field is not None

    @property
    def status(self) -> DeviceStatus | None:
        return self._field.device.status if self._field is not None else None

    async def start(self) -> None:
        """Open the device on its file; it connects (through the link) by itself."""
        fast = self.pace.beat == 0
        field = FieldDevice(
            self.path,
            websocket_connector(f"{self.link.url}/sync", token=self.token),
            self.ident,
            clock=self.clock.now,
            backoff=Backoff(initial=0.05, maximum=0.5 if fast else 1.5),
            submission_backoff=Backoff(initial=0.2, maximum=1.0),
            seed=self.rng.randrange(2**32),
            name=self.device_name,
        )
        self._field = await self._stack.enter_async_context(field)

    async def close(self) -> None:
        await self._stack.aclose()
        self._field = None

    async def restart(self) -> int:
        """Close the device and open it again on the same file; return how many changes were
        still unsent when it closed (they are in the file and go out after the restart)."""
        unsent = self.field.device.status.total_pending
        self.restarting = True
        await self.close()
        self.log.add(self.name, f"{self.device_name} shuts down with {unsent} unsent changes")
        await self.pace.pause(1)
        await self.start()
        self.restarting = False
        self.restarts += 1
        after = self.field.device.status.total_pending
        self.log.add(
            self.name, f"{self.device_name} starts again: {after} unsent changes in its file"
        )
        return unsent

    def go_offline(self) -> None:
        self.link.down()

    def go_online(self) -> None:
        self.link.up()

    # -- waiting ---------------------------------------------------------------------------------

    def holds(self, wo: str) -> bool:
        """True when the work order is on the device's planning and its content synced."""
        return self._field is not None and any(
            item.workorder.id == wo for item in self._field.workorders()
        )

    async def wait_synced(self, what: str = "") -> float:
        """Until connected, every document synced and every change acknowledged, and no
        uploads or submissions waiting; returns the seconds it took."""

        def settled() -> bool:
            status = self.status
            return (
                status is not None
                and status.in_sync
                and not any(status.uploads_pending.values())
                and not any(status.submissions_pending.values())
            )

        return await until(settled, what or f"{self.name} in sync", self.pace.timeout)

    async def wait_holds(self, wo: str) -> None:
        await until(lambda: self.holds(wo), f"{self.name} holds {wo}", self.pace.timeout)

    # -- editing through the typed API -----------------------------------------------------------

    def _record(self, wo: str, kind: EditKind, key: str = "", value: object = None) -> None:
        self.ledger.add(Edit(self.name, wo, kind, key, value, self.device_name))

    def begin(self, wo: str) -> None:
        """Status in progress (not in the ledger: sending makes it ``sent`` anyway)."""
        self.field.editor(wo).set_status(Status.IN_PROGRESS)

    def start_timer(self, wo: str) -> None:
        self.field.editor(wo).start_timer()

    def stop_timer(self, wo: str, remark: str = "") -> str:
        entry = self.field.editor(wo).stop_timer(remark=remark)
        self._record(wo, EditKind.HOURS, entry, self.ident)
        return entry

    def add_hours(self, wo: str, minutes: int, remark: str = "") -> str:
        """Register ``minutes`` of work ending now (story time)."""
        end = self.clock.now()
        start = end - dt.timedelta(minutes=minutes)
        entry = self.field.editor(wo).add_hours(
            date=start.date(), start=start, end=end, remark=remark
        )
        self._record(wo, EditKind.HOURS, entry, self.ident)
        return entry

    def use_material(self, wo: str, article: str, quantity: float, description: str = "") -> str:
        entry = self.field.editor(wo).add_material(
            article=article, quantity=quantity, description=description
        )
        self._record(wo, EditKind.MATERIAL, entry, article)
        return entry

    def note(self, wo: str, text: str) -> str:
        """Append a line to the notes; the exact text inserted goes to the ledger."""
        line = f"[{self.clock.label} {self.name}] {text}\n"
        self.field.editor(wo).append_notes(line)
        self._record(wo, EditKind.NOTE, "", line)
        return line

    def tick(self, wo: str, title: str) -> None:
        workorder, _ = self.field.workorder(wo)
        task = next((t for t in workorder.tasks.values() if t.title == title), None)
        if task is None:
            raise DemoError(f"{wo} has no task {title!r}")
        self.field.editor(wo).tick_task(task.id)
        self._record(wo, EditKind.TASK, task.id, title)

    def answer(self, wo: str, question: str, value: object) -> None:
        self.field.editor(wo).answer(question, value)
        self._record(wo, EditKind.ANSWER, question, value)

    def photo(self, wo: str, name: str, caption: str = "") -> str:
        """Take a photo: stored on the device, its upload queued, referenced in the work order."""
        data = photo_bytes(self.rng)
        sha = hashlib.sha256(data).hexdigest()
        self.field.attach_photo(wo, data, name, "image/jpeg", caption)
        self.ledger.photos[sha] = data
        self._record(wo, EditKind.PHOTO, sha, name)
        return sha

    def sign(self, wo: str, signer: str) -> None:
        self.field.editor(wo).sign(signature_strokes(self.rng), signer_name=signer)
        self._record(wo, EditKind.SIGNATURE, "", signer)

    def complete(self, wo: str) -> None:
        self.field.editor(wo).set_status(Status.COMPLETED)

    def send(self, wo: str) -> str | None:
        """Try to send: the key when it is queued, None when the device refuses (the missing
        steps go to the event log)."""
        try:
            key = self.field.send(wo)
        except SubmissionBlocked as blocked:
            codes = ", ".join(step.code for step in blocked.missing)
            self.log.add(self.name, f"cannot send {wo}: missing [{codes}]", "warn")
            for step in blocked.missing:
                self.log.add(self.name, f"  - {step.message}", "warn")
            return None
        self._record(wo, EditKind.SENT, key, self.field.policy().version)
        return key

    async def wait_accepted(self, key: str) -> None:
        """Until the relay's final answer to ``key``; DemoError unless it is accepted."""
        state = await self.field.device.wait_submission(key, self.pace.timeout)
        answer = state.answer or {}
        if answer.get("status") != "accepted":
            raise DemoError(f"{self.name}'s submission {key} was {answer}")
