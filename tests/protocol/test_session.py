"""The sans-I/O sync session: a device and a relay joined only by bytes, no loop, no socket."""

from __future__ import annotations

import typing

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtsync.exceptions import (
    CloseCode,
    DecodeError,
    ErrorCode,
    FrameTooLarge,
    InvalidDocumentName,
    ProtocolError,
    TooManyDocuments,
    UnexpectedMessage,
)
from crdtsync.protocol.events import (
    AckReceived,
    AwarenessReceived,
    ConnectionFailed,
    DocumentClosed,
    ErrorReceived,
    Event,
    ResumeAnswered,
    ResumeRequested,
    StatusReceived,
    Synced,
    SyncRequested,
    UpdateReceived,
)
from crdtsync.protocol.messages import (
    Ack,
    Awareness,
    BlobPut,
    BlobQuery,
    BlobStatus,
    Close,
    Error,
    Frame,
    Message,
    Push,
    QueryAwareness,
    Resume,
    Resumed,
    ResumeEntry,
    Submit,
    SubmitResult,
    SyncStatus,
    SyncStep1,
    SyncStep2,
    Update,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)
from crdtsync.protocol.session import (
    TRANSITIONS,
    DocState,
    Role,
    SyncSession,
    validate_document_name,
)

DOC = "doc1"
SV = b"\x01\x05\x02"  # any bytes: the session never interprets state vectors
UPD = b"\x01\x02\x03\x04"

#: A minimal valid instance of every message class.
INSTANCES: dict[type, Message] = {
    SyncStep1: SyncStep1(b"\x00"),
    SyncStep2: SyncStep2(b"\x00\x00"),
    Update: Update(b"\x00\x00"),
    Awareness: Awareness(b"\x00"),
    QueryAwareness: QueryAwareness(),
    Close: Close(1000, ""),
    SyncStatus: SyncStatus(True),
    Push: Push(1, b"\x00\x00"),
    Ack: Ack(1),
    Error: Error(int(ErrorCode.STORE_FAILURE), 0, "x"),
    Submit: Submit("k1", 3, "{}"),
    SubmitResult: SubmitResult("k1", "{}"),
    BlobPut: BlobPut("0" * 64, 4, 0, b"ab"),
    BlobQuery: BlobQuery("0" * 64, 4),
    BlobStatus: BlobStatus("0" * 64, 2, 0),
}


def frame(message: Message, document: str = DOC) -> bytes:
    return encode_frame(document, message)


def only_failure(events: list[Event]) -> ConnectionFailed:
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, ConnectionFailed), events
    return event


def error_frame(event: ConnectionFailed) -> tuple[str, Error]:
    decoded = decode_frame(event.data)
    assert isinstance(decoded.message, Error)
    return decoded.document, decoded.message


def opened_pair() -> tuple[SyncSession, SyncSession]:
    """A device and a relay with DOC open on both sides."""
    device, relay = SyncSession(Role.DEVICE), SyncSession(Role.RELAY)
    relay.receive_frame(device.open_document(DOC, SV))
    device.receive_frame(relay.send_step2(DOC, UPD))
    assert device.state(DOC) is relay.state(DOC) is DocState.OPEN
    return device, relay


def session_in(role: Role, state: DocState, document: str = DOC) -> SyncSession | None:
    """A session with ``document`` in ``state``, reached through the public API only."""
    session = SyncSession(role)
    if state is DocState.CLOSED:
        return session
    if role is Role.DEVICE:
        session.open_document(document, SV)
        if state is DocState.OPEN:
            assert session.receive_frame(frame(SyncStep2(b"\x00\x00"), document))
    elif state is DocState.OPEN:
        session.receive_frame(frame(SyncStep1(SV), document))
    else:
        return None  # the relay has no OPENING state (see test_relay_never_opening)
    assert session.state(document) is state
    assert session.failure is None
    return session


# -- the happy path, device against relay ------------------------------------------------------


