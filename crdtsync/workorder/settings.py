"""The ``settings`` document: published policy versions, the current one, overrides.

Layout (see :mod:`.layout`): ``meta`` {schema}; ``policy`` {``current``: int};
``versions`` {str(version): policy JSON}; ``overrides`` {technician: int}.

Invariants: versions are numbered from 1 and immutable once written: publishing
always writes a new key, ``max + 1``. Publishing must go through one writer per
tenant (the relay's office API on the room's document): two replicas publishing
while apart would both pick the same number, and the CRDT would keep only one.
Devices only read this document.

Reading never trusts the content: :class:`Settings` reports what does not
validate as problems; :func:`effective_policy` and :func:`policy_version` raise
InvalidValue when the version that applies is stored but unreadable, so a
damaged policy can never silently lift required steps.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc
from pydantic import BaseModel, ConfigDict, ValidationError

from ..exceptions import InvalidValue
from ._read import read_roots
from .layout import SETTINGS_ROOTS, require_no_skeleton, root_map
from .layout import require_skeleton as _require
from .models import SCHEMA_VERSION, Problem
from .names import validate_id
from .policy import Policy

__all__ = [
    "Settings",
    "create_settings",
    "effective_policy",
    "publish_policy",
    "policy_version",
    "set_current",
    "set_override",
]


class Settings(BaseModel):
    """The readable content of a settings document."""

    model_config = ConfigDict(frozen=True)

    current: int | None = None
    versions: dict[int, Policy] = {}
    overrides: dict[str, int] = {}

    @classmethod
    def from_doc(cls, doc: Doc[Any]) -> tuple[Settings, list[Problem]]:
        """Read ``doc``; never raises on its content (problems are reported as data)."""
        problems: list[Problem] = []
        raw = read_roots(doc, SETTINGS_ROOTS)
        versions: dict[int, Policy] = {}
        for key, value in raw["versions"].items():
            try:
                number = _version_key(key)
                versions[number] = _parse(key, value)
            except InvalidValue as exc:
                problems.append(Problem(path=exc.field, message=exc.reason))
        current = _as_version(raw["policy"].get("current"))
        if raw["policy"].get("current") is not None and current is None:
            problems.append(Problem(path="policy.current", message="not a version number"))
        overrides: dict[str, int] = {}
        for tech, value in raw["overrides"].items():
            version = _as_version(value)
            if version is None:
                problems.append(Problem(path=f"overrides.{tech}", message="not a version number"))
            else:
                overrides[tech] = version
        return cls(current=current, versions=versions, overrides=overrides), problems


def _as_version(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not float(value).is_integer() or value < 1:
        return None
    return int(value)


def _version_key(key: str) -> int:
    if not key.isdigit() or int(key) < 1 or str(int(key)) != key:
        raise InvalidValue(f"versions.{key}", "not a version number")
    return int(key)


def _parse(key: str, value: object) -> Policy:
    field = f"versions.{key}"
    if not isinstance(value, dict):
        raise InvalidValue(field, "not a policy object")
    try:
        policy = Policy.model_validate(value)
    except ValidationError as exc:
        raise InvalidValue(field, f"unreadable policy: {exc.errors()[0]['msg']}") from exc
    if policy.version != int(key):
        raise InvalidValue(field, f"holds version {policy.version}")
    return policy


def _versions(doc: Doc[Any]) -> list[int]:
    numbers = []
    for key in list(root_map(doc, "versions").keys()):
        if key.isdigit() and str(int(key)) == key and int(key) >= 1:
            numbers.append(int(key))
    return numbers


def create_settings(doc: Doc[Any], policy: Policy | None = None) -> int:
    """Create the settings skeleton and publish ``policy`` (default: nothing required) as 1.

    Returns the version (1). Raises SkeletonError if ``doc`` has a skeleton.
    """
    require_no_skeleton(doc, "settings")
    with doc.transaction():
        root_map(doc, "meta")["schema"] = SCHEMA_VERSION
        return publish_policy(doc, policy or Policy())


def publish_policy(doc: Doc[Any], policy: Policy, *, make_current: bool = True) -> int:
    """Write ``policy`` as a new immutable version ``max + 1`` and return that number.

    ``policy.version`` is ignored and replaced by the new number. With
    ``make_current`` (the default) the new version becomes ``policy.current`` in
    the same transaction. Raises SkeletonError without a settings skeleton.
    """
    _require(doc, "settings")
    version = max(_versions(doc), default=0) + 1
    published = policy.model_copy(update={"version": version})
    with doc.transaction():
        root_map(doc, "versions")[str(version)] = published.stored()
        if make_current:
            root_map(doc, "policy")["current"] = version
    return version


def set_current(doc: Doc[Any], version: int) -> None:
    """Make the published ``version`` the company policy. Raises InvalidValue if absent."""
    _require(doc, "settings")
    if version not in _versions(doc):
        raise InvalidValue("policy.current", f"version {version} is not published")
    root_map(doc, "policy")["current"] = version


def set_override(doc: Doc[Any], technician: str, version: int | None) -> None:
    """Make ``technician`` use the published ``version`` (None: back to the current one).

    Raises InvalidValue for a bad technician id or an unpublished version.
    """
    _require(doc, "settings")
    validate_id(technician, "technician")
    overrides = root_map(doc, "overrides")
    if version is None:
        if technician in overrides:
            del overrides[technician]
        return
    if version not in _versions(doc):
        raise InvalidValue(f"overrides.{technician}", f"version {version} is not published")
    overrides[technician] = version


def policy_version(doc: Doc[Any], version: int) -> Policy | None:
    """The published ``version``, or None when it does not exist.

    Raises InvalidValue when it exists but does not validate.
    """
    value = root_map(doc, "versions").get(str(version))
    return None if value is None else _parse(str(version), value)


def effective_policy(doc: Doc[Any], technician: str | None = None) -> Policy:
    """The policy in force for ``technician``: their override, else the current version.

    Returns ``Policy()`` (nothing required, version 0) when no version is
    published or current. Raises InvalidValue when the version that applies is
    missing or unreadable: callers must not fall back to a laxer policy.
    """
    sources: list[tuple[str, object]] = []
    if technician is not None:
        sources.append((f"overrides.{technician}", root_map(doc, "overrides").get(technician)))
    sources.append(("policy.current", root_map(doc, "policy").get("current")))
    for field, raw in sources:
        if raw is None:
            continue
        version = _as_version(raw)
        if version is None:
            raise InvalidValue(field, "not a version number")
        policy = policy_version(doc, version)
        if policy is None:
            raise InvalidValue(field, f"version {version} is not published")
        return policy
    return Policy()
