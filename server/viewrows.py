"""The rows of the work-order views: schema, the row type, and list queries (pure SQL text).

Written by :class:`server.views.WorkOrderViews`, read by the office API. Every
list is ordered by ``id`` and paged by keyset (``id > after``); each filter
column has an index ending in ``id`` so that a filtered page reads only the
rows it returns. Which index serves a query is the planner's choice, so the
views keep the table's statistics current (``ANALYZE``, see
:class:`server.views.WorkOrderViews`): without them SQLite may pick the
planned-date index for a technician's page and sort every row of the range.
Dates are ISO text and times fixed-width UTC text
(:func:`server.officedb.format_time`), so text order is date and time order.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from .officedb import format_time, parse_time

__all__ = ["COLUMNS", "SCHEMA", "SUMMARY_COLUMNS", "ViewQuery", "WorkOrderView", "view_of"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS workorder_views (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    number TEXT NOT NULL,
    status TEXT NOT NULL,
    technician TEXT,
    planned_date TEXT,
    customer_name TEXT,
    short_description TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    source_seq INTEGER NOT NULL,
    sent_submission_id TEXT,
    changed_after_sending INTEGER NOT NULL,
    changed_paths TEXT NOT NULL,
    problems TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS workorder_views_status ON workorder_views (tenant, status, id);
CREATE INDEX IF NOT EXISTS workorder_views_technician
    ON workorder_views (tenant, technician, id);
CREATE INDEX IF NOT EXISTS workorder_views_planned
    ON workorder_views (tenant, planned_date, id);
CREATE INDEX IF NOT EXISTS workorder_views_changed ON workorder_views (tenant, changed_at, id);
CREATE TABLE IF NOT EXISTS workorder_attachments (
    tenant TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    workorder_id TEXT NOT NULL,
    mime TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (tenant, sha256, workorder_id)
);
CREATE INDEX IF NOT EXISTS workorder_attachments_by_workorder
    ON workorder_attachments (tenant, workorder_id);
"""

#: The columns of ``workorder_views``, in :meth:`WorkOrderView.row` order.
COLUMNS = (
    "tenant, id, number, status, technician, planned_date, customer_name, short_description, "
    "changed_at, source_seq, sent_submission_id, changed_after_sending, changed_paths, "
    "problems, json"
)

#: :data:`COLUMNS` for a list: the paths, problems and state are left out (constants instead),
#: so a page reads the summary columns only.
SUMMARY_COLUMNS = COLUMNS.replace("changed_paths, problems, json", "'[]', '[]', '{}'")


@dataclass(frozen=True, slots=True)
class WorkOrderView:
    """One row: the summary columns and the merged state as JSON text (``json``)."""

    tenant: str
    id: str
    number: str
    status: str
    technician: str | None
    planned_date: dt.date | None
    customer_name: str | None
    short_description: str
    changed_at: dt.datetime
    source_seq: int
    sent_submission_id: str | None
    changed_after_sending: bool
    changed_paths: list[str] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    json: str = "{}"

    def row(self) -> tuple[Any, ...]:
        """The values to insert, in :data:`COLUMNS` order."""
        return (
            self.tenant,
            self.id,
            self.number,
            self.status,
            self.technician,
            self.planned_date.isoformat() if self.planned_date else None,
            self.customer_name,
            self.short_description,
            format_time(self.changed_at),
            self.source_seq,
            self.sent_submission_id,
            int(self.changed_after_sending),
            json.dumps(self.changed_paths),
            json.dumps(self.problems, separators=(",", ":")),
            self.json,
        )

    def data(self) -> dict[str, Any]:
        """The merged state (``snapshot_json`` of the work order)."""
        result: dict[str, Any] = json.loads(self.json)
        return result


def view_of(row: sqlite3.Row | Sequence[Any]) -> WorkOrderView:
    """A :class:`WorkOrderView` from a row selected with :data:`COLUMNS`."""
    (
        tenant,
        ident,
        number,
        status,
        technician,
        planned_date,
        customer_name,
        short_description,
        changed_at,
        source_seq,
        sent,
        changed_after,
        paths,
        problems,
        data,
    ) = tuple(row)
    return WorkOrderView(
        tenant=str(tenant),
        id=str(ident),
        number=str(number),
        status=str(status),
        technician=technician,
        planned_date=dt.date.fromisoformat(planned_date) if planned_date else None,
        customer_name=customer_name,
        short_description=str(short_description),
        changed_at=parse_time(changed_at),
        source_seq=int(source_seq),
        sent_submission_id=sent,
        changed_after_sending=bool(changed_after),
        changed_paths=json.loads(paths),
        problems=json.loads(problems),
        json=str(data),
    )


@dataclass(frozen=True, slots=True)
class ViewQuery:
    """A filtered page: every given filter must hold; ``ids`` restricts to those work orders
    (a device's planning); ``after`` is the last ``id`` of the previous page."""

    statuses: Collection[str] = ()
    technician: str | None = None
    planned_from: dt.date | None = None
    planned_to: dt.date | None = None
    changed_since: dt.datetime | None = None
    ids: Collection[str] | None = None
    after: str | None = None
    limit: int = 100

    def where(self, tenant: str) -> tuple[str, list[Any]]:
        """The ``WHERE`` clause (without the keyword) and its parameters."""
        clauses = ["tenant = ?"]
        params: list[Any] = [tenant]
        if self.statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in self.statuses)})")
            params += list(self.statuses)
        if self.technician is not None:
            clauses.append("technician = ?")
            params.append(self.technician)
        if self.planned_from is not None:
            clauses.append("planned_date >= ?")
            params.append(self.planned_from.isoformat())
        if self.planned_to is not None:
            clauses.append("planned_date <= ?")
            params.append(self.planned_to.isoformat())
        if self.changed_since is not None:
            clauses.append("changed_at >= ?")
            params.append(format_time(self.changed_since))
        if self.ids is not None:
            clauses.append(f"id IN ({', '.join('?' for _ in self.ids)})")
            params += list(self.ids)
        if self.after is not None:
            clauses.append("id > ?")
            params.append(self.after)
        return " AND ".join(clauses), params