def test_full_conversation() -> None:
    device, relay = SyncSession(Role.DEVICE), SyncSession(Role.RELAY)
    assert device.state(DOC) is relay.state(DOC) is DocState.CLOSED

    hello = device.open_document(DOC, SV)
    assert decode_frame(hello) == Frame(DOC, SyncStep1(SV))
    assert device.state(DOC) is DocState.OPENING
    assert device.open_documents == [DOC]

    assert relay.receive_frame(hello) == [SyncRequested(DOC, SV, first=True)]
    assert relay.state(DOC) is DocState.OPEN
    assert relay.open_documents == [DOC]

    step2, step1 = relay.send_step2(DOC, UPD), relay.send_step1(DOC, b"\x00")
    assert device.receive_frame(step2) == [UpdateReceived(DOC, UPD, None, step2=True), Synced(DOC)]
    assert device.state(DOC) is DocState.OPEN
    assert device.receive_frame(step1) == [SyncRequested(DOC, b"\x00", first=False)]

    # The device answers the relay's state vector; the relay gets an update, no Synced.
    answer = device.send_step2(DOC, b"\x07\x07")
    assert relay.receive_frame(answer) == [UpdateReceived(DOC, b"\x07\x07", None, step2=True)]

    push = device.send_push(DOC, 42, b"edit")
    assert decode_frame(push) == Frame(DOC, Push(42, b"edit"))
    assert relay.receive_frame(push) == [UpdateReceived(DOC, b"edit", 42)]

    ack = relay.send_ack(DOC, 42)
    assert device.receive_frame(ack) == [AckReceived(DOC, 42)]

    assert relay.receive_frame(device.send_update(DOC, b"u1")) == [UpdateReceived(DOC, b"u1", None)]
    assert device.receive_frame(relay.send_update(DOC, b"u2")) == [UpdateReceived(DOC, b"u2", None)]
    assert device.receive_frame(relay.send_status(DOC)) == [StatusReceived(DOC, True)]
    assert device.receive_frame(relay.send_status(DOC, False)) == [StatusReceived(DOC, False)]
    assert relay.receive_frame(device.send_awareness(DOC, b"aw")) == [AwarenessReceived(DOC, b"aw")]
    assert device.receive_frame(relay.send_awareness(DOC, b"aw2")) == [
        AwarenessReceived(DOC, b"aw2")
    ]
    assert relay.receive_frame(frame(QueryAwareness())) == [AwarenessReceived(DOC, None)]

    bye = device.close_document(DOC, 1000, "bye")
    assert device.state(DOC) is DocState.CLOSED
    assert device.open_documents == []
    assert relay.receive_frame(bye) == [DocumentClosed(DOC, 1000, "bye")]
    assert relay.state(DOC) is DocState.CLOSED
    assert relay.open_documents == []
    assert device.failure is None
    assert relay.failure is None


def test_second_step2_does_not_resynchronise() -> None:
    device, relay = opened_pair()
    assert device.receive_frame(relay.send_step2(DOC, b"more")) == [
        UpdateReceived(DOC, b"more", None, step2=True)
    ]
    assert device.state(DOC) is DocState.OPEN


def test_device_may_get_step1_and_updates_before_step2() -> None:
    device, relay = SyncSession(Role.DEVICE), SyncSession(Role.RELAY)
    relay.receive_frame(device.open_document(DOC, SV))
    assert device.receive_frame(relay.send_step1(DOC, SV)) == [SyncRequested(DOC, SV, False)]
    assert device.receive_frame(relay.send_update(DOC, b"u")) == [UpdateReceived(DOC, b"u", None)]
    assert device.receive_frame(relay.send_ack(DOC, 3)) == [AckReceived(DOC, 3)]
    assert device.state(DOC) is DocState.OPENING
    # A device may push while still opening.
    assert relay.receive_frame(device.send_push(DOC, 1, b"p")) == [UpdateReceived(DOC, b"p", 1)]


def test_relay_closes_a_document() -> None:
    device, relay = opened_pair()
    bye = relay.close_document(DOC, 4403, "forbidden")
    assert relay.state(DOC) is DocState.CLOSED
    assert device.receive_frame(bye) == [DocumentClosed(DOC, 4403, "forbidden")]
    assert device.state(DOC) is DocState.CLOSED
    # Both sides can start over: the relay sees a first SyncStep1 again.
    assert relay.receive_frame(device.open_document(DOC, SV)) == [SyncRequested(DOC, SV, True)]


def test_repeated_step1_on_relay_is_not_first() -> None:
    _, relay = opened_pair()
    assert relay.receive_frame(frame(SyncStep1(b"\x00"))) == [
        SyncRequested(DOC, b"\x00", first=False)
    ]


def test_documents_are_independent() -> None:
    device, relay = SyncSession(Role.DEVICE), SyncSession(Role.RELAY)
    relay.receive_frame(device.open_document("a", SV))
    relay.receive_frame(device.open_document("b", SV))
    device.receive_frame(relay.send_step2("a", UPD))
    assert device.state("a") is DocState.OPEN
    assert device.state("b") is DocState.OPENING
    relay.receive_frame(device.close_document("a"))
    assert relay.state("a") is DocState.CLOSED
    assert relay.state("b") is DocState.OPEN
    assert relay.receive_frame(device.send_push("b", 1, b"x")) == [UpdateReceived("b", b"x", 1)]


