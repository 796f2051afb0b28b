"""Small applications a test relay runs: access and field rules, and submission judges.

Both answer submissions in the shape the relay's application gives devices::

    {"status": "accepted"|"rejected"|"waiting", "key", "record_id", "content_hash",
     "recorded_at", "policy_version", "missing": [...], "waiting_for": [...], "reason"}

Final answers (accepted, rejected) are recorded with the relay's store, so a
retry with the same key gets the same answer; ``waiting`` is never recorded.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Sequence
from typing import Any

from pycrdt import Doc, Map, MapEvent

from crdtsync import Forbidden, Principal, Relay, SubmissionRecord, UpdateWatch, blob_key
from crdtsync.exceptions import InvalidDocumentName
from crdtsync.service import FieldService
from crdtsync.store import BlobStore, RecordStore
from crdtsync.workorder import (
    DocumentKind,
    Role,
    WorkOrder,
    WorkOrderEditor,
    check_changes,
    content_hash,
    effective_policy,
    missing_steps,
    parse_document_name,
)


def answer(
    status: str,
    key: str,
    *,
    record_id: int | None = None,
    content: str | None = None,
    policy_version: int | None = None,
    missing: Sequence[dict[str, Any]] = (),
    waiting_for: Sequence[str] = (),
    reason: str = "",
) -> str:
    return json.dumps(
        {
            "status": status,
            "key": key,
            "record_id": record_id,
            "content_hash": content,
            "recorded_at": dt.datetime.now(dt.UTC).isoformat() if record_id else None,
            "policy_version": policy_version,
            "missing": list(missing),
            "waiting_for": list(waiting_for),
            "reason": reason,
        }
    )


class _Judge:
    """Records final answers with the relay's store; counts judgements."""

    def __init__(self) -> None:
        self.relay: Relay | None = None
        self.judged = 0  # final answers given (each recorded once)
        self.asked: list[tuple[str, str, dict[str, Any]]] = []  # (document, key, body)

    def bind(self, relay: Relay) -> None:
        self.relay = relay

    @property
    def records(self) -> RecordStore:
        assert self.relay is not None
        assert isinstance(self.relay.store, RecordStore)
        return self.relay.store

    async def missing_blobs(self, tenant: str, shas: Sequence[str]) -> list[str]:
        assert self.relay is not None
        assert isinstance(self.relay.store, BlobStore)
        keys = {blob_key(tenant, sha): sha for sha in shas}
        return [keys[key] for key in await self.relay.store.missing_blobs(list(keys))]

    async def record(self, name: str, key: str, accepted: bool, result: str, doc: Doc[Any]) -> str:
        self.judged += 1
        record = SubmissionRecord(name, key, accepted, result, "", doc.get_update(), 0.0)
        return (await self.records.add_submission(record)).result

    async def recorded(self, name: str, key: str) -> str | None:
        found = await self.records.find_submission(name, key)
        return None if found is None else found.result


class MapWatch:
    """Records (root, key) for each key a transaction writes in the given root maps
    (``fields`` and ``locked`` unless told); other roots are unknown."""

    def __init__(self, doc: Doc[Any], roots: tuple[str, ...] = ("fields", "locked")) -> None:
        self.ROOTS = roots
        self.changes: list[tuple[str, str]] = []
        # pycrdt keeps an observer only while its root object lives: hold on to the roots.
        self._roots = [(root, doc.get(root, type=Map)) for root in roots]
        self._subscriptions = [shared.observe(self._recorder(root)) for root, shared in self._roots]

    def _recorder(self, root: str) -> Any:
        def record(event: MapEvent[Any]) -> None:
            self.changes.extend((root, key) for key in event.keys)

        return record

    def collect(self) -> Sequence[Any]:
        changes, self.changes = self.changes, []
        return changes

    def unknown_roots(self, doc: Doc[Any]) -> list[str]:
        return [root for root in doc if root not in self.ROOTS]

    def close(self) -> None:
        for (_, shared), subscription in zip(self._roots, self._subscriptions, strict=True):
            shared.unobserve(subscription)


