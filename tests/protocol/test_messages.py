"""Wire messages: exact encodings, both framings, strict decoding, and pycrdt as an oracle."""

from __future__ import annotations

import typing

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtsync.exceptions import DecodeError, ErrorCode
from crdtsync.protocol.codec import write_var_bytes, write_var_string, write_var_uint
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
    MessageType,
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
    SyncSubtype,
    Update,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)

MAX_UINT = 2**64 - 1
uint64 = st.integers(min_value=0, max_value=MAX_UINT)
small_uint = st.integers(min_value=0, max_value=2**20)
payload = st.binary(max_size=64)
shas = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
keys = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-",
    min_size=1,
    max_size=128,
)
SHA = "ab" * 32

STRATEGIES: dict[type, st.SearchStrategy[Message]] = {
    SyncStep1: st.builds(SyncStep1, payload),
    SyncStep2: st.builds(SyncStep2, payload),
    Update: st.builds(Update, payload),
    Awareness: st.builds(Awareness, payload),
    QueryAwareness: st.just(QueryAwareness()),
    Close: st.builds(Close, uint64, st.text(max_size=40)),
    SyncStatus: st.builds(SyncStatus, st.booleans()),
    Push: st.builds(Push, uint64, payload),
    Ack: st.builds(Ack, uint64),
    Error: st.builds(Error, uint64, uint64, st.text(max_size=40)),
    Submit: st.builds(Submit, keys, uint64, st.text(max_size=40)),
    SubmitResult: st.builds(SubmitResult, keys, st.text(max_size=40)),
    BlobPut: st.builds(
        lambda sha, data, offset, extra: BlobPut(sha, offset + len(data) + extra, offset, data),
        shas,
        payload,
        small_uint,
        small_uint,
    ),
    BlobQuery: st.builds(BlobQuery, shas, uint64),
    BlobStatus: st.builds(BlobStatus, shas, uint64, small_uint),
    Resume: st.builds(
        lambda entries: Resume(tuple(entries)),
        st.lists(
            st.builds(ResumeEntry, st.text(max_size=20), st.binary(max_size=16), uint64),
            max_size=5,
        ),
    ),
    Resumed: st.builds(lambda stale: Resumed(tuple(stale)), st.lists(uint64, max_size=5)),
}
messages = st.one_of(*STRATEGIES.values())
documents = st.text(max_size=40)

#: One concrete instance of every message, with multi-byte var-uints where there are numbers.
SAMPLES: list[Message] = [
    SyncStep1(b"\x01\x02\x03"),
    SyncStep2(b"\x00\x00"),
    Update(b"\x01\x00\x05"),
    Awareness(b"\x01\x02{}"),
    QueryAwareness(),
    Close(1000, "bye"),
    SyncStatus(True),
    SyncStatus(False),
    Push(300, b"upd"),
    Ack(2**40),
    Error(ErrorCode.UNEXPECTED_MESSAGE, 129, "nope"),
    Submit("sub-1", 300, '{"policy_version": 2}'),
    SubmitResult("sub-1", '{"status": "accepted"}'),
    BlobPut(SHA, 1000, 200, b"chunk"),
    BlobQuery(SHA, 2**20),
    BlobStatus(SHA, 700, 0),
    Resume((ResumeEntry("wo/1", b"\x01" * 16, 0), ResumeEntry("wo/2", b"\x02" * 16, 300))),
    Resumed((0, 129)),
]