def test_error_frames_reach_the_device() -> None:
    device, relay = opened_pair()
    data = relay.send_error(DOC, ErrorCode.STORE_FAILURE, "disk full", seq=9)
    assert device.receive_frame(data) == [
        ErrorReceived(DOC, ErrorCode.STORE_FAILURE, 9, "disk full")
    ]
    assert device.state(DOC) is DocState.OPEN
    # Connection-level errors use the empty document name.
    data = relay.send_error("", ErrorCode.SHUTTING_DOWN, "bye")
    assert device.receive_frame(data) == [ErrorReceived("", ErrorCode.SHUTTING_DOWN, 0, "bye")]
    # Unknown codes are passed through as plain ints.
    assert device.receive_frame(frame(Error(777, 0, "?"))) == [ErrorReceived(DOC, 777, 0, "?")]
    assert device.failure is None


def test_send_error_truncates_long_messages() -> None:
    data = SyncSession(Role.RELAY).send_error(DOC, ErrorCode.FORBIDDEN, "x" * 5000)
    assert decode_frame(data) == Frame(DOC, Error(int(ErrorCode.FORBIDDEN), 0, "x" * 1000))


def _text(doc: pycrdt.Doc) -> str:
    return str(doc.get("t", type=pycrdt.Text))


def test_pycrdt_documents_converge_through_the_sessions() -> None:
    """Real CRDT content moved by the sessions' bytes alone."""
    device_doc, relay_doc = pycrdt.Doc(client_id=1), pycrdt.Doc(client_id=2)
    device_doc["t"] = pycrdt.Text("device ")
    relay_doc["t"] = pycrdt.Text("relay ")
    device, relay = SyncSession(Role.DEVICE), SyncSession(Role.RELAY)

    def apply(doc: pycrdt.Doc, events: list[Event]) -> list[Event]:
        for event in events:
            if isinstance(event, UpdateReceived):
                doc.apply_update(event.update)
        return events

    [request] = relay.receive_frame(device.open_document(DOC, device_doc.get_state()))
    assert isinstance(request, SyncRequested)
    apply(
        device_doc,
        device.receive_frame(relay.send_step2(DOC, relay_doc.get_update(request.state_vector))),
    )
    [back] = device.receive_frame(relay.send_step1(DOC, relay_doc.get_state()))
    assert isinstance(back, SyncRequested)
    apply(
        relay_doc,
        relay.receive_frame(device.send_step2(DOC, device_doc.get_update(back.state_vector))),
    )
    assert _text(device_doc) == _text(relay_doc)
    assert set(_text(device_doc).split()) == {"device", "relay"}

    before = device_doc.get_state()
    shared = device_doc.get("t", type=pycrdt.Text)
    shared += "edit"
    events = apply(
        relay_doc, relay.receive_frame(device.send_push(DOC, 1, device_doc.get_update(before)))
    )
    assert events == [UpdateReceived(DOC, device_doc.get_update(before), 1)]
    assert _text(relay_doc) == _text(device_doc)
    assert device.receive_frame(relay.send_ack(DOC, 1)) == [AckReceived(DOC, 1)]


# -- protocol violations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "message", [Update(UPD), Push(5, UPD), SyncStep2(UPD), Awareness(b"a"), QueryAwareness()]
)
def test_relay_refuses_messages_before_step1(message: Message) -> None:
    relay = SyncSession(Role.RELAY)
    failed = only_failure(relay.receive_frame(frame(message)))
    error = failed.error
    assert isinstance(error, UnexpectedMessage)
    name = type(message).__name__
    assert str(error) == f"relay cannot receive {name} for document {DOC!r} in state closed"
    assert error.document == DOC
    assert error.code is ErrorCode.UNEXPECTED_MESSAGE
    assert error.close_code is CloseCode.PROTOCOL_ERROR
    document, sent = error_frame(failed)
    assert document == DOC
    assert sent.error_code is ErrorCode.UNEXPECTED_MESSAGE
    assert sent.message == str(error)
    assert relay.failure is error
    assert relay.state(DOC) is DocState.CLOSED
    # A failed session refuses all further input, even valid frames.
    assert relay.receive_frame(frame(SyncStep1(SV))) == []
    assert relay.receive_frame(b"garbage") == []
    assert relay.state(DOC) is DocState.CLOSED