class MapRules(_Judge):
    """Generic documents with a ``fields`` map (devices write it) and a ``locked`` map
    (devices may not). Devices may not read ``secret/*``.

    A submission waits while ``fields.blob`` names a blob the relay lacks; otherwise it
    takes the next status of ``script`` (default: accepted).
    """

    def __init__(self) -> None:
        super().__init__()
        self.script: deque[str] = deque()

    async def authorize(self, principal: Principal, document: str, *, write: bool) -> None:
        if principal.role == "device" and document.startswith("secret/"):
            raise Forbidden(f"{principal.subject} may not open {document}", document=document)

    def watch(self, tenant: str, document: str, doc: Doc[Any]) -> MapWatch:
        return MapWatch(doc)

    def check(
        self, principal: Principal, document: str, changes: Sequence[Any], doc: Doc[Any]
    ) -> list[str]:
        if principal.role != "device":
            return []
        return [f"{root}.{key}" for root, key in changes if root == "locked"]

    async def submit(
        self, principal: Principal, document: str, key: str, body: str, doc: Doc[Any]
    ) -> str:
        self.asked.append((document, key, json.loads(body)))
        name = principal.namespace + document
        recorded = await self.recorded(name, key)
        if recorded is not None:
            return recorded
        sha = doc.get("fields", type=Map).get("blob")
        if isinstance(sha, str):
            missing = await self.missing_blobs(principal.tenant, [sha])
            if missing:
                return answer("waiting", key, waiting_for=missing, reason="blobs missing")
        status = self.script.popleft() if self.script else "accepted"
        if status == "waiting":
            return answer("waiting", key, reason="not yet")
        result = answer(status, key, record_id=self.judged + 1, reason=f"{status} by the test")
        return await self.record(name, key, status == "accepted", result, doc)


class WorkOrderRules(_Judge):
    """The work-order domain: a device reads its own planning, the settings (read-only)
    and the work orders in ``assigned[technician]``; field rules from ``check_changes``;
    submissions judged with ``missing_steps`` under the technician's effective policy."""

    def __init__(self) -> None:
        super().__init__()
        self.assigned: dict[str, set[str]] = {}

    async def authorize(self, principal: Principal, document: str, *, write: bool) -> None:
        if principal.role != "device":
            return
        try:
            kind, ident = parse_document_name(document)
        except InvalidDocumentName:
            raise Forbidden(f"no such document {document!r}", document=document) from None
        tech = principal.subject
        allowed = {
            DocumentKind.SETTINGS: not write,
            DocumentKind.PLANNING: not write and ident == tech,
            DocumentKind.WORKORDER: ident in self.assigned.get(tech, set()),
            DocumentKind.OFFICE: False,
        }[kind]
        if not allowed:
            what = "write" if write else "read"
            raise Forbidden(f"{tech} may not {what} {document}", document=document)

    def watch(self, tenant: str, document: str, doc: Doc[Any]) -> UpdateWatch | None:
        # The relay's own adapter of the domain's watch, as FieldService uses it.
        return FieldService().watch(tenant, document, doc)

    def check(
        self, principal: Principal, document: str, changes: Sequence[Any], doc: Doc[Any]
    ) -> list[str]:
        role = {"device": Role.DEVICE, "service": Role.RELAY}.get(principal.role, Role.OFFICE)
        violations = check_changes(changes, role, technician=principal.subject or None)
        return [violation.field for violation in violations]

    async def submit(
        self, principal: Principal, document: str, key: str, body: str, doc: Doc[Any]
    ) -> str:
        assert self.relay is not None
        self.asked.append((document, key, json.loads(body)))
        name = principal.namespace + document
        recorded = await self.recorded(name, key)
        if recorded is not None:
            return recorded
        workorder, _ = WorkOrder.from_doc(doc)
        settings = await self.relay.read("settings", tenant=principal.tenant)
        policy = effective_policy(settings, principal.subject)
        shas = sorted({a.sha256 for a in workorder.attachments.values()})
        waiting = await self.missing_blobs(principal.tenant, shas)
        if waiting:
            return answer("waiting", key, waiting_for=waiting, reason="blobs missing")
        steps = [step.model_dump(mode="json") for step in missing_steps(workorder, policy)]
        status = "rejected" if steps else "accepted"
        result = answer(
            status,
            key,
            record_id=self.judged + 1,
            content=content_hash(doc),
            policy_version=policy.version or None,
            missing=steps,
            reason="required steps missing" if steps else "",
        )
        result = await self.record(name, key, not steps, result, doc)
        if not steps:
            await self.relay.edit(
                document,
                lambda d: WorkOrderEditor(d, actor="relay", role=Role.RELAY).mark_sent(key),
                tenant=principal.tenant,
            )
        return result
