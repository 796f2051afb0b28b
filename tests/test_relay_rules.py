"""The relay's rules: tenants, roles, an application's access and field rules, blobs,
submissions, the relay as a writer, and withdrawing access from open connections."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import pytest
from pycrdt import Doc, Map

from crdtsync import (
    CloseCode,
    ErrorCode,
    Forbidden,
    MemoryStore,
    Principal,
    Relay,
    SQLiteStore,
)
from crdtsync._digest import state_digest
from crdtsync.protocol import (
    AckReceived,
    BlobState,
    BlobStatusReceived,
    DocumentClosed,
    ErrorReceived,
    ResumeAnswered,
    ResumeEntry,
    SubmissionAnswered,
    UpdateReceived,
)
from crdtsync.store import build_doc

from .apps import MapWatch
from .test_relay import DOC, RawPeer, is_ack, running

DEVICE = Principal(role="device", tenant="acme", subject="anna", credential="c-anna")
OFFICE = Principal(role="office", tenant="acme", credential="c-office")


def map_update(root: str, key: str, value: Any, doc: Doc[Any] | None = None) -> bytes:
    doc = doc if doc is not None else Doc()
    before = doc.get_state()
    doc.get(root, type=Map)[key] = value
    return doc.get_update(before)


class Rules:
    """Devices may not read ``secret/*`` and may not write the ``closed`` map."""

    def __init__(self) -> None:
        self.relay: Relay | None = None

    def bind(self, relay: Relay) -> None:
        self.relay = relay

    async def authorize(self, principal: Principal, document: str, *, write: bool) -> None:
        if principal.role == "device" and document.startswith("secret/"):
            raise Forbidden(f"{principal.subject} may not open {document}", document=document)

    def watch(self, tenant: str, document: str, doc: Doc[Any]) -> MapWatch:
        return MapWatch(doc, ("open", "closed"))

    def check(
        self, principal: Principal, document: str, changes: Sequence[Any], doc: Doc[Any]
    ) -> list[str]:
        if principal.role != "device":
            return []
        return [f"{root}.{key}" for root, key in changes if root == "closed"]

    async def submit(
        self, principal: Principal, document: str, key: str, body: str, doc: Doc[Any]
    ) -> str:
        fields = doc.get("open", type=Map).to_py()
        return json.dumps({"status": "accepted", "key": key, "fields": fields, "body": body})


def errors(events: Sequence[Any]) -> list[tuple[str, ErrorCode | int]]:
    return [(e.document, e.code) for e in events if isinstance(e, ErrorReceived)]


async def refused(peer: RawPeer, name: str = DOC) -> list[Any]:
    """Events up to the Close of ``name`` (the relay withdrew it)."""
    return await peer.recv_events(lambda e: isinstance(e, DocumentClosed) and e.document == name)


# -- tenants and roles -----------------------------------------------------------------------------


async def test_a_tenant_reaches_only_its_own_documents() -> None:
    store = MemoryStore()
    async with running(store) as h:
        acme = h.connect(principal=OFFICE)
        await acme.open()
        await acme.push_all(DOC, [map_update("open", "a", 1)])
        other = h.connect(principal=Principal(tenant="globex"))
        replica = await other.open()
        assert replica.get("open", type=Map).to_py() == {}
        assert build_doc(await store.load(f"t/acme/{DOC}")).get("open", type=Map)["a"] == 1
        assert (await store.load(DOC)).empty


async def test_without_a_tenant_no_one_names_a_tenant_document() -> None:
    async with running(MemoryStore()) as h:
        peer = h.connect()
        await peer.channel.send(peer.session.open_document("t/acme/wo-1", Doc().get_state()))
        events = await refused(peer, "t/acme/wo-1")
        assert errors(events) == [("t/acme/wo-1", ErrorCode.FORBIDDEN)]
        await peer.open("wo-2")  # the connection carries on with other documents


async def test_a_viewer_reads_but_may_not_write() -> None:
    store = MemoryStore()
    async with running(store) as h:
        office = h.connect(principal=OFFICE)
        await office.open()
        await office.push_all(DOC, [map_update("open", "a", 1)])
        viewer = h.connect(principal=Principal(role="viewer", tenant="acme"))
        assert (await viewer.open()).get("open", type=Map).to_py() == {"a": 1.0}
        await viewer.push(DOC, 1, map_update("open", "b", 2))
        events = await refused(viewer)
        assert errors(events) == [(DOC, ErrorCode.FORBIDDEN)]
        assert not any(isinstance(e, AckReceived) for e in events)
        assert build_doc(await store.load(f"t/acme/{DOC}")).get("open", type=Map).to_py() == {
            "a": 1.0
        }


# -- an application's rules ------------------------------------------------------------------------


async def test_a_refused_read_closes_that_document_only() -> None:
    async with running(MemoryStore(), application=Rules()) as h:
        device = h.connect(principal=DEVICE)
        await device.channel.send(device.session.open_document("secret/1", Doc().get_state()))
        events = await refused(device, "secret/1")
        assert errors(events) == [("secret/1", ErrorCode.FORBIDDEN)]
        await device.open()
        await device.push_all(DOC, [map_update("open", "a", 1)])


@pytest.mark.parametrize("make_store", [MemoryStore, None], ids=["memory", "sqlite"])
async def test_an_update_writing_a_forbidden_field_is_refused_kept_aside_and_never_applied(
    make_store: Any, tmp_path: Any
) -> None:
    store = make_store() if make_store else SQLiteStore(tmp_path / "relay.db")
    async with running(store, application=Rules()) as h:
        office = h.connect(principal=OFFICE)
        await office.open()
        base: Doc[Any] = Doc()
        await office.push_all(DOC, [map_update("closed", "price", 10, base)])
        device = h.connect(principal=DEVICE)
        replica = await device.open()
        bad = map_update("closed", "price", 0, replica)
        await device.push(DOC, 7, bad)
        events = await refused(device)
        assert [(e.code, e.seq) for e in events if isinstance(e, ErrorReceived)] == [
            (ErrorCode.FORBIDDEN_FIELD, 7)
        ]
        message = next(e.message for e in events if isinstance(e, ErrorReceived))
        assert "closed.price" in message
        document = await h.relay.read(DOC, tenant="acme")
        assert document.get("closed", type=Map)["price"] == 10
        await office.assert_quiet(lambda e: isinstance(e, UpdateReceived))
        rejected = await store.rejections(f"t/acme/{DOC}")  # type: ignore[attr-defined]
        assert [(r.reason, r.update) for r in rejected] == [("closed.price", bad)]
        assert "device:anna@acme" in rejected[0].who
        # The room was rebuilt; the office keeps working on it.
        await office.push_all(DOC, [map_update("open", "ok", 1, base)], first_seq=2)
        document = await h.relay.read(DOC, tenant="acme")
        assert document.get("open", type=Map)["ok"] == 1
        assert document.get("closed", type=Map)["price"] == 10
    assert h.relay.stats.rejected_updates == 1


async def test_a_device_update_to_an_allowed_field_goes_through() -> None:
    async with running(MemoryStore(), application=Rules()) as h:
        device = h.connect(principal=DEVICE)
        await device.open()
        await device.push_all(DOC, [map_update("open", "notes", "fine")])
        assert (await h.relay.read(DOC, tenant="acme")).get("open", type=Map)["notes"] == "fine"


async def test_an_update_creating_an_unknown_root_is_refused() -> None:
    async with running(MemoryStore(), application=Rules()) as h:
        office = h.connect(principal=OFFICE)
        await office.open()
        await office.push(DOC, 1, map_update("stray", "x", 1))
        events = await refused(office)
        assert errors(events) == [(DOC, ErrorCode.FORBIDDEN_FIELD)]
        assert "stray" not in list((await h.relay.read(DOC, tenant="acme")).keys())


# -- withdrawing access ----------------------------------------------------------------------------


async def test_withdraw_closes_open_documents_a_principal_may_no_longer_read() -> None:
    async with running(MemoryStore()) as h:
        device = h.connect(principal=DEVICE)
        await device.open("wo-1")
        await device.open("wo-2")
        closed = h.relay.withdraw(lambda who, name: name == "wo-1", "unassigned")
        assert closed == 1
        events = await refused(device, "wo-2")
        assert errors(events) == [("wo-2", ErrorCode.FORBIDDEN)]
        await device.push_all("wo-1", [map_update("open", "a", 1)])


async def test_disconnect_cuts_the_connections_of_a_revoked_credential() -> None:
    async with running(MemoryStore()) as h:
        revoked = h.connect(principal=DEVICE)
        other = h.connect(principal=OFFICE)
        await revoked.open()
        await other.open()
        assert h.relay.disconnect(lambda who: who.credential == "c-anna", "revoked") == 1
        events, closed = await revoked.recv_until_closed()
        assert closed.code == CloseCode.UNAUTHORIZED
        assert errors(events) == [("", ErrorCode.UNAUTHORIZED)]
        await other.push_all(DOC, [map_update("open", "a", 1)])


# -- the relay as a writer -------------------------------------------------------------------------


async def test_edit_applies_as_the_relay_fans_out_and_commits() -> None:
    store = MemoryStore()
    async with running(store) as h:
        device = h.connect(principal=DEVICE)
        replica = await device.open()

        def plan(doc: Doc[Any]) -> str:
            doc.get("open", type=Map)["planned"] = "2026-12-01"
            return "done"

        assert await h.relay.edit(DOC, plan, tenant="acme") == "done"
        stored = build_doc(await store.load(f"t/acme/{DOC}"))
        assert stored.get("open", type=Map)["planned"] == "2026-12-01"
        for event in await device.recv_events(lambda e: isinstance(e, UpdateReceived)):
            if isinstance(event, UpdateReceived):
                replica.apply_update(event.update)
        assert replica.get("open", type=Map)["planned"] == "2026-12-01"


async def test_read_returns_a_copy_of_loaded_and_unloaded_documents() -> None:
    async with running(MemoryStore()) as h:
        await h.relay.edit("wo-9", lambda doc: doc.get("open", type=Map).update({"a": 1}))
        copy = await h.relay.read("wo-9")
        copy.get("open", type=Map)["b"] = 2
        assert (await h.relay.read("wo-9")).get("open", type=Map).to_py() == {"a": 1.0}
        assert (await h.relay.read("never")).get("open", type=Map).to_py() == {}


# -- blobs -----------------------------------------------------------------------------------------


async def blob_status(peer: RawPeer) -> BlobStatusReceived:
    events = await peer.recv_events(lambda e: isinstance(e, BlobStatusReceived))
    status = events[-1]
    assert isinstance(status, BlobStatusReceived)
    return status


async def test_a_blob_uploads_in_chunks_resumes_and_is_kept_per_tenant() -> None:
    data = os.urandom(50_000)
    sha = hashlib.sha256(data).hexdigest()
    store = MemoryStore()
    async with running(store) as h:
        device = h.connect(principal=DEVICE)
        await device.open()
        await device.send_raw(device.session.send_blob_put(DOC, sha, len(data), 0, data[:20_000]))
        status = await blob_status(device)
        assert (status.have, status.state) == (20_000, BlobState.PARTIAL)
        await device.send_raw(device.session.send_blob_query(DOC, sha, len(data)))
        assert (await blob_status(device)).have == 20_000
        await device.send_raw(
            device.session.send_blob_put(DOC, sha, len(data), 20_000, data[20_000:])
        )
        status = await blob_status(device)
        assert (status.have, status.state) == (len(data), BlobState.COMPLETE)
        assert await store.get_blob(f"t/acme/blobs/{sha}") == data

        stranger = h.connect(principal=Principal(tenant="globex"))
        await stranger.open()
        await stranger.send_raw(stranger.session.send_blob_query(DOC, sha, len(data)))
        assert (await blob_status(stranger)).state == BlobState.PARTIAL  # not theirs


async def test_a_blob_whose_bytes_do_not_match_its_name_is_refused() -> None:
    data = os.urandom(1000)
    sha = hashlib.sha256(b"something else").hexdigest()
    async with running(MemoryStore()) as h:
        device = h.connect(principal=DEVICE)
        await device.open()
        await device.send_raw(device.session.send_blob_put(DOC, sha, len(data), 0, data))
        assert (await blob_status(device)).state == BlobState.REFUSED


# -- submissions -----------------------------------------------------------------------------------


async def submission_answer(peer: RawPeer) -> dict[str, Any]:
    events = await peer.recv_events(lambda e: isinstance(e, SubmissionAnswered))
    answer = events[-1]
    assert isinstance(answer, SubmissionAnswered)
    result: dict[str, Any] = json.loads(answer.body)
    return result


async def test_a_submission_is_judged_after_what_preceded_it_is_committed() -> None:
    async with running(MemoryStore(), application=Rules()) as h:
        device = h.connect(principal=DEVICE)
        await device.open()
        await device.push(DOC, 1, map_update("open", "hours", 3))
        await device.send_raw(device.session.send_submit(DOC, "sub-1", 1, '{"v": 1}'))
        events = await device.recv_events(lambda e: isinstance(e, SubmissionAnswered))
        assert any(is_ack(1)(e) for e in events)  # the Ack came before the answer
        answer = events[-1]
        assert isinstance(answer, SubmissionAnswered)
        assert json.loads(answer.body) == {
            "status": "accepted",
            "key": "sub-1",
            "fields": {"hours": 3.0},
            "body": '{"v": 1}',
        }


async def test_without_an_application_submissions_are_refused() -> None:
    async with running(MemoryStore()) as h:
        device = h.connect()
        await device.open()
        await device.send_raw(device.session.send_submit(DOC, "k", 0, "{}"))
        assert (await submission_answer(device))["status"] == "rejected"


# -- resuming --------------------------------------------------------------------------------------


async def test_a_resume_answers_in_sync_stale_and_refused_documents() -> None:
    async with running(MemoryStore(), application=Rules()) as h:
        writer = h.connect(principal=OFFICE)
        await writer.open("wo-same")
        held: Doc[Any] = Doc()
        await writer.push_all("wo-same", [map_update("open", "a", 1, held)])
        device = h.connect(principal=DEVICE)
        entries = [
            ResumeEntry("wo-same", state_digest(held), 5),  # in sync, with outbox seq 5
            ResumeEntry("wo-other", state_digest(Doc()) + b"x", 0),  # differs
            ResumeEntry("secret/1", state_digest(Doc()), 0),  # refused
        ]
        await device.send_raw(device.session.resume(entries))
        events = await device.recv_events(lambda e: isinstance(e, AckReceived))
    answered = [(e.document, e.in_sync) for e in events if isinstance(e, ResumeAnswered)]
    assert answered == [("wo-same", True), ("wo-other", False)]
    assert errors(events) == [("secret/1", ErrorCode.FORBIDDEN)]
    assert [e.seq for e in events if isinstance(e, AckReceived)] == [5]  # after the commit
    assert not any(isinstance(e, UpdateReceived) for e in events)  # no content for wo-same