@pytest.mark.parametrize("opened", [False, True])
@pytest.mark.parametrize("message", [Ack(1), Error(int(ErrorCode.FORBIDDEN), 0, "no")])
def test_relay_refuses_ack_and_error(message: Message, opened: bool) -> None:
    relay = session_in(Role.RELAY, DocState.OPEN if opened else DocState.CLOSED)
    assert relay is not None
    failed = only_failure(relay.receive_frame(frame(message)))
    assert isinstance(failed.error, UnexpectedMessage)
    assert type(message).__name__ in str(failed.error)
    assert ("open" if opened else "closed") in str(failed.error)
    assert failed.error.close_code is CloseCode.PROTOCOL_ERROR
    assert relay.failure is failed.error
    assert relay.receive_frame(frame(Update(UPD))) == []


def test_relay_refuses_connection_level_error() -> None:
    relay = SyncSession(Role.RELAY)
    failed = only_failure(relay.receive_frame(frame(Error(1, 0, "x"), document="")))
    assert isinstance(failed.error, UnexpectedMessage)
    assert error_frame(failed)[0] == ""


def test_device_refuses_push_and_unsolicited_messages() -> None:
    device, _ = opened_pair()
    failed = only_failure(device.receive_frame(frame(Push(1, UPD))))
    assert isinstance(failed.error, UnexpectedMessage)
    assert str(failed.error).startswith("device cannot receive Push")
    assert device.receive_frame(frame(Ack(1))) == []

    device = SyncSession(Role.DEVICE)
    failed = only_failure(device.receive_frame(frame(SyncStep2(UPD), document="never-opened")))
    assert str(failed.error) == (
        "device cannot receive SyncStep2 for document 'never-opened' in state closed"
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"\x04doc1", b"\x04doc1\x2a", b"\x04doc1\x65", b"\x04doc1\x65\x01\x00", b"\x80\x00"],
)
def test_malformed_frame_fails_the_connection(data: bytes) -> None:
    relay = SyncSession(Role.RELAY)
    failed = only_failure(relay.receive_frame(data))
    assert isinstance(failed.error, DecodeError)
    assert failed.error.close_code is CloseCode.PROTOCOL_ERROR
    _, sent = error_frame(failed)
    assert sent.error_code is ErrorCode.MALFORMED_FRAME
    assert relay.receive_frame(frame(SyncStep1(SV))) == []


def test_malformed_frame_error_names_the_document() -> None:
    relay = session_in(Role.RELAY, DocState.OPEN)
    assert relay is not None
    failed = only_failure(relay.receive_frame(b"\x04doc1\x2a"))
    assert failed.error.document == DOC
    document, sent = error_frame(failed)
    assert document == DOC
    assert "unknown message type 42" in sent.message


def test_frame_too_large() -> None:
    limit = 64
    update = b"x" * (limit - len(frame(Push(1, b""))))
    ok = frame(Push(1, update))
    assert len(ok) == limit
    relay = SyncSession(Role.RELAY, max_frame_size=limit)
    relay.receive_frame(frame(SyncStep1(SV)))
    assert relay.receive_frame(ok) == [UpdateReceived(DOC, update, 1)]  # exactly at the limit

    failed = only_failure(relay.receive_frame(ok + b"\x00"))
    assert isinstance(failed.error, FrameTooLarge)
    assert failed.error.code is ErrorCode.FRAME_TOO_LARGE
    assert failed.error.close_code is CloseCode.MESSAGE_TOO_BIG
    assert failed.error.close_code == 1009
    _, sent = error_frame(failed)
    assert sent.error_code is ErrorCode.FRAME_TOO_LARGE


def test_frame_too_large_is_refused_before_decoding() -> None:
    relay = SyncSession(Role.RELAY, max_frame_size=8)
    failed = only_failure(relay.receive_frame(b"\xff" * 9))  # garbage, but too big first
    assert isinstance(failed.error, FrameTooLarge)
    assert failed.error.close_code is CloseCode.MESSAGE_TOO_BIG


@pytest.mark.parametrize("kind", ["push", "update", "step2"])
def test_update_too_large(kind: str) -> None:
    relay = SyncSession(Role.RELAY, max_update_size=10)
    relay.receive_frame(frame(SyncStep1(SV)))
    fits = {"push": Push(7, b"u" * 10), "update": Update(b"u" * 10), "step2": SyncStep2(b"u" * 10)}
    too_big = {
        "push": Push(7, b"u" * 11),
        "update": Update(b"u" * 11),
        "step2": SyncStep2(b"u" * 11),
    }
    assert not isinstance(relay.receive_frame(frame(fits[kind]))[0], ConnectionFailed)

    failed = only_failure(relay.receive_frame(frame(too_big[kind])))
    assert isinstance(failed.error, FrameTooLarge)
    assert failed.error.code is ErrorCode.UPDATE_TOO_LARGE
    assert failed.error.close_code is CloseCode.MESSAGE_TOO_BIG
    expected_seq = 7 if kind == "push" else 0
    assert failed.error.seq == expected_seq
    assert failed.error.document == DOC
    document, sent = error_frame(failed)
    assert document == DOC
    assert sent.error_code is ErrorCode.UPDATE_TOO_LARGE
    assert sent.seq == expected_seq


