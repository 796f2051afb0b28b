"""Materialised JSON views of the work orders, kept up to date as updates are committed.

The office API never decodes a CRDT document to answer a read: it reads one
row of ``workorder_views`` (one work order) or a page of them (a list), in the
office database. The rows are written here, by one task, as the relay commits.

Tables (office database, portable SQL)::

    workorder_views(tenant, id, number, status, technician, planned_date,
                    customer_name, short_description, changed_at, source_seq,
                    sent_submission_id, changed_after_sending, changed_paths,
                    problems, json)          PRIMARY KEY (tenant, id)
    workorder_attachments(tenant, sha256, workorder_id, mime, name)

``json`` is :func:`~crdtsync.workorder.snapshot_json` of the merged
:class:`~crdtsync.workorder.WorkOrder`; ``problems`` what did not validate;
``changed_paths`` what changed since the accepted submission the work order
was sent with (``state.*`` left out: that is the sending's own bookkeeping);
``changed_at`` the relay's clock at the commit that last changed ``json``.
Lists page by keyset on ``id`` (indexes per filter column, each ending in ``id``);
the worker refreshes the table's statistics (``ANALYZE``) after
:data:`ANALYZE_EVERY` rows written, then each time the table could have doubled,
so that the planner picks the index of the most selective filter.

**Flow.** ``relay.on_commit`` calls :meth:`WorkOrderViews._committed`
synchronously: it only notes the stored names of ``wo/*`` documents in a
coalescing set (a document committed ten times while the worker is busy is
rebuilt once). The set is bounded by ``max_pending`` distinct documents: past
that it is dropped and a *rescan* is scheduled instead (below), so memory stays
bounded and nothing is lost. The worker task (owned by ``async with``) takes the
whole set, reads each document's last stored sequence, reads the document (the
relay's live room if loaded, else the store), builds the view, and writes the
rows and the changes they make (``workorder.created``, ``workorder.updated``,
``workorder.assigned``, ``workorder.sent``, ``workorder.processed``,
``workorder.reopened``, ``workorder.changed_after_sending``) in **one**
office-database transaction (:meth:`server.changes.ChangeFeed.transaction`), so
webhooks and event streams follow the views exactly.

**Crash recovery.** The update store and the office database are separate
transactions, so a crash can come after updates committed and before their
views were written. Each row therefore carries ``source_seq``: the highest
stored sequence of its document when it was read, read *before* the document
(so the view reflects at least every update up to it). On start (and after an
overflow) the rescan compares every work order's last stored sequence
(:meth:`crdtsync.Store.last_seqs`) with its row's ``source_seq`` and rebuilds
the rows that are behind or missing. A view is thus never stale for longer
than one restart, whatever happened between the two commits.

:meth:`WorkOrderViews.flush` waits until every update committed before the
call is in the views (tests, benchmarks, and the API after its own writes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from pycrdt import Doc

from crdtsync import InvalidDocumentName, RecordStore, Relay, StoreError, split_name
from crdtsync.store import build_doc
from crdtsync.workorder import (
    LOCKED_STATUSES,
    DocumentKind,
    Status,
    WorkOrder,
    diff_snapshots,
    parse_document_name,
    snapshot_json,
)

from .changes import FeedTransaction, NewChange
from .office import Office
from .officedb import Transaction
from .viewrows import COLUMNS, SUMMARY_COLUMNS, ViewQuery, WorkOrderView, view_of

__all__ = ["ViewQuery", "WorkOrderView", "WorkOrderViews", "view_row"]

log = logging.getLogger("crdtsync.views")

_MAX_PATHS = 100
#: Views written before the planner's statistics are first refreshed (then: as many as the
#: table held at the last refresh).
ANALYZE_EVERY = 1000


def _workorder_id(stored: str) -> tuple[str, str] | None:
    """``(tenant, id)`` of a stored ``t/<tenant>/wo/<id>`` name, else None."""
    tenant, name = split_name(stored)
    if not tenant:
        return None
    try:
        kind, ident = parse_document_name(name)
    except InvalidDocumentName:
        return None
    if kind is not DocumentKind.WORKORDER or ident is None:
        return None
    return tenant, ident


def view_row(
    tenant: str,
    ident: str,
    workorder: WorkOrder,
    problems: Sequence[Any],
    *,
    source_seq: int,
    changed_at: dt.datetime,
    sent_snapshot: dict[str, Any] | None,
) -> WorkOrderView:
    """The view of one work order as read now (pure)."""
    data = snapshot_json(workorder)
    paths: list[str] = []
    if sent_snapshot is not None:
        paths = [p for p in diff_snapshots(sent_snapshot, data) if not p.startswith("state.")]
    return WorkOrderView(
        tenant=tenant,
        id=ident,
        number=workorder.number,
        status=workorder.status.value,
        technician=workorder.planning.technician,
        planned_date=workorder.planning.planned_date,
        customer_name=workorder.customer.name,
        short_description=workorder.info.short_description,
        changed_at=changed_at,
        source_seq=source_seq,
        sent_submission_id=workorder.state.submission_id,
        changed_after_sending=bool(paths),
        changed_paths=paths,
        problems=[p.model_dump(mode="json") for p in problems],
        json=json.dumps(data, separators=(",", ":"), ensure_ascii=False),
    )


def _changes(before: WorkOrderView | None, after: WorkOrderView) -> list[NewChange]:
    """The change-feed entries that going from ``before`` to ``after`` makes."""
    document = f"wo/{after.id}"
    head = {"id": after.id, "number": after.number, "status": after.status}

    def change(kind: str, **data: Any) -> NewChange:
        return NewChange(after.tenant, document, f"workorder.{kind}", {**head, **data})

    if before is None:
        return [change("created", technician=after.technician)]
    paths = diff_snapshots(json.loads(before.json), json.loads(after.json))
    entries = [change("updated", paths=paths[:_MAX_PATHS])]
    if before.technician != after.technician:
        entries.append(change("assigned", technician=after.technician, previous=before.technician))
    if before.status != after.status:
        locked = {s.value for s in LOCKED_STATUSES}
        if after.status == Status.SENT and after.sent_submission_id:
            entries.append(change("sent", submission_id=after.sent_submission_id))
        elif after.status == Status.PROCESSED:
            entries.append(change("processed"))
        elif before.status in locked and after.status not in locked:
            entries.append(change("reopened", previous=before.status))
    if after.changed_after_sending and after.changed_paths != before.changed_paths:
        entries.append(
            change(
                "changed_after_sending",
                submission_id=after.sent_submission_id,
                paths=after.changed_paths[:_MAX_PATHS],
            )
        )
    return entries


@dataclass(slots=True)
class _Read:
    tenant: str
    id: str
    view: WorkOrderView
    attachments: list[tuple[str, str, str]]  # (sha256, mime, name)


class WorkOrderViews:
    """The views of every tenant's work orders; ``async with`` runs the worker.

    Reads (:meth:`get`, :meth:`page`, :meth:`attachment`) may be used at any
    time while open; they read the office database only.
    """

    def __init__(
        self,
        relay: Relay,
        office: Office,
        *,
        max_pending: int = 10_000,
        batch_size: int = 200,
    ) -> None:
        self.relay = relay
        self.office = office
        self.max_pending = max_pending
        self.batch_size = batch_size
        self._pending: dict[str, dt.datetime] = {}
        self._taken: dict[str, dt.datetime] = {}  # what the worker is writing now
        self._rescan = True
        self._scanning = False
        self._generation = 0
        self._done = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._snapshots: OrderedDict[tuple[str, str], dict[str, Any] | None] = OrderedDict()
        self._tasks: asyncio.TaskGroup | None = None
        self._worker: asyncio.Task[None] | None = None
        self.rebuilt = 0  # views written since start (for tests and the benchmark)
        self._unanalyzed = 0
        self._analyzed_rows = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.relay.on_commit.append(self._committed)
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._generation += 1  # the start-up rescan
        self._worker = self._tasks.create_task(self._run(), name="workorder-views")
        self._wake.set()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._committed in self.relay.on_commit:
            self.relay.on_commit.remove(self._committed)
        if self._worker is not None:
            self._worker.cancel()
        if self._tasks is not None:
            await self._tasks.__aexit__(exc_type, exc, tb)
        self._tasks = self._worker = None

    @property
    def backlog(self) -> int:
        """Work orders waiting for their view, being built included (a rescan to do or under
        way counts as one): 0 means every commit so far is in the views."""
        return len(self._pending) + len(self._taken) + int(self._rescan or self._scanning)

    # -- following the relay ---------------------------------------------------------------------

    def _committed(self, entries: list[tuple[str, bytes]]) -> None:
        """``relay.on_commit``: note which work orders changed; never blocks, never raises."""
        now = dt.datetime.now(dt.UTC)
        noted = False
        for stored, _ in entries:
            if _workorder_id(stored) is None:
                continue
            noted = True
            self._pending.pop(stored, None)
            self._pending[stored] = now
        if not noted:
            return
        if len(self._pending) > self.max_pending:
            log.warning("%d work orders behind: rescanning instead", len(self._pending))
            self._pending.clear()
            self._rescan = True
        self._generation += 1
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every update committed before this call is in the views."""
        await self.relay.flush()
        target = self._generation
        async with self._progress:
            await self._progress.wait_for(lambda: self._done >= target)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            mark = self._generation
            rescan, self._rescan = self._rescan, False
            taken = self._taken = self._pending
            self._pending = {}
            self._scanning = rescan
            try:
                if rescan:
                    for name in await self._stale():
                        taken.setdefault(name, dt.datetime.now(dt.UTC))
                    rescan = self._scanning = False
                names = list(taken)
                for start in range(0, len(names), self.batch_size):
                    chunk = names[start : start + self.batch_size]
                    await self._update({name: taken[name] for name in chunk})
                    for name in chunk:
                        del taken[name]
            except StoreError as exc:
                log.error("work-order views fall behind, retrying in %.1f s: %s", delay, exc)
                for name, at in taken.items():
                    self._pending.setdefault(name, at)
                taken.clear()
                self._rescan = self._rescan or rescan  # the rescan itself failed: again
                self._scanning = False
                self._wake.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            if self._unanalyzed >= max(ANALYZE_EVERY, self._analyzed_rows):
                await self._analyze()
            async with self._progress:
                self._done = mark
                self._progress.notify_all()

    async def _analyze(self) -> None:
        """Refresh the planner's statistics of the views (a full pass over the table: about
        a millisecond per thousand rows, so it runs again only once as many rows as the
        table held were written since, which keeps its cost linear in the writes)."""
        try:
            async with self.office.db.transaction() as tx:
                await tx.execute("ANALYZE workorder_views")
                row = await tx.fetchone("SELECT COUNT(*) FROM workorder_views")
        except StoreError as exc:
            log.warning("could not analyze the work-order views: %s", exc)
            return
        self._unanalyzed = 0
        self._analyzed_rows = int(row[0]) if row is not None else 0

    async def _stale(self) -> list[str]:
        """Stored work orders whose view is missing or older than what is stored."""
        stored = {
            name: seq
            for name, seq in (await self.relay.store.last_seqs()).items()
            if _workorder_id(name) is not None
        }
        async with self.office.db.read() as tx:
            rows = await tx.fetchall("SELECT tenant, id, source_seq FROM workorder_views")
        have = {f"t/{row[0]}/wo/{row[1]}": int(row[2]) for row in rows}
        stale = sorted(name for name, seq in stored.items() if have.get(name, -1) < seq)
        if stale:
            log.info("rebuilding %d work-order views that are behind the store", len(stale))
        return stale

    # -- building and writing views --------------------------------------------------------------

    async def _update(self, names: dict[str, dt.datetime]) -> None:
        seqs = await self.relay.store.last_seqs(list(names))
        reads: list[_Read] = []
        for stored, at in names.items():
            found = _workorder_id(stored)
            if found is None or stored not in seqs:
                continue
            doc, seq = await self._document(stored, seqs[stored])
            reads.append(await self._read(found[0], found[1], stored, doc, seq, at))
        if not reads:
            return
        async with self.office.changes.transaction() as batch:
            before = await self._previous(batch.tx, reads)
            for read in reads:
                await self._write(batch, before.get((read.tenant, read.id)), read)
        self.rebuilt += len(reads)
        self._unanalyzed += len(reads)

    async def _document(self, stored: str, seq: int) -> tuple[Doc[Any], int]:
        live = self.relay.live_document(stored)
        if live is not None:
            return live, seq  # the room holds at least every committed update up to seq
        loaded = await self.relay.store.load(stored)
        return build_doc(loaded), loaded.last_seq

    async def _read(
        self, tenant: str, ident: str, stored: str, doc: Doc[Any], seq: int, at: dt.datetime
    ) -> _Read:
        workorder, problems = WorkOrder.from_doc(doc)
        submission = workorder.state.submission_id
        sent = await self._sent_snapshot(stored, submission) if submission else None
        view = view_row(
            tenant, ident, workorder, problems, source_seq=seq, changed_at=at, sent_snapshot=sent
        )
        attachments = sorted({(a.sha256, a.mime, a.name) for a in workorder.attachments.values()})
        return _Read(tenant, ident, view, attachments)

    async def _sent_snapshot(self, stored: str, submission_id: str) -> dict[str, Any] | None:
        """The JSON snapshot of the accepted submission ``submission_id`` (cached), or None."""
        key = (stored, submission_id)
        if key in self._snapshots:
            self._snapshots.move_to_end(key)
            return self._snapshots[key]
        store = self.relay.store
        found: dict[str, Any] | None = None
        if isinstance(store, RecordStore):
            for record in await store.submissions(stored):
                if record.accepted and json.loads(record.result).get("record_id") == submission_id:
                    snapshot: Doc[Any] = Doc()
                    snapshot.apply_update(record.snapshot)
                    workorder, _ = WorkOrder.from_doc(snapshot)
                    found = snapshot_json(workorder)
        self._snapshots[key] = found
        if len(self._snapshots) > 256:
            self._snapshots.popitem(last=False)
        return found

    async def _previous(
        self, tx: Transaction, reads: Sequence[_Read]
    ) -> dict[tuple[str, str], WorkOrderView]:
        by_tenant: dict[str, list[str]] = {}
        for read in reads:
            by_tenant.setdefault(read.tenant, []).append(read.id)
        found: dict[tuple[str, str], WorkOrderView] = {}
        for tenant, ids in by_tenant.items():
            marks = ", ".join("?" for _ in ids)
            rows = await tx.fetchall(
                f"SELECT {COLUMNS} FROM workorder_views WHERE tenant = ? AND id IN ({marks})",
                (tenant, *ids),
            )
            for row in rows:
                view = view_of(row)
                found[(view.tenant, view.id)] = view
        return found

    async def _write(
        self, batch: FeedTransaction, before: WorkOrderView | None, read: _Read
    ) -> None:
        view = read.view
        if before is not None and before.json == view.json and before.problems == view.problems:
            if view.source_seq > before.source_seq:
                await batch.tx.execute(
                    "UPDATE workorder_views SET source_seq = ? WHERE tenant = ? AND id = ?",
                    (view.source_seq, view.tenant, view.id),
                )
            return
        await batch.tx.execute(
            f"INSERT INTO workorder_views ({COLUMNS}) VALUES ({', '.join('?' * 15)}) "
            "ON CONFLICT (tenant, id) DO UPDATE SET number = excluded.number, "
            "status = excluded.status, technician = excluded.technician, "
            "planned_date = excluded.planned_date, customer_name = excluded.customer_name, "
            "short_description = excluded.short_description, changed_at = excluded.changed_at, "
            "source_seq = excluded.source_seq, sent_submission_id = excluded.sent_submission_id, "
            "changed_after_sending = excluded.changed_after_sending, "
            "changed_paths = excluded.changed_paths, problems = excluded.problems, "
            "json = excluded.json",
            view.row(),
        )
        await batch.tx.execute(
            "DELETE FROM workorder_attachments WHERE tenant = ? AND workorder_id = ?",
            (view.tenant, view.id),
        )
        if read.attachments:
            await batch.tx.executemany(
                "INSERT INTO workorder_attachments (tenant, sha256, workorder_id, mime, name) "
                "VALUES (?, ?, ?, ?, ?)",
                [(view.tenant, sha, view.id, mime, name) for sha, mime, name in read.attachments],
            )
        for entry in _changes(before, view):
            await batch.record(entry)

    # -- reading ---------------------------------------------------------------------------------

    async def get(self, tenant: str, ident: str) -> WorkOrderView | None:
        """The view of work order ``ident`` of ``tenant``, or None."""
        async with self.office.db.read() as tx:
            row = await tx.fetchone(
                f"SELECT {COLUMNS} FROM workorder_views WHERE tenant = ? AND id = ?",
                (tenant, ident),
            )
        return view_of(row) if row is not None else None

    async def page(self, tenant: str, query: ViewQuery) -> tuple[list[WorkOrderView], bool]:
        """Up to ``query.limit`` views in ``id`` order after ``query.after``, and whether
        there are more. The views hold the summary only: no state, paths or problems."""
        if query.ids is not None and not query.ids:
            return [], False
        where, params = query.where(tenant)
        async with self.office.db.read() as tx:
            rows = await tx.fetchall(
                f"SELECT {SUMMARY_COLUMNS} FROM workorder_views WHERE {where} ORDER BY id LIMIT ?",
                (*params, query.limit + 1),
            )
        views = [view_of(row) for row in rows[: query.limit]]
        return views, len(rows) > query.limit

    async def attachment(
        self, tenant: str, sha256: str, ids: Collection[str] | None = None
    ) -> tuple[str, str] | None:
        """``(mime, name)`` of an attachment of ``sha256`` in the tenant's work orders (those
        in ``ids`` only, when given), or None when none refers to it."""
        sql = "SELECT mime, name FROM workorder_attachments WHERE tenant = ? AND sha256 = ?"
        params: list[Any] = [tenant, sha256]
        if ids is not None:
            if not ids:
                return None
            sql += f" AND workorder_id IN ({', '.join('?' for _ in ids)})"
            params += list(ids)
        async with self.office.db.read() as tx:
            row = await tx.fetchone(sql + " ORDER BY workorder_id LIMIT 1", params)
        return (str(row[0]), str(row[1])) if row is not None else None
