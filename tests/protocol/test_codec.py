"""The lib0 codec: exact encodings, round trips, and strict refusal of malformed input."""

from __future__ import annotations

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtsync.exceptions import CloseCode, DecodeError, ErrorCode, ProtocolError
from crdtsync.protocol.codec import Reader, write_var_bytes, write_var_string, write_var_uint

MAX_UINT = 2**64 - 1
uint64 = st.integers(min_value=0, max_value=MAX_UINT)

# Known lib0 encodings: 7 bits per byte, least significant group first.
KNOWN = [
    (0, b"\x00"),
    (1, b"\x01"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (255, b"\xff\x01"),
    (300, b"\xac\x02"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    (2**32, b"\x80\x80\x80\x80\x10"),
    (2**63, b"\x80" * 9 + b"\x01"),
    (MAX_UINT, b"\xff" * 9 + b"\x01"),
]


# -- var-uint ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "encoded"), KNOWN)
def test_var_uint_known_encoding(value: int, encoded: bytes) -> None:
    assert write_var_uint(value) == encoded
    reader = Reader(encoded)
    assert reader.read_var_uint() == value
    assert reader.remaining == 0
    reader.finish()


@pytest.mark.parametrize("value", [0, 127, 128, 2**32, MAX_UINT])
def test_var_uint_round_trip_boundaries(value: int) -> None:
    reader = Reader(write_var_uint(value))
    assert reader.read_var_uint() == value
    reader.finish()


@settings(max_examples=200)
@given(uint64)
def test_var_uint_round_trip(value: int) -> None:
    encoded = write_var_uint(value)
    assert 1 <= len(encoded) <= 10
    # Every byte but the last has its high bit set; the last is not an overlong zero.
    assert all(byte & 0x80 for byte in encoded[:-1])
    assert encoded[-1] < 0x80
    assert len(encoded) == 1 or encoded[-1] != 0
    reader = Reader(encoded)
    assert reader.read_var_uint() == value
    reader.finish()


@settings(max_examples=200)
@given(uint64)
def test_var_uint_matches_pycrdt(value: int) -> None:
    # pycrdt's (Yjs-compatible) writer is the oracle for the byte layout.
    assert write_var_uint(value) == pycrdt.write_var_uint(value)


@settings(max_examples=200)
@given(st.lists(uint64, max_size=20))
def test_var_uint_sequence_round_trip(values: list[int]) -> None:
    reader = Reader(b"".join(write_var_uint(v) for v in values))
    assert [reader.read_var_uint() for _ in values] == values
    reader.finish()


@pytest.mark.parametrize("value", [-1, -128, -(2**64)])
def test_write_var_uint_refuses_negative(value: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        write_var_uint(value)


@pytest.mark.parametrize("value", [2**64, 2**70])
def test_write_var_uint_refuses_above_64_bits(value: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        write_var_uint(value)


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\x80" * 9, b"\xac"])
def test_truncated_var_uint(data: bytes) -> None:
    with pytest.raises(DecodeError, match="truncated"):
        Reader(data).read_var_uint()


@pytest.mark.parametrize(
    "data",
    [b"\x80\x00", b"\xff\x00", b"\x81\x80\x00", b"\xac\x82\x00", b"\x80" * 9 + b"\x00"],
)
def test_overlong_var_uint(data: bytes) -> None:
    with pytest.raises(DecodeError, match="overlong"):
        Reader(data).read_var_uint()


def test_single_zero_byte_is_not_overlong() -> None:
    assert Reader(b"\x00").read_var_uint() == 0


@pytest.mark.parametrize("data", [b"\x80" * 10 + b"\x01", b"\xff" * 10, b"\xff" * 11 + b"\x01"])
def test_var_uint_longer_than_10_bytes(data: bytes) -> None:
    with pytest.raises(DecodeError, match="longer than 10 bytes"):
        Reader(data).read_var_uint()


@pytest.mark.parametrize(
    "data",
    [
        b"\x80" * 9 + b"\x02",  # exactly 2**64
        b"\xff" * 9 + b"\x02",  # 2**65 - 1
        b"\xff" * 9 + b"\x7f",  # 2**70 - 1, the largest 10-byte value
    ],
)
def test_var_uint_above_64_bits(data: bytes) -> None:
    with pytest.raises(DecodeError, match=r"above 2\*\*64"):
        Reader(data).read_var_uint()


def test_decode_error_is_a_protocol_error_with_codes() -> None:
    with pytest.raises(DecodeError) as info:
        Reader(b"\x80").read_var_uint()
    assert isinstance(info.value, ProtocolError)
    assert info.value.code is ErrorCode.MALFORMED_FRAME
    assert info.value.close_code is CloseCode.PROTOCOL_ERROR


# -- var-bytes and var-string ------------------------------------------------------------------


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_var_bytes_round_trip(data: bytes) -> None:
    encoded = write_var_bytes(data)
    assert encoded == write_var_uint(len(data)) + data
    reader = Reader(encoded)
    assert reader.read_var_bytes() == data
    reader.finish()


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_var_string_round_trip(text: str) -> None:
    encoded = write_var_string(text)
    assert encoded == write_var_bytes(text.encode("utf-8"))
    reader = Reader(encoded)
    assert reader.read_var_string() == text
    reader.finish()


def test_var_string_known_encoding() -> None:
    # Length is in UTF-8 bytes, not characters.
    assert write_var_string("") == b"\x00"
    assert write_var_string("doc1") == b"\x04doc1"
    assert write_var_string("é") == b"\x02\xc3\xa9"


@pytest.mark.parametrize(
    "data",
    [
        b"\x01",  # one byte announced, none present
        b"\x05abc",  # five announced, three present
        b"\xff\xff\xff\xff\x0f",  # a hostile 4 GiB length with nothing behind it
        b"\xff" * 9 + b"\x01",  # 2**64 - 1
    ],
)
def test_var_bytes_length_beyond_buffer(data: bytes) -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        Reader(data).read_var_bytes()
    with pytest.raises(DecodeError, match="exceeds"):
        Reader(data).read_var_string()


def test_var_bytes_with_truncated_length() -> None:
    with pytest.raises(DecodeError, match="truncated"):
        Reader(b"\x80").read_var_bytes()


def test_failed_read_bytes_does_not_advance() -> None:
    reader = Reader(b"abc")
    with pytest.raises(DecodeError):
        reader.read_bytes(4)
    assert reader.remaining == 3
    assert reader.read_bytes(3) == b"abc"


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff",  # never valid in UTF-8
        b"\xc3",  # truncated two-byte sequence
        b"\xc0\xaf",  # overlong encoding of "/"
        b"\xed\xa0\x80",  # an encoded surrogate
        b"ok\x80",  # stray continuation byte
    ],
)
def test_invalid_utf8_in_var_string(raw: bytes) -> None:
    with pytest.raises(DecodeError, match="UTF-8") as info:
        Reader(write_var_bytes(raw)).read_var_string()
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


# -- reader bookkeeping ------------------------------------------------------------------------


def test_finish_refuses_trailing_bytes() -> None:
    reader = Reader(b"\x01\x02\x03")
    assert reader.read_var_uint() == 1
    assert reader.remaining == 2
    with pytest.raises(DecodeError, match="2 unexpected trailing bytes"):
        reader.finish()


def test_finish_accepts_exact_consumption() -> None:
    reader = Reader(b"\x01\x02")
    reader.read_var_uint()
    reader.read_var_uint()
    reader.finish()
    Reader(b"").finish()


def test_read_rest_takes_everything() -> None:
    reader = Reader(b"\x05rest")
    assert reader.read_var_uint() == 5
    assert reader.read_rest() == b"rest"
    assert reader.remaining == 0
    reader.finish()


_READS = ["uint", "bytes", "string", "fixed", "rest", "finish"]


@settings(max_examples=200)
@given(
    st.binary(max_size=64),
    st.lists(st.tuples(st.sampled_from(_READS), st.integers(0, 80)), max_size=12),
)
def test_reader_on_arbitrary_bytes_raises_only_decode_error(
    data: bytes, reads: list[tuple[str, int]]
) -> None:
    reader = Reader(data)
    try:
        for op, n in reads:
            before = reader.remaining
            if op == "uint":
                assert 0 <= reader.read_var_uint() <= MAX_UINT
            elif op == "bytes":
                reader.read_var_bytes()
            elif op == "string":
                reader.read_var_string()
            elif op == "fixed":
                assert len(reader.read_bytes(n)) == n
            elif op == "rest":
                assert reader.read_rest() == data[len(data) - before :]
            else:
                reader.finish()
            assert 0 <= reader.remaining <= before
    except DecodeError:
        pass