def test_update_size_limit_on_device() -> None:
    device = SyncSession(Role.DEVICE, max_update_size=3)
    device.open_document(DOC, SV)
    failed = only_failure(device.receive_frame(frame(SyncStep2(b"four"))))
    assert failed.error.code is ErrorCode.UPDATE_TOO_LARGE
    assert device.state(DOC) is DocState.OPENING


INVALID_NAMES = [
    "",
    "a" * 257,
    "has space",
    "tab\tname",
    "new\nline",
    "doc1\n",
    "nul\x00",
    "dokument-ü",
    "文書",
    "emoji-🔧",
    "back\\slash",
    "semi;colon",
    "q?uery",
    "hash#",
]
VALID_NAMES = ["a", "a" * 256, "A-Za-z0-9._:@/+-", "org/site:42/wo@7+v1.2", "-", "..", "/"]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_document_name_fails_the_connection(name: str) -> None:
    relay = SyncSession(Role.RELAY)
    failed = only_failure(relay.receive_frame(frame(SyncStep1(SV), document=name)))
    assert isinstance(failed.error, InvalidDocumentName)
    assert failed.error.code is ErrorCode.INVALID_DOCUMENT_NAME
    assert failed.error.close_code is CloseCode.POLICY_VIOLATION
    _, sent = error_frame(failed)
    assert sent.error_code is ErrorCode.INVALID_DOCUMENT_NAME
    assert relay.open_documents == []


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_document_name_is_refused_locally(name: str) -> None:
    with pytest.raises(InvalidDocumentName):
        validate_document_name(name)
    with pytest.raises(InvalidDocumentName):
        SyncSession(Role.DEVICE).open_document(name, SV)
    with pytest.raises(InvalidDocumentName):
        SyncSession(Role.RELAY, document=name)


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_document_names(name: str) -> None:
    assert validate_document_name(name) == name
    relay = SyncSession(Role.RELAY)
    assert relay.receive_frame(frame(SyncStep1(SV), document=name)) == [
        SyncRequested(name, SV, True)
    ]


def test_too_many_documents() -> None:
    relay = SyncSession(Role.RELAY, max_documents=2)
    for name in ("d1", "d2"):
        assert relay.receive_frame(frame(SyncStep1(SV), name)) == [SyncRequested(name, SV, True)]
    # Re-syncing an open document does not count as opening another.
    assert relay.receive_frame(frame(SyncStep1(SV), "d1")) == [SyncRequested("d1", SV, False)]
    failed = only_failure(relay.receive_frame(frame(SyncStep1(SV), "d3")))
    assert isinstance(failed.error, TooManyDocuments)
    assert failed.error.code is ErrorCode.TOO_MANY_DOCUMENTS
    assert failed.error.close_code is CloseCode.POLICY_VIOLATION
    assert failed.error.document == "d3"
    document, sent = error_frame(failed)
    assert (document, sent.error_code) == ("d3", ErrorCode.TOO_MANY_DOCUMENTS)
    assert sorted(relay.open_documents) == ["d1", "d2"]


def test_closing_frees_a_document_slot() -> None:
    relay = SyncSession(Role.RELAY, max_documents=2)
    relay.receive_frame(frame(SyncStep1(SV), "d1"))
    relay.receive_frame(frame(SyncStep1(SV), "d2"))
    assert relay.receive_frame(frame(Close(1000, ""), "d1")) == [DocumentClosed("d1", 1000, "")]
    # Closing an already closed document is harmless and takes no slot.
    assert relay.receive_frame(frame(Close(1000, ""), "d9")) == [DocumentClosed("d9", 1000, "")]
    assert relay.receive_frame(frame(SyncStep1(SV), "d3")) == [SyncRequested("d3", SV, True)]
    assert relay.failure is None


# -- local misuse raises -----------------------------------------------------------------------