#: The exact y-websocket-framed bytes of each message.
KNOWN: list[tuple[Message, bytes]] = [
    (SyncStep1(b"\x00"), b"\x00\x00\x01\x00"),
    (SyncStep2(b"\x00\x00"), b"\x00\x01\x02\x00\x00"),
    (Update(b"ab"), b"\x00\x02\x02ab"),
    (SyncStep1(b""), b"\x00\x00\x00"),
    (Awareness(b"xyz"), b"\x01\x03xyz"),
    (QueryAwareness(), b"\x03"),
    (Close(1000, "bye"), b"\x07\xe8\x07\x03bye"),
    (SyncStatus(True), b"\x08\x01"),
    (SyncStatus(False), b"\x08\x00"),
    (Push(300, b"ab"), b"\x64\xac\x02\x02ab"),
    (Ack(5), b"\x65\x05"),
    (Error(10, 3, "hi"), b"\x66\x0a\x03\x02hi"),
    (Submit("k", 2, "{}"), b"\x67\x01k\x02\x02{}"),
    (SubmitResult("k", "{}"), b"\x68\x01k\x02{}"),
    (BlobPut(SHA, 3, 1, b"xy"), b"\x69\x40" + SHA.encode() + b"\x03\x01\x02xy"),
    (BlobQuery(SHA, 3), b"\x6a\x40" + SHA.encode() + b"\x03"),
    (BlobStatus(SHA, 3, 1), b"\x6b\x40" + SHA.encode() + b"\x03\x01"),
    (Resume((ResumeEntry("a", b"\xff", 2),)), b"\x6c\x01\x01a\x01\xff\x02"),
    (Resumed((1, 3)), b"\x6d\x02\x01\x03"),
]

SUPPORTED_TYPES = {0, 1, 3, 7, 8, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109}


def _ids(value: object) -> str:
    return type(value).__name__


def test_strategies_cover_every_message_class() -> None:
    # A new message class must be added to the round-trip strategies.
    assert set(STRATEGIES) == set(typing.get_args(Message))
    assert {type(m) for m in SAMPLES} == set(typing.get_args(Message))


# -- exact encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "encoded"), KNOWN, ids=[_ids(m) for m, _ in KNOWN])
def test_known_message_encoding(message: Message, encoded: bytes) -> None:
    assert encode_message(message) == encoded
    assert decode_message(encoded) == message


@pytest.mark.parametrize(("message", "encoded"), KNOWN, ids=[_ids(m) for m, _ in KNOWN])
def test_known_frame_encoding(message: Message, encoded: bytes) -> None:
    frame = encode_frame("doc1", message)
    assert frame == b"\x04doc1" + encoded
    assert decode_frame(frame) == Frame("doc1", message)


def test_frame_document_is_a_utf8_var_string() -> None:
    assert encode_frame("é", Ack(1)) == b"\x02\xc3\xa9\x65\x01"
    assert encode_frame("", Ack(1)) == b"\x00\x65\x01"
    assert decode_frame(b"\x00\x65\x01") == Frame("", Ack(1))


def test_message_type_values() -> None:
    assert {int(t) for t in MessageType} >= SUPPORTED_TYPES
    assert (SyncSubtype.STEP1, SyncSubtype.STEP2, SyncSubtype.UPDATE) == (0, 1, 2)


def test_error_code_property() -> None:
    assert Error(10, 0, "").error_code is ErrorCode.UNEXPECTED_MESSAGE
    unknown = Error(9999, 0, "").error_code
    assert unknown == 9999
    assert not isinstance(unknown, ErrorCode)


# -- round trips -------------------------------------------------------------------------------


@settings(max_examples=200)
@given(messages)
def test_message_round_trip(message: Message) -> None:
    decoded = decode_message(encode_message(message))
    assert decoded == message
    assert type(decoded) is type(message)


@settings(max_examples=200)
@given(documents, messages)
def test_frame_round_trip(document: str, message: Message) -> None:
    encoded = encode_frame(document, message)
    assert encoded == write_var_string(document) + encode_message(message)
    assert decode_frame(encoded) == Frame(document, message)


@pytest.mark.parametrize("message", SAMPLES, ids=_ids)
def test_sample_round_trip_both_framings(message: Message) -> None:
    assert decode_message(encode_message(message)) == message
    assert decode_frame(encode_frame("a/b:c", message)) == Frame("a/b:c", message)


