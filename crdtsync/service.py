"""The field-service rules a relay enforces: who may open what, who may write which field,
and how a work order is sent.

:class:`FieldService` is the :class:`~crdtsync.access.Application` of a work-order
relay (``Relay(store, application=FieldService())``).

Access, per principal of a tenant:

* office: every document of its tenant; viewer: the same, read-only (the relay
  refuses a viewer's writes before asking);
* device (a technician): ``settings`` (read-only), its own ``planning/{tech}``
  (read-only), and the work orders that planning lists; never ``office/*``.
  Taking a work order off a planning closes it at once on the technician's open
  connections (the relay's ``withdraw``). A work order *released* from a
  planning (reassigned) stays reachable for ``release_retention`` (a week by
  default), so that a device that was offline can still send the changes it
  made before; the device itself makes no new ones to it.

Field rules: every update to a ``wo/*`` document is checked by
:func:`~crdtsync.workorder.check_changes` for the sender's role, a device's
under its technician's policy in force; an update with a violation is refused
as a whole.

Sending: the relay answers a submission after everything the device sent before
it is committed. A work order is **accepted** when every blob it references is
on the relay and it meets the policy in force now; the record (a snapshot of the
document, its content hash) is stored once per idempotency key, then the relay
marks the work order sent. The device's policy version is checked too and
reported, but the current policy wins: a device can claim any version, so the
relay cannot let an older one lower the bar, and a device sends only when online,
by which time it has synced the current settings and checked against them.
Missing blobs make the answer **waiting** (not recorded: the device retries once
its uploads are done); anything else missing makes it **rejected** (recorded,
with the list). Answers are JSON (see :func:`answer`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pycrdt import Doc

from .access import Principal
from .exceptions import Forbidden, InvalidDocumentName, WorkOrderError
from .relay import blob_key, split_name
from .store import RecordStore, SubmissionRecord
from .workorder import (
    SETTINGS_DOCUMENT,
    DocumentKind,
    FieldChange,
    Planning,
    Policy,
    Role,
    WorkOrder,
    WorkOrderEditor,
    WorkOrderWatch,
    check_changes,
    content_hash,
    effective_policy,
    missing_steps,
    parse_document_name,
    planning_document,
    policy_version,
    workorder_document,
)

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["FieldService", "answer"]

log = logging.getLogger("crdtsync.service")

_ROLES = {
    "device": Role.DEVICE,
    "office": Role.OFFICE,
    "viewer": Role.VIEWER,
    "service": Role.RELAY,
}


def answer(status: str, key: str, **fields: Any) -> str:
    """The JSON answer to a submission: status accepted, rejected or waiting, and details."""
    body: dict[str, Any] = {
        "status": status,
        "key": key,
        "record_id": None,
        "content_hash": None,
        "recorded_at": None,
        "policy_version": None,
        "missing": [],
        "waiting_for": [],
        "reason": "",
    }
    body.update(fields)
    return json.dumps(body, sort_keys=True)


class _Watch:
    """The relay's view of a :class:`WorkOrderWatch` (unknown roots come with the changes)."""

    def __init__(self, doc: Doc[Any]) -> None:
        self._watch = WorkOrderWatch(doc)

    def collect(self) -> list[FieldChange]:
        return self._watch.collect()

    def unknown_roots(self, doc: Doc[Any]) -> list[str]:
        return []  # collect() reports new roots, and check_changes refuses them

    def close(self) -> None:
        self._watch.close()