def test_device_push_on_closed_document_raises() -> None:
    device = SyncSession(Role.DEVICE)
    with pytest.raises(UnexpectedMessage) as info:
        device.send_push(DOC, 1, UPD)
    assert str(info.value) == f"device cannot send Push for document {DOC!r} in state closed"
    assert info.value.document == DOC
    assert device.failure is None  # local misuse does not fail the connection


def test_relay_cannot_push_and_device_cannot_ack() -> None:
    device, relay = opened_pair()
    with pytest.raises(UnexpectedMessage, match="only a device sends Push"):
        relay.send_push(DOC, 1, UPD)
    with pytest.raises(UnexpectedMessage, match="only the relay sends Ack"):
        device.send_ack(DOC, 1)
    assert device.failure is None
    assert relay.failure is None


def test_device_cannot_open_twice() -> None:
    device = SyncSession(Role.DEVICE)
    device.open_document(DOC, SV)
    with pytest.raises(UnexpectedMessage, match="in state opening"):
        device.open_document(DOC, SV)
    device.receive_frame(frame(SyncStep2(UPD)))
    with pytest.raises(UnexpectedMessage, match="in state open"):
        device.open_document(DOC, SV)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("method", ["send_step1", "send_step2", "send_update"])
def test_sync_sends_need_an_open_document(role: Role, method: str) -> None:
    session = SyncSession(role)
    with pytest.raises(UnexpectedMessage, match="in state closed"):
        getattr(session, method)(DOC, UPD)


def test_relay_open_document_does_not_change_state() -> None:
    relay = SyncSession(Role.RELAY)
    assert decode_frame(relay.open_document(DOC, SV)) == Frame(DOC, SyncStep1(SV))
    assert relay.state(DOC) is DocState.CLOSED


# -- single-document (y-websocket) framing -----------------------------------------------------


def test_single_document_relay_speaks_plain_y_websocket() -> None:
    client_doc = pycrdt.Doc()
    client_doc["t"] = pycrdt.Text("hello")
    relay = SyncSession(Role.RELAY, document=DOC)
    assert relay.single_document == DOC
    assert relay.state(DOC) is DocState.OPEN

    assert relay.receive_frame(pycrdt.create_sync_message(client_doc)) == [
        SyncRequested(DOC, client_doc.get_state(), first=False)
    ]
    update = client_doc.get_update()
    assert relay.receive_frame(pycrdt.create_update_message(update)) == [
        UpdateReceived(DOC, update, None)
    ]
    awareness = pycrdt.Awareness(client_doc)
    awareness.set_local_state({"user": "tech"})
    payload = awareness.encode_awareness_update([awareness.client_id])
    assert relay.receive_frame(pycrdt.create_awareness_message(payload)) == [
        AwarenessReceived(DOC, payload)
    ]

    # What the relay sends is plain y-websocket too: pycrdt can apply it.
    step2 = relay.send_step2(DOC, update)
    assert step2 == encode_message(SyncStep2(update))
    target = pycrdt.Doc()
    assert pycrdt.handle_sync_message(step2[1:], target) is None
    assert str(target.get("t", type=pycrdt.Text)) == "hello"
    assert relay.send_step1(DOC, b"\x00") == encode_message(SyncStep1(b"\x00"))
    assert relay.failure is None


def test_single_document_relay_accepts_step2_first() -> None:
    relay = SyncSession(Role.RELAY, document=DOC)
    assert relay.receive_frame(encode_message(SyncStep2(UPD))) == [
        UpdateReceived(DOC, UPD, None, step2=True)
    ]


def test_single_document_send_error_is_empty() -> None:
    relay = SyncSession(Role.RELAY, document=DOC)
    assert relay.send_error(DOC, ErrorCode.FORBIDDEN, "no") == b""
    # A violation still fails the connection, with nothing to send but the close.
    failed = only_failure(relay.receive_frame(encode_message(Ack(1))))
    assert isinstance(failed.error, UnexpectedMessage)
    assert failed.data == b""
    assert failed.error.close_code is CloseCode.PROTOCOL_ERROR


def test_single_document_refuses_native_frames() -> None:
    relay = SyncSession(Role.RELAY, document=DOC)
    failed = only_failure(relay.receive_frame(encode_frame(DOC, SyncStep1(SV))))
    assert isinstance(failed.error, DecodeError)
    assert failed.data == b""


def test_single_document_device_framing() -> None:
    doc = pycrdt.Doc()
    device = SyncSession(Role.DEVICE, document=DOC)
    hello = device.open_document(DOC, doc.get_state())
    assert hello == pycrdt.create_sync_message(doc)
    assert decode_message(hello) == SyncStep1(doc.get_state())
    assert device.receive_frame(encode_message(SyncStep2(UPD))) == [
        UpdateReceived(DOC, UPD, None, step2=True),
        Synced(DOC),
    ]


