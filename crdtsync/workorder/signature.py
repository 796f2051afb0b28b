"""What a signature signs, how that is hashed, and how a signature is drawn.

**Signed content.** A signature covers what the customer saw and attested:
``meta`` without ``schema`` and ``external_ref`` (so id, number, work_type,
created_at), ``customer``, ``delivery``, ``info``, ``description``, ``notes``,
``tasks``, ``hours``, ``materials``, ``answers`` and ``attachments``, as read by
:meth:`~.models.WorkOrder.from_doc` (values that do not validate are not part
of it). Not signed: ``signature`` itself, ``state`` (status and submission
bookkeeping), ``timers`` (a running timer is not yet work), ``planning``
(office scheduling) and ``meta.external_ref`` (office bookkeeping), so the
office can plan, reference and process without invalidating the signature.

**Canonical JSON.** The signed content is a JSON object with one member per
part above, serialised with keys sorted at every level, no whitespace
(``","`` and ``":"``), UTF-8 without escaping non-ASCII; numbers with an
integral value (``2``, ``2.0``) are written as integers, others in Python's
shortest round-trip form (``0.1``); datetimes in UTC as
``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00``; dates as ``YYYY-MM-DD``; enums by value;
model fields whose value is None are left out (so a later optional field does
not invalidate existing signatures). :func:`content_hash` is the lowercase hex
sha256 of those bytes: stable across key order, float/int formatting and
timezone offsets of the same instant.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from enum import Enum
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from pycrdt import Doc

from ..exceptions import InvalidValue
from .models import Signature, WorkOrder

__all__ = [
    "SIGNED_PARTS",
    "canonical_json",
    "content_hash",
    "signature_svg",
    "signature_valid",
    "signed_content",
]

#: The parts of a work order a signature covers (see the module docstring).
SIGNED_PARTS = (
    "meta",
    "customer",
    "delivery",
    "info",
    "description",
    "notes",
    "tasks",
    "hours",
    "materials",
    "answers",
    "attachments",
)
_UNSIGNED_META = {"schema_version", "external_ref"}
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Enum):
        return _canonical(value.value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) <= 2**53:
            return int(value)
        return value
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON bytes (see the module docstring)."""
    return json.dumps(
        _canonical(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def signed_content(workorder: WorkOrder) -> dict[str, Any]:
    """The signed content of ``workorder`` as a dict of Python values (before canonical JSON)."""
    data = workorder.model_dump(mode="python", include=set(SIGNED_PARTS), exclude_none=True)
    data["meta"] = {k: v for k, v in data["meta"].items() if k not in _UNSIGNED_META}
    return data


def content_hash(workorder_or_doc: WorkOrder | Doc[Any]) -> str:
    """Hex sha256 of the canonical JSON of the signed content (reads a Doc first)."""
    if isinstance(workorder_or_doc, WorkOrder):
        workorder = workorder_or_doc
    else:
        workorder, _ = WorkOrder.from_doc(workorder_or_doc)
    return hashlib.sha256(canonical_json(signed_content(workorder))).hexdigest()


def signature_valid(workorder: WorkOrder) -> bool:
    """True when ``workorder`` is signed and its content is unchanged since the signing."""
    signature = workorder.signature
    return signature is not None and signature.content_hash == content_hash(workorder)


def _number(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _text(value: str) -> str:
    return escape(_XML_INVALID.sub("\ufffd", value))


def signature_svg(signature: Signature, width: float = 400, height: float = 200) -> str:
    """An SVG document of ``signature``: one ``path`` per stroke, name and time as text.

    The strokes fill the box above a text band with the signer's name and the
    signing time (UTC); text is XML-escaped and characters XML cannot carry are
    replaced, so the result is always well-formed. A one-point stroke draws as a
    dot. Raises InvalidValue unless ``width`` and ``height`` are positive and finite.
    """
    for field, size in (("width", width), ("height", height)):
        if isinstance(size, bool) or not isinstance(size, (int, float)):
            raise InvalidValue(field, "must be a number")
        if not math.isfinite(size) or size <= 0:
            raise InvalidValue(field, "must be positive and finite")
    band = min(40.0, height / 4)
    draw = height - band
    paths = []
    for stroke in signature.strokes:
        points = [(_number(p.x * width), _number(p.y * draw)) for p in stroke]
        if len(points) == 1:
            points.append(points[0])
        d = "M " + " L ".join(f"{x} {y}" for x, y in points)
        paths.append(f"    <path d={quoteattr(d)}/>")
    when = signature.signed_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    name = signature.signer_name or "(no name)"
    font = _number(max(6.0, band / 3))
    w, h = _number(float(width)), _number(float(height))
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">',
        f"  <title>Signature of {_text(name)}</title>",
        '  <g fill="none" stroke="#000" stroke-width="2" stroke-linecap="round" '
        'stroke-linejoin="round">',
        *paths,
        "  </g>",
        f'  <text x="4" y="{_number(draw + band * 0.45)}" font-size="{font}" '
        f'font-family="sans-serif">{_text(name)}</text>',
        f'  <text x="4" y="{_number(draw + band * 0.9)}" font-size="{font}" '
        f'font-family="sans-serif">{_text(when)}</text>',
        "</svg>",
    ]
    return "\n".join(lines) + "\n"
