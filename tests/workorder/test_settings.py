"""The settings document: immutable policy versions, current version, overrides."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Map

from crdtsync.exceptions import InvalidValue, SkeletonError
from crdtsync.workorder import (
    Policy,
    RequiredSteps,
    Settings,
    create_settings,
    effective_policy,
    policy_version,
    publish_policy,
    set_current,
    set_override,
)

from .conftest import replica

SIGNED = Policy(required=RequiredSteps(signature=True))
PHOTOS = Policy(required=RequiredSteps(min_photos=3))


@pytest.fixture
def settings_doc() -> Doc[Any]:
    doc: Doc[Any] = Doc()
    assert create_settings(doc, SIGNED) == 1
    return doc


def test_create_publishes_version_one(settings_doc: Doc[Any]) -> None:
    policy = effective_policy(settings_doc)
    assert policy.version == 1
    assert policy.required.signature
    with pytest.raises(SkeletonError):
        create_settings(settings_doc)


def test_versions_are_numbered_and_immutable(settings_doc: Doc[Any]) -> None:
    first = policy_version(settings_doc, 1)
    assert publish_policy(settings_doc, PHOTOS) == 2
    assert publish_policy(settings_doc, PHOTOS.model_copy(update={"version": 77})) == 3
    assert policy_version(settings_doc, 1) == first
    assert policy_version(settings_doc, 3) == PHOTOS.model_copy(update={"version": 3})
    assert policy_version(settings_doc, 4) is None
    assert effective_policy(settings_doc).version == 3


def test_publish_without_making_current(settings_doc: Doc[Any]) -> None:
    assert publish_policy(settings_doc, PHOTOS, make_current=False) == 2
    assert effective_policy(settings_doc).version == 1
    set_current(settings_doc, 2)
    assert effective_policy(settings_doc).version == 2
    with pytest.raises(InvalidValue):
        set_current(settings_doc, 9)


def test_overrides(settings_doc: Doc[Any]) -> None:
    publish_policy(settings_doc, PHOTOS)
    set_override(settings_doc, "anna", 1)
    assert effective_policy(settings_doc, "anna").version == 1
    assert effective_policy(settings_doc, "bert").version == 2
    assert effective_policy(settings_doc).version == 2
    set_override(settings_doc, "anna", None)
    set_override(settings_doc, "anna", None)
    assert effective_policy(settings_doc, "anna").version == 2
    with pytest.raises(InvalidValue):
        set_override(settings_doc, "anna", 5)
    with pytest.raises(InvalidValue):
        set_override(settings_doc, "a b", 1)


def test_devices_read_what_the_office_published(settings_doc: Doc[Any]) -> None:
    set_override(settings_doc, "anna", 1)
    device = replica(settings_doc)
    assert effective_policy(device, "anna") == effective_policy(settings_doc, "anna")
    settings, problems = Settings.from_doc(device)
    assert problems == []
    assert (settings.current, list(settings.versions), settings.overrides) == (1, [1], {"anna": 1})


def test_no_policy_means_nothing_required() -> None:
    assert effective_policy(Doc()) == Policy()
    with pytest.raises(SkeletonError):
        publish_policy(Doc(), PHOTOS)


def test_damaged_policy_is_never_replaced_by_a_laxer_one(settings_doc: Doc[Any]) -> None:
    settings_doc.get("versions", type=Map)["1"] = {"version": 1, "required": {"min_photos": -1}}
    with pytest.raises(InvalidValue) as info:
        effective_policy(settings_doc)
    assert info.value.field == "versions.1"
    settings_doc.get("policy", type=Map)["current"] = "one"
    with pytest.raises(InvalidValue):
        effective_policy(settings_doc)
    settings_doc.get("policy", type=Map)["current"] = 4
    with pytest.raises(InvalidValue, match="not published"):
        effective_policy(settings_doc)


def test_settings_reader_reports_problems(settings_doc: Doc[Any]) -> None:
    versions = settings_doc.get("versions", type=Map)
    versions["2"] = {"version": 5}
    versions["x"] = {"version": 1}
    versions["3"] = "garbage"
    settings_doc.get("overrides", type=Map)["anna"] = "v1"
    settings_doc.get("policy", type=Map)["current"] = True
    settings, problems = Settings.from_doc(settings_doc)
    assert list(settings.versions) == [1]
    assert settings.current is None
    assert settings.overrides == {}
    assert sorted(p.path for p in problems) == [
        "overrides.anna",
        "policy.current",
        "versions.2",
        "versions.3",
        "versions.x",
    ]