# -- the transition table ----------------------------------------------------------------------


#: Messages of the connection itself (the document ""), outside the per-document table.
CONNECTION_LEVEL = {Resume, Resumed}


def test_instances_cover_every_message_class() -> None:
    assert set(INSTANCES) | CONNECTION_LEVEL == set(typing.get_args(Message))
    assert all(type(message) is cls for cls, message in INSTANCES.items())


def test_relay_never_opening() -> None:
    # OPENING is a device state: no relay transition starts there or leads there, so the
    # relay cannot reach it (and session_in need not build it).
    for (role, state, _), after in TRANSITIONS.items():
        if role is Role.RELAY:
            assert DocState.OPENING not in (state, after)


def _cases() -> list[tuple[Role, DocState, type]]:
    return [(r, s, c) for r in Role for s in DocState for c in INSTANCES]


def _case_id(case: tuple[Role, DocState, type]) -> str:
    role, state, cls = case
    return f"{role.value}-{state.value}-{cls.__name__}"


#: Relay OPENING is unreachable (test_relay_never_opening), so it is not enumerated.
REACHABLE = [(r, s) for r in Role for s in DocState if (r, s) != (Role.RELAY, DocState.OPENING)]
ILLEGAL = [case for case in _cases() if case not in TRANSITIONS and case[:2] in REACHABLE]
LEGAL = list(TRANSITIONS)


def test_table_sanity() -> None:
    assert len(LEGAL) + len(ILLEGAL) == len(REACHABLE) * len(INSTANCES)
    assert all(case[:2] in REACHABLE for case in LEGAL)
    assert all(cls in INSTANCES for _, _, cls in LEGAL)


@pytest.mark.parametrize("case", ILLEGAL, ids=_case_id)
def test_illegal_transitions_are_refused(case: tuple[Role, DocState, type]) -> None:
    role, state, cls = case
    session = session_in(role, state)
    assert session is not None
    failed = only_failure(session.receive_frame(frame(INSTANCES[cls])))
    assert isinstance(failed.error, UnexpectedMessage)
    text = str(failed.error)
    assert role.value in text
    assert f"state {state.value}" in text
    assert cls.__name__ in text
    assert failed.error.close_code is CloseCode.PROTOCOL_ERROR
    assert error_frame(failed)[1].error_code is ErrorCode.UNEXPECTED_MESSAGE
    assert session.state(DOC) is state  # a refused message changes nothing
    assert session.failure is failed.error


@pytest.mark.parametrize("case", LEGAL, ids=_case_id)
def test_legal_transitions_are_accepted(case: tuple[Role, DocState, type]) -> None:
    role, state, cls = case
    session = session_in(role, state)
    assert session is not None
    events = session.receive_frame(frame(INSTANCES[cls]))
    assert events
    assert not any(isinstance(event, ConnectionFailed) for event in events)
    assert all(event.document == DOC for event in events)  # type: ignore[union-attr]
    assert session.state(DOC) is TRANSITIONS[case]
    assert session.failure is None


# -- properties --------------------------------------------------------------------------------


@settings(max_examples=200)
@given(st.sampled_from(list(Role)), st.binary(max_size=64))
def test_receive_frame_never_raises(role: Role, data: bytes) -> None:
    session = SyncSession(role)
    events = session.receive_frame(data)
    failures = [event for event in events if isinstance(event, ConnectionFailed)]
    if failures:
        assert events == failures[:1]
        assert isinstance(failures[0].error, ProtocolError)
        assert session.failure is failures[0].error
        decoded = decode_frame(failures[0].data)
        assert isinstance(decoded.message, Error)
        assert session.receive_frame(data) == []
    else:
        assert session.failure is None


@settings(max_examples=200)
@given(
    st.sampled_from(list(Role)),
    st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(list(INSTANCES))), max_size=20),
)
def test_session_follows_the_table(role: Role, script: list[tuple[str, type]]) -> None:
    """A model check: random valid frames move each document exactly as TRANSITIONS says."""
    session = SyncSession(role)
    model: dict[str, DocState] = {}
    for document, cls in script:
        before = model.get(document, DocState.CLOSED)
        after = TRANSITIONS.get((role, before, cls))
        events = session.receive_frame(frame(INSTANCES[cls], document))
        if after is None:
            assert isinstance(only_failure(events).error, UnexpectedMessage)
            return
        assert events
        assert not any(isinstance(event, ConnectionFailed) for event in events)
        if after is DocState.CLOSED:
            model.pop(document, None)
        else:
            model[document] = after
        assert session.state(document) is after
        assert sorted(session.open_documents) == sorted(model)