# -- pycrdt as the oracle ----------------------------------------------------------------------


def _doc_with(text: str, client_id: int | None = None) -> pycrdt.Doc:
    doc: pycrdt.Doc = pycrdt.Doc() if client_id is None else pycrdt.Doc(client_id=client_id)
    doc["t"] = pycrdt.Text(text)
    return doc


def _text(doc: pycrdt.Doc) -> str:
    return str(doc.get("t", type=pycrdt.Text))


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=30))
def test_pycrdt_sync_message_decodes_to_step1(text: str) -> None:
    doc = _doc_with(text)
    raw = pycrdt.create_sync_message(doc)
    assert decode_message(raw) == SyncStep1(doc.get_state())
    assert decode_frame(write_var_string("doc1") + raw) == Frame("doc1", SyncStep1(doc.get_state()))


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=30))
def test_our_step1_equals_pycrdt_sync_message(text: str) -> None:
    doc = _doc_with(text)
    assert encode_message(SyncStep1(doc.get_state())) == pycrdt.create_sync_message(doc)


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_pycrdt_update_message_decodes_to_update(text: str) -> None:
    doc = _doc_with(text)
    update = doc.get_update()
    raw = pycrdt.create_update_message(update)
    assert decode_message(raw) == Update(update)
    assert encode_message(Update(update)) == raw


def test_pycrdt_update_message_from_live_transaction() -> None:
    doc = _doc_with("")
    captured: list[bytes] = []
    doc.observe(lambda event: captured.append(event.update))
    doc.get("t", type=pycrdt.Text).insert(0, "hello")
    assert len(captured) == 1
    assert decode_message(pycrdt.create_update_message(captured[0])) == Update(captured[0])


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30))
def test_pycrdt_answers_our_step1_with_a_step2(known: str, missing: str) -> None:
    # The remote document has everything; the local one only what was shared before.
    remote = _doc_with(known, client_id=1)
    local = pycrdt.Doc(client_id=2)
    local.apply_update(remote.get_update())
    shared = remote.get("t", type=pycrdt.Text)
    shared += missing

    ours = encode_message(SyncStep1(local.get_state()))
    assert ours[0] == MessageType.SYNC
    # handle_sync_message takes the message without its leading YMessageType byte.
    reply = pycrdt.handle_sync_message(ours[1:], remote)
    assert reply is not None
    # pycrdt's reply is a complete y-websocket message (it carries the SYNC byte itself).
    decoded = decode_message(reply)
    assert isinstance(decoded, SyncStep2)
    local.apply_update(decoded.update)
    assert _text(local) == known + missing
    assert local.get_state() == remote.get_state()


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=30))
def test_pycrdt_step2_into_a_fresh_doc(text: str) -> None:
    source = _doc_with(text)
    fresh = pycrdt.Doc()
    step1 = encode_message(SyncStep1(fresh.get_state()))
    reply = pycrdt.handle_sync_message(step1[1:], source)
    assert reply is not None
    decoded = decode_message(reply)
    assert decoded == SyncStep2(source.get_update(fresh.get_state()))
    assert isinstance(decoded, SyncStep2)
    target = pycrdt.Doc()
    target.apply_update(decoded.update)
    assert _text(target) == text


@pytest.mark.parametrize("kind", [SyncStep2, Update])
def test_pycrdt_applies_our_step2_and_update(kind: type[SyncStep2] | type[Update]) -> None:
    source = _doc_with("from us")
    target = pycrdt.Doc()
    ours = encode_message(kind(source.get_update()))
    assert pycrdt.handle_sync_message(ours[1:], target) is None
    assert _text(target) == "from us"


