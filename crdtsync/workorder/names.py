"""Document names of the work-order domain, and their parsing.

Every document a device or the office opens has one of these names (per
tenant; the relay adds its own ``t/{tenant}/`` prefix on storage, never on the
wire):

=====================  ==================================================
``wo/{id}``            a work order (device-visible content)
``office/{id}``        office-only data of work order ``id`` (the memo)
``planning/{tech}``    the work orders assigned to technician ``tech``
``settings``           company settings and policy (devices: read-only)
=====================  ==================================================

Ids (work-order ids and technician ids) use a safe alphabet: ASCII letters,
digits, ``-`` and ``_``, 1 to 64 characters. So every name built here is also a
valid wire name (the protocol's alphabet is wider), and a name never holds a
second ``/`` that could be mistaken for a kind. Invalid ids raise
:class:`~crdtsync.exceptions.InvalidValue`; :func:`parse_document_name` raises
:class:`~crdtsync.exceptions.InvalidDocumentName` (the error the relay already
sends to peers) for a name that is not one of the four forms.
"""

from __future__ import annotations

import re
from enum import StrEnum

from ..exceptions import InvalidDocumentName, InvalidValue

__all__ = [
    "ID_PATTERN",
    "SETTINGS_DOCUMENT",
    "DocumentKind",
    "is_valid_id",
    "office_document",
    "parse_document_name",
    "planning_document",
    "validate_id",
    "workorder_document",
]

#: The alphabet and length of work-order and technician ids.
ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_ID = re.compile(ID_PATTERN)

#: The name of the one settings document of a tenant.
SETTINGS_DOCUMENT = "settings"


class DocumentKind(StrEnum):
    """The kinds of document; the value is the name prefix (``settings`` has no id)."""

    WORKORDER = "wo"
    OFFICE = "office"
    PLANNING = "planning"
    SETTINGS = "settings"


def is_valid_id(value: object) -> bool:
    """True when ``value`` is a str in the safe id alphabet (see :data:`ID_PATTERN`)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def validate_id(value: object, field: str = "id") -> str:
    """Return ``value`` if it is a valid id, else raise InvalidValue naming ``field``."""
    if not isinstance(value, str):
        raise InvalidValue(field, f"must be a string, not {type(value).__name__}")
    if _ID.fullmatch(value) is None:
        raise InvalidValue(field, "must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'")
    return value


def workorder_document(id: str) -> str:
    """The name of work order ``id``'s document: ``wo/{id}``. Raises InvalidValue."""
    return f"{DocumentKind.WORKORDER}/{validate_id(id)}"


def office_document(id: str) -> str:
    """The name of work order ``id``'s office-only document: ``office/{id}``."""
    return f"{DocumentKind.OFFICE}/{validate_id(id)}"


def planning_document(technician: str) -> str:
    """The name of ``technician``'s planning document: ``planning/{technician}``."""
    return f"{DocumentKind.PLANNING}/{validate_id(technician, 'technician')}"


def parse_document_name(name: str) -> tuple[DocumentKind, str | None]:
    """Split a document name into its kind and id (``None`` for ``settings``).

    The inverse of the builders above: ``parse_document_name(workorder_document(x))
    == (DocumentKind.WORKORDER, x)``. Raises InvalidDocumentName (with
    ``document`` set) for anything else, including a valid kind with a bad id.
    """
    if name == SETTINGS_DOCUMENT:
        return DocumentKind.SETTINGS, None
    prefix, slash, rest = name.partition("/")
    if slash and prefix != DocumentKind.SETTINGS and _ID.fullmatch(rest):
        try:
            return DocumentKind(prefix), rest
        except ValueError:
            pass
    raise InvalidDocumentName(
        f"not a work-order domain document name: {name[:80]!r}", document=name[:256]
    )