def test_frames_in_flight_for_a_document_the_relay_closed_are_dropped_until_it_reopens() -> None:
    relay = SyncSession(Role.RELAY)
    relay.receive_frame(frame(SyncStep1(b"\x00")))
    relay.close_document(DOC, 4403, "withdrawn")
    assert relay.receive_frame(frame(Push(1, b"\x00\x00"))) == []
    assert relay.receive_frame(frame(Update(b"\x00\x00"))) == []
    assert relay.failure is None
    assert relay.state(DOC) is DocState.CLOSED
    events = relay.receive_frame(frame(SyncStep1(b"\x00")))
    assert [type(e) for e in events] == [SyncRequested]
    assert relay.state(DOC) is DocState.OPEN
    # Once reopened, the table applies again.
    relay.close_document(DOC)
    relay.receive_frame(frame(SyncStep1(b"\x00")))
    assert relay.receive_frame(frame(Push(2, b"\x00\x00")))[0] == UpdateReceived(
        DOC, b"\x00\x00", 2
    )


# -- resuming many documents at once --------------------------------------------------------------


def test_resume_opens_documents_and_resumed_settles_each_one() -> None:
    device, relay = SyncSession(Role.DEVICE), SyncSession(Role.RELAY)
    entries = [ResumeEntry(f"wo/{i}", bytes([i]) * 16, i) for i in range(3)]
    frame_out = device.resume(entries)
    assert [device.state(e.document) for e in entries] == [DocState.OPENING] * 3
    [requested] = relay.receive_frame(frame_out)
    assert requested == ResumeRequested(tuple(entries))
    assert [relay.state(e.document) for e in entries] == [DocState.OPEN] * 3
    events = device.receive_frame(relay.send_resumed([1]))
    assert events == [
        Synced("wo/0"),
        ResumeAnswered("wo/0", in_sync=True),
        ResumeAnswered("wo/1", in_sync=False),
        Synced("wo/2"),
        ResumeAnswered("wo/2", in_sync=True),
    ]
    assert device.state("wo/1") is DocState.OPENING  # it now sends SyncStep1
    device.send_step1("wo/1", b"\x00")
    assert device.state("wo/0") is DocState.OPEN


def test_resumed_skips_documents_the_relay_closed_meanwhile() -> None:
    device = SyncSession(Role.DEVICE)
    device.resume([ResumeEntry("wo/1", b"d", 0), ResumeEntry("wo/2", b"d", 0)])
    device.receive_frame(encode_frame("wo/2", Close(4403, "refused")))
    events = device.receive_frame(encode_frame("", Resumed(())))
    assert events == [Synced("wo/1"), ResumeAnswered("wo/1", in_sync=True)]


@pytest.mark.parametrize(
    ("role", "message", "document"),
    [
        (Role.DEVICE, Resume(()), ""),  # only the relay receives Resume
        (Role.RELAY, Resumed(()), ""),  # only the device receives Resumed
        (Role.RELAY, Resume(()), DOC),  # connection-level only
        (Role.DEVICE, Resumed(()), ""),  # no Resume to answer
    ],
)
def test_resume_messages_out_of_place_are_refused(
    role: Role, message: Message, document: str
) -> None:
    failed = only_failure(SyncSession(role).receive_frame(encode_frame(document, message)))
    assert isinstance(failed.error, UnexpectedMessage)


def test_a_resume_for_an_open_document_or_past_capacity_is_refused() -> None:
    relay = SyncSession(Role.RELAY, max_documents=2)
    relay.receive_frame(frame(SyncStep1(b"\x00")))
    again = only_failure(relay.receive_frame(encode_frame("", Resume((ResumeEntry(DOC, b"", 0),)))))
    assert isinstance(again.error, UnexpectedMessage)
    relay = SyncSession(Role.RELAY, max_documents=2)
    entries = tuple(ResumeEntry(f"wo/{i}", b"", 0) for i in range(3))
    too_many = only_failure(relay.receive_frame(encode_frame("", Resume(entries))))
    assert too_many.error.code is ErrorCode.TOO_MANY_DOCUMENTS


def test_a_resumed_index_beyond_its_batch_is_a_decode_error() -> None:
    device = SyncSession(Role.DEVICE)
    device.resume([ResumeEntry("wo/1", b"d", 0)])
    failed = only_failure(device.receive_frame(encode_frame("", Resumed((1,)))))
    assert failed.error.code is ErrorCode.MALFORMED_FRAME
