"""The relay's per-connection writer: ordered frames, merged neighbour updates, bounded queue."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Map

from crdtsync import CloseCode, ConnectionClosed, ErrorCode, memory_channel_pair
from crdtsync._connection import RelayConnection
from crdtsync.protocol import (
    Ack,
    Error,
    Role,
    SyncSession,
    SyncStep1,
    Update,
    decode_frame,
    encode_frame,
)


def edits(doc: Doc[Any], prefix: str, count: int) -> list[bytes]:
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    fields = doc.get("m", type=Map)
    for i in range(count):
        fields[f"{prefix}{i}"] = i
    doc.unobserve(subscription)
    return updates


async def drain(channel: Any) -> tuple[list[bytes], int | None]:
    """Every frame until the close, and the close code."""
    frames: list[bytes] = []
    try:
        while True:
            frames.append(await channel.recv())
    except ConnectionClosed as exc:
        return frames, exc.code


async def test_neighbouring_updates_of_a_document_leave_as_one_merged_frame() -> None:
    relay_end, peer_end = memory_channel_pair()
    session = SyncSession(Role.RELAY)
    for name in ("a", "b"):
        session.receive_frame(encode_frame(name, SyncStep1(b"\0")))
    connection = RelayConnection(relay_end, session, queue_size=100, peer="p")
    source_a, source_b = Doc(), Doc()
    a_updates, b_updates = edits(source_a, "a", 5), edits(source_b, "b", 3)
    for update in a_updates:
        assert connection.send_update("a", update)
    assert connection.send(encode_frame("a", Ack(7)))
    for update in b_updates:
        assert connection.send_update("b", update)
    connection.finish()
    await connection.write_loop()

    received, code = await drain(peer_end)
    assert code == CloseCode.NORMAL
    frames = [decode_frame(frame) for frame in received]
    assert [(f.document, type(f.message).__name__) for f in frames] == [
        ("a", "Update"),
        ("a", "Ack"),
        ("b", "Update"),
    ]
    for frame, source in ((frames[0], source_a), (frames[2], source_b)):
        replica: Doc[Any] = Doc()
        assert isinstance(frame.message, Update)
        replica.apply_update(frame.message.update)
        assert replica.get("m", type=Map).to_py() == source.get("m", type=Map).to_py()


async def test_a_full_queue_fails_the_connection_as_a_slow_consumer() -> None:
    relay_end, peer_end = memory_channel_pair()
    slow: list[bool] = []
    session = SyncSession(Role.RELAY)
    connection = RelayConnection(relay_end, session, 2, "p", on_slow=lambda: slow.append(True))
    assert connection.send(b"\x01a\x65\x01")
    assert connection.send(b"\x01a\x65\x02")
    assert not connection.send(b"\x01a\x65\x03")
    assert slow == [True]
    assert connection.closing
    await connection.write_loop()
    frames, code = await drain(peer_end)
    assert code == CloseCode.TRY_AGAIN_LATER
    messages = [decode_frame(frame).message for frame in frames]
    assert messages == [Error(ErrorCode.SLOW_CONSUMER, 0, "send queue full")]
