"""Private building blocks shared by the writers: validation, stored forms, text edits.

* :func:`validate` builds a model and translates pydantic's ValidationError to
  InvalidValue naming the field (``prefix.loc``), at the boundary.
* :func:`stored` turns a validated model into the plain JSON dict written to a
  document (ISO strings for dates and times, enum values, no ``None``).
* :func:`text_ops` turns "the text should now read X" into character-level
  deletes and inserts, so concurrent edits elsewhere in the text survive.
* :func:`aware` and :func:`iso` check and format datetimes.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pycrdt import Text
from pydantic import BaseModel, ValidationError

from ..exceptions import InvalidValue

__all__ = [
    "DIFF_BUDGET",
    "apply_text",
    "aware",
    "check_json",
    "check_text",
    "clock_time",
    "edit_text",
    "iso",
    "now_utc",
    "stored",
    "text_ops",
    "utf8_offset",
    "validate",
]

M = TypeVar("M", bound=BaseModel)

#: Bound on the size of one free JSON value (a form answer), in nested items.
MAX_JSON_ITEMS = 10_000


def now_utc() -> datetime:
    """The default clock: the current time in UTC."""
    return datetime.now(UTC)


def aware(value: datetime, field: str) -> datetime:
    """Return ``value`` if it is a timezone-aware datetime, else raise InvalidValue."""
    if not isinstance(value, datetime):
        raise InvalidValue(field, f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValue(field, "must be timezone-aware")
    return value


def clock_time(clock: Callable[[], datetime]) -> datetime:
    """Read ``clock`` and normalise to UTC; a naive time raises InvalidValue."""
    return aware(clock(), "clock").astimezone(UTC)


def iso(value: datetime) -> str:
    """The stored form of a datetime: ISO 8601 with its offset."""
    return value.isoformat()


def _location(prefix: str, loc: tuple[int | str, ...]) -> str:
    parts = [prefix] if prefix else []
    parts += [str(part) for part in loc]
    return ".".join(parts) or "value"


def validate(model: type[M], data: Mapping[str, Any], field: str) -> M:
    """``model.model_validate(data)``; a failure raises InvalidValue for the first error.

    The error's ``field`` is ``field`` followed by pydantic's location (for
    example ``hours.<id>.end``), its ``reason`` pydantic's message.
    """
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidValue(_location(field, error["loc"]), error["msg"]) from exc


def stored(model: BaseModel, *, exclude: set[str] | None = None) -> dict[str, Any]:
    """The JSON form of ``model`` as written to a document, without ``None`` fields."""
    data = model.model_dump(mode="json", exclude=exclude, exclude_none=True)
    return dict(data)


def check_json(value: object, field: str) -> None:
    """Raise InvalidValue unless ``value`` is plain JSON (finite numbers, str keys, bounded)."""
    budget = [MAX_JSON_ITEMS]

    def walk(item: object, path: str) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise InvalidValue(field, f"more than {MAX_JSON_ITEMS} items")
        if item is None or isinstance(item, (bool, str)):
            return
        if isinstance(item, int):
            if abs(item) > 2**53:
                raise InvalidValue(path, "integers must lie within +-2**53")
            return
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidValue(path, "numbers must be finite")
            return
        if isinstance(item, list):
            for index, element in enumerate(item):
                walk(element, f"{path}.{index}")
            return
        if isinstance(item, dict):
            for key, element in item.items():
                if not isinstance(key, str):
                    raise InvalidValue(path, "object keys must be strings")
                walk(element, f"{path}.{key}")
            return
        raise InvalidValue(path, f"{type(item).__name__} is not a JSON value")

    walk(value, field)


#: Above this product of the changed parts' lengths, :func:`text_ops` replaces the changed part
#: whole instead of diffing it character by character (difflib is quadratic at worst).
DIFF_BUDGET = 250_000


def text_ops(old: str, new: str) -> list[tuple[int, int, str]]:
    """The edits that turn ``old`` into ``new``: ``(index, delete_count, insert)`` each.

    Edits are listed from the end of the text backwards, so applying them in
    order never shifts an index still to come. The common prefix and suffix are
    never touched; between them, unchanged runs are kept too (difflib), which is
    what lets a concurrent edit elsewhere in the text merge by character. When
    the changed parts are too long to diff cheaply (see :data:`DIFF_BUDGET`),
    the part between prefix and suffix is replaced as one edit: the cost stays
    linear whatever the input.
    """
    limit = min(len(old), len(new))
    start = 0
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and old[-1 - end] == new[-1 - end]:
        end += 1
    old_part, new_part = old[start : len(old) - end], new[start : len(new) - end]
    if not old_part and not new_part:
        return []
    if len(old_part) * len(new_part) > DIFF_BUDGET:
        return [(start, len(old_part), new_part)]
    matcher = difflib.SequenceMatcher(a=old_part, b=new_part, autojunk=False)
    edits = [
        (start + i1, i2 - i1, new_part[j1:j2])
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]
    return list(reversed(edits))


def check_text(value: object, field: str, *, max_length: int = 1_000_000) -> str:
    """Return ``value`` if it is a str that UTF-8 can carry (no lone surrogates), within bounds."""
    if not isinstance(value, str):
        raise InvalidValue(field, f"must be a string, not {type(value).__name__}")
    if len(value) > max_length:
        raise InvalidValue(field, f"must be at most {max_length} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(field, "holds characters UTF-8 cannot encode") from None
    return value


def utf8_offset(text: str, index: int) -> int:
    """The UTF-8 byte offset of character ``index`` of ``text``.

    pycrdt 0.14 indexes ``Text`` by UTF-8 bytes, not by characters: an index in
    the middle of a multi-byte character corrupts the edit. Every text edit here
    goes through this conversion.
    """
    return len(text[:index].encode("utf-8"))


def edit_text(text: Text, current: str, index: int, delete: int, insert: str) -> None:
    """Delete ``delete`` characters at character ``index`` of ``text`` (which reads
    ``current``), then insert ``insert`` there. Call inside a transaction."""
    start = utf8_offset(current, index)
    if delete:
        stop = utf8_offset(current, index + delete)
        del text[start:stop]
    if insert:
        text.insert(start, insert)


def apply_text(text: Text, new: str) -> None:
    """Make ``text`` read ``new`` with character-level edits (inside the caller's transaction)."""
    current = str(text)
    for index, delete, insert in text_ops(current, new):
        edit_text(text, current, index, delete, insert)