def test_pycrdt_awareness_message_decodes_to_awareness() -> None:
    doc = pycrdt.Doc()
    awareness = pycrdt.Awareness(doc)
    awareness.set_local_state({"user": {"name": "tech-7"}, "cursor": 12})
    update = awareness.encode_awareness_update([awareness.client_id])
    raw = pycrdt.create_awareness_message(update)

    decoded = decode_message(raw)
    assert decoded == Awareness(update)
    assert encode_message(Awareness(update)) == raw

    # The payload we extracted is what another peer's Awareness understands.
    assert isinstance(decoded, Awareness)
    other = pycrdt.Awareness(pycrdt.Doc())
    other.apply_awareness_update(decoded.payload, origin="test")
    assert other.states[awareness.client_id] == {"user": {"name": "tech-7"}, "cursor": 12}


# -- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in range(256) if k not in SUPPORTED_TYPES])
def test_unknown_message_type(kind: int) -> None:
    body = write_var_uint(kind) + b"\x00"
    with pytest.raises(DecodeError, match=f"unknown message type {kind}"):
        decode_message(body)
    with pytest.raises(DecodeError, match=f"unknown message type {kind}") as info:
        decode_frame(write_var_string("doc1") + body)
    assert info.value.document == "doc1"


def test_unknown_message_type_42_with_no_payload() -> None:
    with pytest.raises(DecodeError, match="unknown message type 42"):
        decode_message(b"\x2a")
    with pytest.raises(DecodeError, match="unknown message type 42"):
        decode_frame(b"\x01d\x2a")


@pytest.mark.parametrize("subtype", [3, 4, 42, 127, 128, 2**32])
def test_unknown_sync_subtype(subtype: int) -> None:
    body = b"\x00" + write_var_uint(subtype) + write_var_bytes(b"\x00")
    with pytest.raises(DecodeError, match=f"unknown sync message subtype {subtype}"):
        decode_message(body)
    with pytest.raises(DecodeError, match="unknown sync message subtype") as info:
        decode_frame(b"\x04doc1" + body)
    assert info.value.document == "doc1"


@pytest.mark.parametrize("message", SAMPLES, ids=_ids)
def test_every_truncation_of_a_message_is_refused(message: Message) -> None:
    encoded = encode_message(message)
    for cut in range(len(encoded)):
        with pytest.raises(DecodeError):
            decode_message(encoded[:cut])


@pytest.mark.parametrize("message", SAMPLES, ids=_ids)
def test_every_truncation_of_a_frame_is_refused(message: Message) -> None:
    document = "doc-é"
    name = write_var_string(document)
    encoded = encode_frame(document, message)
    for cut in range(len(encoded)):
        with pytest.raises(DecodeError) as info:
            decode_frame(encoded[:cut])
        # The document is reported once its name was readable, never a partial name.
        assert info.value.document == (document if cut >= len(name) else "")


@settings(max_examples=200)
@given(documents, messages, st.data())
def test_any_truncation_is_refused(document: str, message: Message, data: st.DataObject) -> None:
    encoded = encode_frame(document, message)
    cut = data.draw(st.integers(0, len(encoded) - 1), label="cut")
    with pytest.raises(DecodeError):
        decode_frame(encoded[:cut])
    body = encode_message(message)
    with pytest.raises(DecodeError):
        decode_message(body[: min(cut, len(body) - 1)])


@pytest.mark.parametrize("message", SAMPLES, ids=_ids)
def test_trailing_bytes_are_refused(message: Message) -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode_message(encode_message(message) + b"\x00")
    with pytest.raises(DecodeError, match="trailing") as info:
        decode_frame(encode_frame("doc1", message) + b"\x00")
    assert info.value.document == "doc1"


@settings(max_examples=200)
@given(documents, messages, st.binary(min_size=1, max_size=16))
def test_any_trailing_bytes_are_refused(document: str, message: Message, extra: bytes) -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode_message(encode_message(message) + extra)
    with pytest.raises(DecodeError, match="trailing"):
        decode_frame(encode_frame(document, message) + extra)


