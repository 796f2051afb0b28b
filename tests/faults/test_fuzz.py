"""Fuzzing the frame decoder and the relay's update path with random and mutated input.

The decoder (``decode_frame``, ``decode_message``) gets random bytes and
mutations of valid frames of every message type: it returns a message or
raises :class:`DecodeError`, nothing else. ``SyncSession.receive_frame`` gets the
same, for both roles and both framings, with documents already open: it never
raises, and a violation is one ConnectionFailed event whose Error frame and
close code match.

The relay gets, on a document holding known content (a real SQLite store,
compacting often), with a healthy peer connected: random frames, mutated valid
frames, and mutated real pycrdt updates (byte flips, nudges, insertions,
deletions, truncations) sent as Push, Update and SyncStep2. Some of those make
pycrdt raise RuntimeError or panic (``pyo3_runtime.PanicException``, a
BaseException); the seeded corpus starts with one of each, found by
:func:`tests.test_relay.find_breaking_mutation`. Each input comes from a fresh
offending connection, followed by a probe Push. After each one:

* the offender either got its probe acknowledged (its input was legal, or an
  update that happens to be valid), or exactly one typed Error and the close
  code that goes with it;
* the stored document still loads, equals what the relay serves to a new
  connection, and is unchanged unless the input was accepted;
* the healthy peer's next Push is acknowledged and stored.

``CRDTSYNC_FAULTS_LONG=1`` runs many more inputs (see ``conftest``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from crdtsync import (
    CloseCode,
    CompactionPolicy,
    ConnectionClosed,
    DecodeError,
    ErrorCode,
    ProtocolError,
    RelayConfig,
    SQLiteStore,
)
from crdtsync._updates import is_panic
from crdtsync.exceptions import CLOSE_CODE_FOR_ERROR
from crdtsync.protocol import (
    Ack,
    AckReceived,
    Awareness,
    Close,
    ConnectionFailed,
    Error,
    ErrorReceived,
    Frame,
    Message,
    Push,
    QueryAwareness,
    Role,
    SyncSession,
    SyncStatus,
    SyncStep1,
    SyncStep2,
    Update,
    UpdateReceived,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)
from crdtsync.store import build_doc

from ..test_relay import (
    DOC,
    Editor,
    Harness,
    RawPeer,
    content,
    doc_of,
    find_breaking_mutation,
    running,
    wire_errors,
)
from ..test_relay import (
    _history as relay_history,
)
from .conftest import FINDINGS, TALLY, fault_settings, long_run_timeout, size

pytestmark = long_run_timeout

TIMEOUT = 10.0
PROBE = 1_000_000  # the offender's probe Push: acknowledged iff its connection survived
EMPTY_UPDATE = b"\x00\x00"
CONFIG = RelayConfig(compaction=CompactionPolicy(max_log_entries=4), maintenance_interval=0.005)
INPUTS_PER_RELAY = 200

# -- material: real updates and frames of every type ----------------------------------------------


def _history() -> list[bytes]:
    """Updates of two fixed clients touching a map, a text and an array, with deletes."""
    a, b = Editor(client_id=515151), Editor(client_id=171717)
    for i in range(10):
        for editor in (a, b):
            fields = editor.doc.get("fields", type=Map)
            notes = editor.doc.get("notes", type=Text)
            items = editor.doc.get("items", type=Array)
            with editor.doc.transaction():
                fields[f"k{i % 4}"] = f"v{i}"
                notes.insert(len(notes) // 2, f"w{i} ")
                items.append(i)
            if i % 3 == 2:
                with editor.doc.transaction():
                    del notes[0]
                    del items[0]
                    del fields[f"k{i % 4}"]
        a.doc.apply_update(b.updates[-1])  # a sees b's latest: later updates depend on both
    return a.updates


HISTORY = _history()
KNOWN = len(HISTORY) // 2  # the relay's document starts with HISTORY[:KNOWN]
STATE = doc_of(*HISTORY[:KNOWN]).get_state()

MESSAGES: list[Message] = [
    SyncStep1(STATE),
    SyncStep2(HISTORY[KNOWN]),
    Update(HISTORY[KNOWN]),
    Awareness(b"\x01\xb2\xb4\x01\x01\x02{}"),
    QueryAwareness(),
    Close(1000, "done"),
    SyncStatus(True),
    Push(7, HISTORY[KNOWN]),
    Ack(7),
    Error(int(ErrorCode.INVALID_UPDATE), 7, "refused"),
]
NATIVE_FRAMES = [encode_frame(DOC, message) for message in MESSAGES]
PLAIN_FRAMES = [encode_message(message) for message in MESSAGES]

# -- mutations -------------------------------------------------------------------------------------

EDITS = ("flip", "set", "nudge", "insert", "delete", "truncate", "repeat")
Mutation = tuple[str, int, int]


def mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    """Apply byte-level edits; positions wrap around the current length."""
    out = bytearray(data)
    for edit, position, value in mutations:
        at = position % (len(out) + 1)
        if edit == "insert":
            out.insert(at, value)
        elif edit == "truncate":
            del out[at:]
        elif at == len(out):
            continue
        elif edit == "flip":
            out[at] ^= 1 << (value % 8)
        elif edit == "set":
            out[at] = value
        elif edit == "nudge":
            out[at] = (out[at] + (1 if value % 2 else -1)) % 256
        elif edit == "delete":
            del out[at]
        else:  # repeat a short run in place, as a confused length would
            out[at:at] = out[at : at + 1 + value % 8]
    return bytes(out)


mutations = st.lists(
    st.tuples(st.sampled_from(EDITS), st.integers(0, 4096), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


def random_mutations(rng: random.Random, length: int) -> list[Mutation]:
    """1-3 edits biased to the head of the data, where counts, clients and clocks live."""
    return [
        (
            rng.choice(EDITS),
            min(rng.randrange(length + 1), rng.randrange(length + 1)),
            rng.randrange(256),
        )
        for _ in range(rng.randint(1, 3))
    ]


def carrying(kind: str, update: bytes, seq: int = 1) -> bytes:
    """A native frame for ``DOC`` carrying ``update`` as a Push, an Update or a SyncStep2."""
    message: Message
    if kind == "push":
        message = Push(seq, update)
    elif kind == "update":
        message = Update(update)
    else:
        message = SyncStep2(update)
    return encode_frame(DOC, message)


# -- (a) the decoder and the session ---------------------------------------------------------------

native_input = st.one_of(
    st.binary(max_size=128),
    st.builds(mutate, st.sampled_from(NATIVE_FRAMES), mutations),
)
plain_input = st.one_of(
    st.binary(max_size=128),
    st.builds(mutate, st.sampled_from(PLAIN_FRAMES), mutations),
)


@fault_settings(ci=400, long=40_000)
@given(native_input, plain_input)
def test_decoders_return_a_message_or_raise_decode_error(native: bytes, plain: bytes) -> None:
    """Anything else escaping (IndexError, UnicodeDecodeError, ValueError...) fails the test."""
    TALLY["fuzz decoder inputs"] += 2
    try:
        frame = decode_frame(native)
    except DecodeError:
        TALLY["fuzz decoder: DecodeError"] += 1
    else:
        assert decode_frame(encode_frame(frame.document, frame.message)) == frame
    try:
        message = decode_message(plain)
    except DecodeError:
        TALLY["fuzz decoder: DecodeError"] += 1
    else:
        assert decode_message(encode_message(message)) == message


def _session(role: Role, plain: bool, small: bool) -> SyncSession:
    """A session of ``role`` with ``DOC`` open, as it is mid-connection."""
    session = SyncSession(
        role,
        document=DOC if plain else None,
        max_frame_size=64 if small else 16 * 1024 * 1024,
        max_update_size=32 if small else 8 * 1024 * 1024,
    )
    if role is Role.DEVICE:
        opening = session.open_document(DOC, STATE)
        assert opening
        answer = SyncStep2(EMPTY_UPDATE)
        events = session.receive_frame(
            encode_message(answer) if plain else encode_frame(DOC, answer)
        )
    elif not plain:
        events = session.receive_frame(encode_frame(DOC, SyncStep1(STATE)))
    else:
        events = []
    assert not any(isinstance(event, ConnectionFailed) for event in events)
    return session


@fault_settings(ci=400, long=40_000)
@given(
    st.sampled_from(list(Role)),
    st.booleans(),
    st.booleans(),
    st.lists(st.one_of(native_input, plain_input), min_size=1, max_size=4),
)
def test_receive_frame_never_raises_and_fails_with_a_matching_error(
    role: Role, plain: bool, small: bool, frames: list[bytes]
) -> None:
    session = _session(role, plain, small)
    for data in frames:
        TALLY["fuzz session frames"] += 1
        failed_before = session.failure is not None
        events = session.receive_frame(data)
        if failed_before:
            assert events == []
            continue
        failures = [event for event in events if isinstance(event, ConnectionFailed)]
        if not failures:
            assert session.failure is None
            continue
        TALLY["fuzz session: ConnectionFailed"] += 1
        (failure,) = events
        assert isinstance(failure, ConnectionFailed)
        assert isinstance(failure.error, ProtocolError)
        assert session.failure is failure.error
        assert failure.error.close_code == CLOSE_CODE_FOR_ERROR[failure.error.code]
        if plain:
            assert failure.data == b""  # y-websocket has no error message: only the close
        else:
            sent = decode_frame(failure.data).message
            assert isinstance(sent, Error)
            assert sent.code == failure.error.code


# -- (b) the relay's update path -------------------------------------------------------------------


class Fuzzer:
    """A relay holding known content, a healthy peer, and fresh offenders, one per input.

    The healthy peer keeps a mirror: a document that applies every update the
    relay fans out to it, and its own when acknowledged, so it holds the relay's
    document as the relay applied it, in the same order.
    """

    def __init__(self, h: Harness, tally: Counter[str], start: list[bytes]) -> None:
        self.h = h
        self.tally = tally
        self.start_with = start
        self.healthy = h.connect()
        self.healthy_editor = Editor(client_id=99)
        self.healthy_seq = 0
        self.mirror: Doc[Any] = Doc()
        self.baseline: tuple[Any, ...] = ()

    async def start(self) -> None:
        await self.healthy.open()
        for update in self.start_with:
            await self._exchange(update)
        self.baseline = content(await self.stored())

    async def stored(self) -> Doc[Any]:
        """The document as the store holds it (it must load), once everything is committed."""
        await self.h.relay.flush()
        return build_doc(await self.h.store.load(DOC))

    async def served(self) -> tuple[Any, ...]:
        """The document as the relay serves it to a new connection."""
        newcomer = self.h.connect()
        try:
            return content(await newcomer.open())
        finally:
            await newcomer.channel.close()

    async def offend(self, frame: bytes) -> bool:
        """Send ``frame`` from a fresh connection and check everything the module promises.

        Returns False when an accepted update left a document that pycrdt does not
        re-encode as it applied it (counted in the tally): its replicas can no longer
        be compared with each other, so the caller starts over on a fresh relay.
        """
        self.tally["fuzz relay inputs"] += 1
        offender = self.h.connect()
        await offender.open()
        await offender.send_raw(frame)
        with contextlib.suppress(ConnectionClosed):  # refused before the probe went out
            await offender.push(DOC, PROBE, EMPTY_UPDATE)
        accepted = await self._outcome(offender)
        await self._exchange(EMPTY_UPDATE)  # the mirror now holds all the relay applied
        if content(_reencoded(self.mirror)) != content(self.mirror):
            self.tally["fuzz relay: accepted update pycrdt re-encodes as other content"] += 1
            FINDINGS.append(f"pycrdt re-encodes a document as other content after: {frame.hex()}")
            return False
        stored = content(await self.stored())
        assert stored == content(self.mirror), "the store differs from the relay's document"
        assert stored == await self.served(), "the relay serves other content than it stored"
        if accepted:
            self.tally["fuzz relay: accepted"] += 1
        else:
            assert stored == self.baseline, "a refused input changed the stored document"
        await self._exchange(self.healthy_editor.edit(self.healthy_seq + 1))
        self.baseline = content(await self.stored())
        key = f"c99-{self.healthy_seq}"
        assert self.baseline[0].get(key) is True, "the healthy peer's edit is not stored"
        return True

    async def _outcome(self, offender: RawPeer) -> bool:
        """True if the probe was acknowledged; else check the one typed Error and the close.

        Frames are read with the codec, not the offender's session: the raw input may
        have opened documents that session knows nothing about.
        """
        async with asyncio.timeout(TIMEOUT):
            try:
                while True:
                    offender.frames.append(await offender.channel.recv())
                    if decode_frame(offender.frames[-1]) == Frame(DOC, Ack(PROBE)):
                        await offender.channel.close()
                        return True
            except ConnectionClosed as closed:
                close_code = closed.code
        codes = wire_errors(offender.frames)
        assert len(codes) == 1, codes
        code = ErrorCode(codes[0])
        assert close_code == CLOSE_CODE_FOR_ERROR[code], (code, close_code)
        self.tally[f"fuzz relay: refused {code.name}"] += 1
        self._tally_update_failure(offender)
        return False

    def _tally_update_failure(self, offender: RawPeer) -> None:
        for frame in offender.frames:
            message = decode_frame(frame).message
            if isinstance(message, Error) and message.code == ErrorCode.INVALID_UPDATE:
                if "panic" in message.message:
                    self.tally["fuzz relay: pycrdt panicked"] += 1
                elif "integrate" in message.message:
                    self.tally["fuzz relay: pycrdt raised RuntimeError"] += 1

    async def _exchange(self, update: bytes) -> None:
        """Push ``update`` from the healthy peer; until its Ack, mirror what the relay sends."""
        self.healthy_seq += 1
        seq = self.healthy_seq
        await self.healthy.push(DOC, seq, update)
        events = await self.healthy.recv_events(lambda e: e == AckReceived(DOC, seq))
        for event in events:
            assert not isinstance(event, ErrorReceived), event
            if isinstance(event, UpdateReceived):
                self.mirror.apply_update(event.update)
        self.mirror.apply_update(update)


def _reencoded(doc: Doc[Any]) -> Doc[Any]:
    fresh: Doc[Any] = Doc()
    fresh.apply_update(doc.get_update())
    return fresh


async def fuzz_relay(
    frames: Iterable[bytes], *, start: list[bytes] = HISTORY[:KNOWN]
) -> Counter[str]:
    """Feed every frame to relays whose document starts as the updates ``start``."""
    tally: Counter[str] = Counter()
    remaining = iter(frames)
    while await _fuzz_one_relay(remaining, start, tally):
        pass
    return tally


async def _fuzz_one_relay(frames: Iterator[bytes], start: list[bytes], tally: Counter[str]) -> bool:
    """Fuzz one relay with up to ``INPUTS_PER_RELAY`` frames; False once they ran out.

    A fresh relay now and then keeps the document, and so each check, small; one
    also follows a document that went odd (see :meth:`Fuzzer.offend`).
    """
    with tempfile.TemporaryDirectory() as root:
        store = SQLiteStore(Path(root) / "relay.db", synchronous="NORMAL")
        async with running(store, CONFIG) as h:
            fuzzer = Fuzzer(h, tally, start)
            await fuzzer.start()
            try:
                for count, frame in enumerate(frames, 1):
                    if not await fuzzer.offend(frame):
                        tally["fuzz relay: fresh relays after an anomaly"] += 1
                        return True
                    if count == INPUTS_PER_RELAY:
                        return True
                return False
            finally:
                await fuzzer.healthy.channel.close()


relay_input = st.one_of(
    st.binary(max_size=96),
    st.builds(mutate, st.sampled_from(NATIVE_FRAMES), mutations),
    st.builds(
        carrying,
        st.sampled_from(["push", "update", "step2"]),
        st.builds(mutate, st.sampled_from(HISTORY), mutations),
    ),
)


@fault_settings(ci=100, long=3_000)
@given(st.lists(relay_input, min_size=1, max_size=6))
def test_relay_contains_random_and_mutated_frames(frames: list[bytes]) -> None:
    TALLY.update(asyncio.run(fuzz_relay(frames)))


def seeded_corpus(seed: int, count: int, history: list[bytes], known: int) -> Iterator[bytes]:
    """Mutated updates (mostly), mutated frames and random bytes, from ``random.Random(seed)``.

    Half the mutated updates are of ``history[known]``, the update that follows the
    relay's document, the likeliest to get past decoding and break pycrdt.
    """
    rng = random.Random(seed)
    for _ in range(count):
        roll = rng.random()
        if roll < 0.1:
            yield rng.randbytes(rng.randrange(64))
        elif roll < 0.3:
            frame = rng.choice(NATIVE_FRAMES)
            yield mutate(frame, random_mutations(rng, len(frame)))
        else:
            update = history[known] if rng.random() < 0.5 else rng.choice(history)
            mutated = mutate(update, random_mutations(rng, len(update)))
            yield carrying(rng.choice(["push", "push", "update", "step2"]), mutated)


#: Histories the relay's document starts from (the first ``known`` updates) and the
#: corpus mutates: this module's two clients, and the relay tests' single client,
#: whose mutations make pycrdt panic or raise far more often.
CORPORA = {"two-clients": (HISTORY, KNOWN), "one-client": (relay_history(), 3)}


@pytest.mark.parametrize("corpus", list(CORPORA))
def test_relay_contains_a_seeded_corpus_of_mutated_updates(corpus: str) -> None:
    history, known = CORPORA[corpus]
    count = size(150, 6_000)
    frames = seeded_corpus(7, count, history, known)
    tally = asyncio.run(fuzz_relay(frames, start=history[:known]))
    TALLY.update(tally)
    assert tally["fuzz relay inputs"] == count
    assert tally["fuzz relay: accepted"] > 0
    assert tally["fuzz relay: refused INVALID_UPDATE"] > 0
    assert tally["fuzz relay: refused MALFORMED_FRAME"] > 0


def breaking_updates() -> list[tuple[str, list[bytes], bytes]]:
    """``(what, history, update)``: a mutated update that breaks pycrdt after ``history``.

    Mutations of the relay tests' single-client history break pycrdt far more often
    than those of :data:`HISTORY`; the seeds find one of each within a second.
    """
    history = relay_history()
    found = []
    for what, breaks, seed in [
        ("panicked", is_panic, 2),
        ("raised RuntimeError", lambda exc: type(exc) is RuntimeError, 1),
    ]:
        hit = find_breaking_mutation(history, breaks, seed=seed)
        if hit is not None:
            found.append((what, history[: hit[0]], hit[1]))
    return found


@pytest.mark.parametrize("kind", ["push", "update", "step2"])
def test_relay_contains_updates_that_make_pycrdt_panic_or_raise(kind: str) -> None:
    """The fuzzer's invariants hold for the updates the relay must survive above all."""
    found = breaking_updates()
    if not found:
        pytest.skip("no mutation among 20,000 breaks this pycrdt build")
    for what, history, update in found:
        tally = asyncio.run(fuzz_relay([carrying(kind, update)], start=history))
        TALLY.update(tally)
        assert tally[f"fuzz relay: pycrdt {what}"] == 1, (what, tally)


def test_the_probe_tells_a_live_offender_from_a_closed_one() -> None:
    """The harness itself: a valid Push is accepted, a broken update refused with its close code."""
    editor = Editor(client_id=5)
    tally = asyncio.run(fuzz_relay([carrying("push", editor.edit(0)), carrying("push", b"\x01")]))
    assert tally["fuzz relay: accepted"] == 1
    assert tally["fuzz relay: refused INVALID_UPDATE"] == 1
    assert CLOSE_CODE_FOR_ERROR[ErrorCode.INVALID_UPDATE] == CloseCode.INVALID_DATA
