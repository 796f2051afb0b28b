"""Reading documents into models without ever raising on their content.

The approach, per section (a map root, or one entry of a collection): validate
the raw dict; for each field pydantic rejects, record a :class:`Problem`, drop
the field and validate again. A section whose required fields cannot be
satisfied (or whose cross-field rules fail) is dropped whole, with a problem.
Keys the models do not know are ignored (pydantic ``extra="ignore"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pycrdt import Doc, Map, Text
from pydantic import BaseModel, ConfigDict, JsonValue, TypeAdapter, ValidationError

from .layout import SIGNATURE_KEY, WORKORDER_ROOTS
from .models import (
    Attachment,
    HoursEntry,
    Info,
    Material,
    Meta,
    Party,
    Problem,
    Schedule,
    Signature,
    State,
    Status,
    Task,
    Timer,
    WorkOrder,
)

__all__ = ["lenient", "read_roots", "read_workorder", "valid_json"]

M = TypeVar("M", bound=BaseModel)

_JSON: TypeAdapter[JsonValue] = TypeAdapter(JsonValue, config=ConfigDict(allow_inf_nan=False))
_ENTRY_MODELS: dict[str, type[BaseModel]] = {
    "tasks": Task,
    "hours": HoursEntry,
    "materials": Material,
    "attachments": Attachment,
}


def _message(error: Any) -> str:
    return str(error.get("msg", "invalid value"))


def lenient(model: type[M], raw: Mapping[str, Any], path: str, problems: list[Problem]) -> M | None:
    """Validate ``raw`` as ``model``, dropping each rejected field (see the module docstring).

    Returns None (and records a problem for ``path``) when even the remaining
    fields do not validate.
    """
    data = {key: value for key, value in raw.items() if isinstance(key, str)}
    while True:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
        bad = {err["loc"][0]: err for err in errors if err["loc"] and err["loc"][0] in data}
        if not bad:
            problems.append(Problem(path=path, message=f"left out: {_message(errors[0])}"))
            return None
        for key, err in bad.items():
            problems.append(Problem(path=f"{path}.{key}", message=_message(err)))
            del data[key]


def valid_json(value: Any, path: str, problems: list[Problem]) -> tuple[bool, JsonValue]:
    """``(True, value)`` if ``value`` is plain finite JSON, else a problem and ``(False, None)``."""
    try:
        return True, _JSON.validate_python(value, strict=True)
    except ValidationError as exc:
        problems.append(Problem(path=path, message=_message(exc.errors()[0])))
        return False, None


def read_roots(doc: Doc[Any], roots: Mapping[str, type[Map[Any] | Text]]) -> dict[str, Any]:
    """Each root of ``roots`` as plain Python (``to_py``): a dict for a Map, a str for a Text."""
    values: dict[str, Any] = {}
    for name, kind in roots.items():
        value = doc.get(name, type=kind).to_py()
        if kind is Text:
            values[name] = value if isinstance(value, str) else ""
        else:
            values[name] = value if isinstance(value, dict) else {}
    return values


def _section(model: type[M], raw: dict[str, Any], path: str, problems: list[Problem]) -> M:
    return lenient(model, raw, path, problems) or model()


def _entries(root: str, raw: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    model = _ENTRY_MODELS[root]
    entries: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{root}.{key}"
        if not isinstance(value, dict):
            problems.append(Problem(path=path, message="left out: an entry must be a map"))
            continue
        entry = lenient(model, {**value, "id": key}, path, problems)
        if entry is not None:
            entries[key] = entry
    return entries


def _state(raw: dict[str, Any], problems: list[Problem]) -> State:
    state = _section(State, raw, "state", problems)
    if state.processed_at is not None:
        return state.model_copy(update={"status": Status.PROCESSED})
    if state.submission_id is not None:
        return state.model_copy(update={"status": Status.SENT})
    return state


def _signature(raw: dict[str, Any], problems: list[Problem]) -> Signature | None:
    value = raw.get(SIGNATURE_KEY)
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(Problem(path="signature", message="left out: not an object"))
        return None
    try:
        return Signature.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in ("signature", *error["loc"]))
        problems.append(Problem(path=where, message=f"signature left out: {_message(error)}"))
        return None


def _answers(raw: dict[str, Any], problems: list[Problem]) -> dict[str, JsonValue]:
    answers: dict[str, JsonValue] = {}
    for key, value in raw.items():
        ok, checked = valid_json(value, f"answers.{key}", problems)
        if ok:
            answers[key] = checked
    return answers


def _timers(raw: dict[str, Any], problems: list[Problem]) -> dict[str, Timer]:
    timers: dict[str, Timer] = {}
    for key, value in raw.items():
        if not isinstance(value, dict):
            problems.append(Problem(path=f"timers.{key}", message="left out: not an object"))
            continue
        timer = lenient(Timer, {**value, "technician": key}, f"timers.{key}", problems)
        if timer is not None:
            timers[key] = timer
    return timers


def read_workorder(doc: Doc[Any]) -> tuple[WorkOrder, list[Problem]]:
    """The implementation of :meth:`WorkOrder.from_doc`."""
    problems: list[Problem] = []
    raw = read_roots(doc, WORKORDER_ROOTS)
    meta_raw = dict(raw["meta"])
    meta_raw.pop("schema_version", None)
    if "schema" in meta_raw:
        meta_raw["schema_version"] = meta_raw.pop("schema")
    else:
        problems.append(
            Problem(path="meta.schema", message="missing: the document has no skeleton")
        )
    workorder = WorkOrder(
        meta=_section(Meta, meta_raw, "meta", problems),
        state=_state(raw["state"], problems),
        customer=_section(Party, raw["customer"], "customer", problems),
        delivery=_section(Party, raw["delivery"], "delivery", problems),
        planning=_section(Schedule, raw["planning"], "planning", problems),
        info=_section(Info, raw["info"], "info", problems),
        description=raw["description"],
        notes=raw["notes"],
        tasks=_entries("tasks", raw["tasks"], problems),
        hours=_entries("hours", raw["hours"], problems),
        materials=_entries("materials", raw["materials"], problems),
        answers=_answers(raw["answers"], problems),
        attachments=_entries("attachments", raw["attachments"], problems),
        signature=_signature(raw["signature"], problems),
        timers=_timers(raw["timers"], problems),
    )
    return workorder, problems