def test_payload_length_beyond_frame_is_refused() -> None:
    # A Push announcing a 1 MiB update with three bytes behind it.
    body = b"\x64\x01" + write_var_uint(1 << 20) + b"abc"
    with pytest.raises(DecodeError, match="exceeds"):
        decode_message(body)
    with pytest.raises(DecodeError, match="exceeds") as info:
        decode_frame(b"\x01d" + body)
    assert info.value.document == "d"


def test_invalid_utf8_in_close_reason_and_error_message() -> None:
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_message(b"\x07\xe8\x07" + write_var_bytes(b"\xff"))
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_message(b"\x66\x01\x00" + write_var_bytes(b"\xc3"))


def test_overlong_var_uint_in_payload_is_refused() -> None:
    with pytest.raises(DecodeError, match="overlong"):
        decode_message(b"\x65\x80\x00")  # Ack with an overlong zero
    with pytest.raises(DecodeError, match="overlong"):
        decode_message(b"\x80\x00")  # an overlong message type


def test_unreadable_document_name_leaves_document_empty() -> None:
    with pytest.raises(DecodeError) as info:
        decode_frame(b"\x05ab")
    assert info.value.document == ""
    with pytest.raises(DecodeError, match="UTF-8") as info:
        decode_frame(write_var_bytes(b"\xff\xfe") + encode_message(Ack(1)))
    assert info.value.document == ""


def test_empty_input_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_message(b"")
    with pytest.raises(DecodeError):
        decode_frame(b"")


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_decode_frame_on_arbitrary_bytes(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except DecodeError:
        return
    assert isinstance(frame, Frame)
    assert isinstance(frame.message, typing.get_args(Message))


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_decode_message_on_arbitrary_bytes(data: bytes) -> None:
    try:
        message = decode_message(data)
    except DecodeError:
        return
    assert isinstance(message, typing.get_args(Message))


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid frame with one byte replaced, inserted or deleted: reaches deep parse paths."""
    encoded = bytearray(encode_frame(draw(documents), draw(messages)))
    position = draw(st.integers(0, len(encoded) - 1))
    action = draw(st.sampled_from(["replace", "insert", "delete"]))
    if action == "replace":
        encoded[position] = draw(st.integers(0, 255))
    elif action == "insert":
        encoded.insert(position, draw(st.integers(0, 255)))
    else:
        del encoded[position]
    return bytes(encoded)


@settings(max_examples=200)
@given(mutated_frames())
def test_decode_frame_on_mutated_frames(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except DecodeError:
        return
    # Whatever decodes re-encodes to an equivalent frame (no silent truncation).
    assert decode_frame(encode_frame(frame.document, frame.message)) == frame
    if not isinstance(frame.message, SyncStatus):
        # Decoding is canonical: overlong var-uints and trailing bytes are refused.
        assert encode_frame(frame.document, frame.message) == data


@pytest.mark.parametrize(
    "body",
    [
        b"\x69\x02ab\x03\x00\x01x",  # sha too short
        b"\x69\x40" + ("AB" * 32).encode() + b"\x03\x00\x01x",  # upper-case hex
        b"\x69\x40" + SHA.encode() + b"\x03\x02\x02xy",  # chunk runs past the size
        b"\x67\x00\x01\x00",  # empty submission key
        b"\x67\x03a b\x01\x00",  # a space in the key
        b"\x68\x81\x01" + b"k" * 129 + b"\x00",  # key longer than 128
    ],
)
def test_malformed_submission_and_blob_fields_are_decode_errors(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_message(body)


@pytest.mark.parametrize(
    "body",
    [
        b"\x6c\x05\x01a\x00\x00",  # five entries announced, one present
        b"\x6c\x01\x01a\x41" + b"\x00" * 65 + b"\x00",  # a digest above 64 bytes
        b"\x6d\x03\x01",  # three indexes announced, one present
    ],
)
def test_malformed_resume_messages_are_decode_errors(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_message(body)
