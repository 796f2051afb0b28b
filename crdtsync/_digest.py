"""A short digest of a document's state, equal on two replicas exactly when they hold the same.

A Yjs document's state is its state vector (how far it has each client's
structs) and its delete set (which of them are deleted). pycrdt encodes both
in an order that depends on hash maps, and may split one run of deletions
into several ranges, so the digest is taken over a canonical form: clients
sorted, delete ranges sorted and merged. Two replicas with the same structs
and deletions get the same digest whatever order their updates came in; a
replica that lacks anything, or has anything more, gets another one. The
digest is 64 bits of BLAKE2b: two different states of one document collide
with a chance of about 1 in 2**64 per comparison (a collision would make a
resume skip that document until its next change), and a device resuming 500
documents sends 4 KB of digests rather than 8.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pycrdt import Doc

from .exceptions import DecodeError
from .protocol import Reader, write_var_uint

__all__ = ["DIGEST_SIZE", "state_digest"]

DIGEST_SIZE = 8


def state_digest(doc: Doc[Any]) -> bytes:
    """The digest of ``doc``'s structs and deletions (see the module docstring)."""
    state = doc.get_state()
    deletions = doc.get_update(state)  # no structs (the state covers them): the delete set
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    try:
        digest.update(_canonical(state, deletions))
    except DecodeError:  # not the encodings expected: the raw bytes still tell states apart
        digest.update(b"raw:" + state + b"|" + deletions)
    return digest.digest()


def _canonical(state: bytes, deletions: bytes) -> bytes:
    reader = Reader(state)
    clocks = sorted((reader.read_var_uint(), reader.read_var_uint()) for _ in _count(reader))
    reader.finish()
    reader = Reader(deletions)
    if reader.read_var_uint() != 0:
        raise DecodeError("structs where only a delete set was expected")
    ranges: dict[int, list[tuple[int, int]]] = {}
    for _ in _count(reader):
        client = reader.read_var_uint()
        runs = ranges.setdefault(client, [])
        runs.extend((reader.read_var_uint(), reader.read_var_uint()) for _ in _count(reader))
    reader.finish()
    out = bytearray()
    for client, clock in clocks:
        out += write_var_uint(client) + write_var_uint(clock)
    out += b"|"
    for client in sorted(ranges):
        out += write_var_uint(client)
        for start, length in _merged(ranges[client]):
            out += write_var_uint(start) + write_var_uint(length)
        out += b";"
    return bytes(out)


def _count(reader: Reader) -> range:
    count = reader.read_var_uint()
    if count > reader.remaining:
        raise DecodeError(f"count {count} exceeds the {reader.remaining} bytes left")
    return range(count)


def _merged(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted runs with overlapping or touching ones joined; empty runs left out."""
    merged: list[tuple[int, int]] = []
    for start, length in sorted(runs):
        if length == 0:
            continue
        if merged and start <= merged[-1][0] + merged[-1][1]:
            first, first_length = merged[-1]
            merged[-1] = (first, max(first_length, start + length - first))
        else:
            merged.append((start, length))
    return merged
