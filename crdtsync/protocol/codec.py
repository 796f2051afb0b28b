"""Strict lib0 codec: var-uint, var-string and length-prefixed bytes.

Invariants:

* Every malformed input raises :class:`~crdtsync.exceptions.DecodeError`; never
  ``IndexError``, ``AssertionError``, ``UnicodeDecodeError`` or a silent
  truncation. A var-uint longer than 10 bytes (above 2**64 - 1) is malformed.
* Length prefixes are checked against the bytes actually present before any
  slice is taken, so a hostile length cannot allocate or over-read.
* The encoding is lib0's (Yjs): 7 bits per byte, least significant group first,
  high bit set on every byte but the last.
"""

from __future__ import annotations

from ..exceptions import DecodeError

__all__ = ["Reader", "write_var_bytes", "write_var_string", "write_var_uint"]

_MAX_VARUINT_BYTES = 10
_MAX_UINT = (1 << 64) - 1


def write_var_uint(value: int) -> bytes:
    """Encode a non-negative integer below 2**64 as a lib0 var-uint."""
    if 0 <= value < 0x80:
        return bytes((value,))
    if value < 0 or value > _MAX_UINT:
        raise ValueError(f"var-uint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def write_var_bytes(data: bytes) -> bytes:
    """Encode bytes with a var-uint length prefix."""
    return write_var_uint(len(data)) + data


def write_var_string(text: str) -> bytes:
    """Encode a string as UTF-8 with a var-uint length prefix."""
    return write_var_bytes(text.encode("utf-8"))


class Reader:
    """Reads lib0 values from a bytes buffer, refusing anything malformed.

    The reader never raises anything but :class:`DecodeError`. Call
    :meth:`finish` when the message must end exactly where parsing stopped.
    """

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def read_var_uint(self) -> int:
        pos = self._pos
        if pos < len(self._data) and self._data[pos] < 0x80:  # one byte: most lengths and types
            self._pos = pos + 1
            return self._data[pos]
        return self._read_long_var_uint()

    def _read_long_var_uint(self) -> int:
        value = 0
        shift = 0
        for count in range(_MAX_VARUINT_BYTES):
            if self._pos >= len(self._data):
                raise DecodeError("truncated var-uint")
            byte = self._data[self._pos]
            self._pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if count > 0 and byte == 0:
                    raise DecodeError("overlong var-uint")
                if value > _MAX_UINT:
                    raise DecodeError("var-uint above 2**64 - 1")
                return value
            shift += 7
        raise DecodeError("var-uint longer than 10 bytes")

    def read_bytes(self, length: int) -> bytes:
        if length > self.remaining:
            raise DecodeError(f"length {length} exceeds the {self.remaining} bytes left")
        chunk = bytes(self._data[self._pos : self._pos + length])
        self._pos += length
        return chunk

    def read_var_bytes(self) -> bytes:
        return self.read_bytes(self.read_var_uint())

    def read_var_string(self) -> str:
        raw = self.read_var_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid UTF-8 in string: {exc.reason}") from exc

    def read_rest(self) -> bytes:
        return self.read_bytes(self.remaining)

    def finish(self) -> None:
        """Raise :class:`DecodeError` unless every byte was consumed."""
        if self.remaining:
            raise DecodeError(f"{self.remaining} unexpected trailing bytes")