class FieldService:
    """Work-order rules for a relay. One instance per relay; state is per tenant."""

    def __init__(
        self,
        *,
        release_retention: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.release_retention = release_retention
        self._clock = clock or (lambda: datetime.now(UTC))
        self._relay: Relay | None = None
        self._plannings: dict[tuple[str, str], Planning] = {}
        self._settings: dict[str, Doc[Any]] = {}
        self._sending: dict[str, asyncio.Lock] = {}

    @property
    def relay(self) -> Relay:
        if self._relay is None:
            raise RuntimeError("FieldService is not bound to a running relay")
        return self._relay

    def bind(self, relay: Relay) -> None:
        self._relay = relay
        relay.on_commit.append(self._committed)

    # -- access --------------------------------------------------------------------------------

    async def authorize(self, principal: Principal, document: str, *, write: bool) -> None:
        if principal.role in ("office", "viewer", "service"):
            return
        try:
            kind, ident = parse_document_name(document)
        except InvalidDocumentName as exc:
            raise Forbidden(
                f"{document!r} is not a document devices use", document=document
            ) from exc
        technician = principal.subject
        if kind is DocumentKind.SETTINGS or kind is DocumentKind.PLANNING:
            if kind is DocumentKind.PLANNING and ident != technician:
                raise Forbidden("a device sees only its own planning", document=document)
            if write:
                raise Forbidden(f"{kind.value} is read-only for devices", document=document)
            return
        if kind is DocumentKind.WORKORDER and ident in await self.assigned(principal):
            await self._load_settings(principal.tenant)
            return
        raise Forbidden(f"{document} is not on the planning of {technician}", document=document)

    async def assigned(self, principal: Principal, *, released: bool = True) -> frozenset[str]:
        """The work-order ids ``principal``'s technician may reach now: those on their
        planning, and (unless ``released`` is False) released ones until their retention
        ends."""
        key = (principal.tenant, principal.subject)
        if key not in self._plannings:
            doc = await self.relay.read(planning_document(principal.subject), tenant=key[0])
            self._plannings.setdefault(key, Planning.from_doc(doc)[0])
        planning = self._plannings[key]
        return self._reachable(planning) if released else frozenset(planning.active_ids())

    def _reachable(self, planning: Planning) -> frozenset[str]:
        return planning.current_ids(self._clock(), self.release_retention)

    async def _load_settings(self, tenant: str) -> Doc[Any]:
        if tenant not in self._settings:
            doc = await self.relay.read(SETTINGS_DOCUMENT, tenant=tenant)
            self._settings.setdefault(tenant, doc)
        return self._settings[tenant]

    def _committed(self, entries: list[tuple[str, bytes]]) -> None:
        """Follow plannings and settings as they change (their rooms are loaded: read them)."""
        for stored in dict.fromkeys(name for name, _ in entries):
            tenant, name = split_name(stored)
            try:
                kind, ident = parse_document_name(name)
            except InvalidDocumentName:
                continue
            live = self.relay.live_document(stored)
            if live is None:
                continue
            if kind is DocumentKind.SETTINGS:
                copy: Doc[Any] = Doc()
                copy.apply_update(live.get_update())
                self._settings[tenant] = copy
            elif kind is DocumentKind.PLANNING and ident is not None:
                self._planning_changed(tenant, ident, Planning.from_doc(live)[0])

    def _planning_changed(self, tenant: str, technician: str, planning: Planning) -> None:
        previous = self._plannings.get((tenant, technician))
        self._plannings[(tenant, technician)] = planning
        if previous is None:
            return
        # Everything the planning listed before that is not reachable now goes (also a
        # release whose retention ended meanwhile).
        before, now = frozenset(previous.workorders), self._reachable(planning)
        if before <= now:
            return
        gone = {workorder_document(ident) for ident in before - now}

        def allowed(principal: Principal, name: str) -> bool:
            mine = principal.tenant == tenant and principal.subject == technician
            return not (mine and principal.role == "device" and name in gone)

        closed = self.relay.withdraw(allowed, "unassigned from this technician")
        log.info(
            "unassigned %s from %s@%s (%d open closed)", sorted(gone), technician, tenant, closed
        )

    # -- field rules ---------------------------------------------------------------------------

    def watch(self, tenant: str, document: str, doc: Doc[Any]) -> _Watch | None:
        try:
            kind, _ = parse_document_name(document)
        except InvalidDocumentName:
            return None
        return _Watch(doc) if kind is DocumentKind.WORKORDER else None

    def check(
        self, principal: Principal, document: str, changes: Sequence[Any], doc: Doc[Any]
    ) -> list[str]:
        role = _ROLES[principal.role]
        policy: Policy | None = None
        technician = principal.subject if role is Role.DEVICE else None
        if technician is not None:
            policy = self._policy(principal.tenant, technician)
        violations = check_changes(changes, role, policy, technician=technician)
        return [violation.field for violation in violations]

    def _policy(self, tenant: str, technician: str | None) -> Policy:
        settings = self._settings.get(tenant)
        if settings is None:
            return Policy()
        try:
            return effective_policy(settings, technician)
        except WorkOrderError as exc:  # a damaged settings document: the defaults, and say so
            log.error("settings of tenant %r do not give a policy: %s", tenant, exc)
            return Policy()

    # -- sending -------------------------------------------------------------------------------

    async def submit(
        self, principal: Principal, document: str, key: str, body: str, doc: Doc[Any]
    ) -> str:
        store = self.relay.store
        if not isinstance(store, RecordStore):
            return answer("rejected", key, reason="this relay's store keeps no records")
        stored = principal.namespace + document
        lock = self._sending.setdefault(stored, asyncio.Lock())
        async with lock:  # one judgement at a time per work order: one accepted record
            return await self._judge(principal, document, stored, key, body, doc, store)

    async def _judge(
        self,
        principal: Principal,
        document: str,
        stored: str,
        key: str,
        body: str,
        doc: Doc[Any],
        store: RecordStore,
    ) -> str:
        previous = await store.find_submission(stored, key)
        if previous is not None:
            if previous.accepted:  # the answer was lost; make sure the mark went in too
                await self._mark_sent(principal, document, json.loads(previous.result))
            return previous.result
        try:
            kind, _ = parse_document_name(document)
        except InvalidDocumentName:
            kind = None
        if kind is not DocumentKind.WORKORDER:
            return answer("rejected", key, reason="only work orders are sent")
        workorder, problems = WorkOrder.from_doc(doc)
        if problems:
            log.warning("work order %s has problems: %s", stored, problems)
        if workorder.locked:
            reason = f"the work order is already {workorder.status.value}"
            return await self._record(
                stored, key, doc, workorder, answer("rejected", key, reason=reason)
            )
        shas = sorted({attachment.sha256 for attachment in workorder.attachments.values()})
        tenant = principal.tenant
        absent = await self.relay.missing_blobs([blob_key(tenant, sha) for sha in shas])
        if absent:
            waiting = [sha for sha in shas if blob_key(tenant, sha) in absent]
            return answer(
                "waiting", key, waiting_for=waiting, reason="attachments not uploaded yet"
            )
        return await self._decide(principal, document, stored, key, body, doc, workorder)

    async def _decide(
        self,
        principal: Principal,
        document: str,
        stored: str,
        key: str,
        body: str,
        doc: Doc[Any],
        workorder: WorkOrder,
    ) -> str:
        """Judge ``workorder`` (every blob it references is stored) against the policy in
        force, record the answer, and mark the work order sent when it is accepted."""
        tenant = principal.tenant
        settings = await self._load_settings(tenant)
        policy = self._policy(tenant, principal.subject or None)
        steps = missing_steps(workorder, policy)
        claimed = _claimed_version(body)
        older = policy_version(settings, claimed) if claimed and claimed != policy.version else None
        extra = {
            "policy_version": policy.version,
            "device_policy_version": claimed,
            "missing_under_device_policy": (
                [s.model_dump(mode="json") for s in missing_steps(workorder, older)]
                if older
                else []
            ),
        }
        if steps:
            missing = [step.model_dump(mode="json") for step in steps]
            reason = "required steps are missing"
            result = answer("rejected", key, missing=missing, reason=reason, **extra)
            return await self._record(stored, key, doc, workorder, result)
        result = answer(
            "accepted",
            key,
            record_id=f"s-{uuid.uuid4().hex[:20]}",
            content_hash=content_hash(workorder),
            recorded_at=datetime.now(UTC).isoformat(),
            **extra,
        )
        final = await self._record(stored, key, doc, workorder, result, accepted=True)
        await self._mark_sent(principal, document, json.loads(final))
        return final

    async def _record(
        self,
        stored: str,
        key: str,
        doc: Doc[Any],
        workorder: WorkOrder,
        result: str,
        *,
        accepted: bool = False,
    ) -> str:
        store = self.relay.store
        assert isinstance(store, RecordStore)
        record = SubmissionRecord(
            stored, key, accepted, result, content_hash(workorder), doc.get_update(), time.time()
        )
        return (await store.add_submission(record)).result

    async def _mark_sent(self, principal: Principal, document: str, result: dict[str, Any]) -> None:
        submission_id = str(result["record_id"])

        def mark(doc: Doc[Any]) -> None:
            WorkOrderEditor(doc, actor="relay", role=Role.RELAY).mark_sent(submission_id)

        await self.relay.edit(document, mark, tenant=principal.tenant)


def _claimed_version(body: str) -> int | None:
    try:
        value = json.loads(body).get("policy_version")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
