"""The end of the day: the ledger against what the office API returns, and nothing else.

:func:`collect` reads, through the office API only, every work order the
ledger mentions (``GET /workorders/{id}``), its submission records with their
snapshots and signature SVGs, and every photo by sha256. :func:`check` is pure:
it compares the ledger with those observations and returns a :class:`Verdict`
that lists every edit it could not find (``missing``) and one summary row per
work order. The demo passes only when ``missing`` is empty.

What counts as present, per kind of edit (see :mod:`client_demo.ledger`):

* hours, materials: the entry id exists (and an hours entry counts for the
  technician who registered it): collections keep every device's entries;
* notes: the inserted text occurs in the merged notes (texts merge by character,
  so concurrent inserts keep each run of characters whole);
* a ticked task: it is done;
* a photo: an attachment references its sha256, and the API returns exactly the
  bytes the device took;
* an answer: the merged answer is one of the values written to that question
  (last writer wins per question: concurrent answers leave one of them, the
  same on every replica);
* a signature: the work order carries a signature of that signer from that device;
* a sending: exactly one submission record, accepted, with the device's key; the
  work order is sent under that record; the snapshot's signature is valid for
  the recorded content and has an SVG; the snapshot holds the work order's photos;
* office edits: the description reads as set, planning fields hold the value
  set (the office is their only writer), the work order is assigned as set.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .ledger import Edit, EditKind, Ledger
from .office import Office

__all__ = ["Observed", "Row", "Verdict", "check", "collect"]


@dataclass(slots=True)
class Observed:
    """What the office API says about one work order."""

    state: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    details: dict[int, dict[str, Any]] = field(default_factory=dict)
    svgs: dict[int, str | None] = field(default_factory=dict)

    @property
    def workorder(self) -> dict[str, Any]:
        result: dict[str, Any] = self.state["workorder"]
        return result


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the summary table."""

    workorder: str
    team: str
    found: int
    expected: int
    photos: str
    signature: str
    records: str
    status: str
    ok: bool


@dataclass(slots=True)
class Verdict:
    rows: list[Row] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing


async def collect(office: Office, ledger: Ledger) -> tuple[dict[str, Observed], dict[str, bytes]]:
    """Read every work order of the ledger, its records, and every photo, from the API."""
    observed: dict[str, Observed] = {}
    for ident in ledger.workorders:
        seen = Observed(await office.workorder(ident), await office.submissions(ident))
        for record in seen.records:
            number = int(record["id"])
            seen.details[number] = await office.submission(ident, number)
            seen.svgs[number] = await office.submission_signature(ident, number)
        observed[ident] = seen
    blobs: dict[str, bytes] = {}
    for sha in ledger.photos:
        data = await office.attachment(sha)
        if data is not None:
            blobs[sha] = data
    return observed, blobs


def _same_value(a: Any, b: Any) -> bool:
    """Equal, also for the same instant written with different offsets or precision."""
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str):
        try:
            return dt.datetime.fromisoformat(a) == dt.datetime.fromisoformat(b)
        except ValueError:
            return False
    return False


def _present(edit: Edit, seen: Observed, ledger: Ledger, blobs: dict[str, bytes]) -> str | None:
    """None if ``edit`` is in the merged state, else why not."""
    wo = seen.workorder
    match edit.kind:
        case EditKind.HOURS:
            entry = wo["hours"].get(edit.key)
            if entry is None:
                return "not in the merged hours"
            return None if entry.get("technician") == edit.value else "counts for someone else"
        case EditKind.MATERIAL:
            return None if edit.key in wo["materials"] else "not in the merged materials"
        case EditKind.NOTE:
            return None if edit.value in wo["notes"] else "text not in the merged notes"
        case EditKind.TASK:
            task = wo["tasks"].get(edit.key)
            return None if task is not None and task.get("done") else "task not done"
        case EditKind.PHOTO:
            shas = {a["sha256"] for a in wo["attachments"].values() if a["kind"] == "photo"}
            if edit.key not in shas:
                return "no attachment references it"
            return None if blobs.get(edit.key) == ledger.photos[edit.key] else "bytes differ"
        case EditKind.ANSWER:
            written = [
                e.value
                for e in ledger.of(edit.workorder)
                if e.kind is EditKind.ANSWER and e.key == edit.key
            ]
            return None if wo["answers"].get(edit.key) in written else "answer lost"
        case EditKind.SIGNATURE:
            signature = wo.get("signature") or {}
            mine = signature.get("signer_name") == edit.value
            return None if mine and signature.get("device") == edit.device else "not signed"
        case EditKind.SENT:
            return _sent(edit, seen, ledger)
        case EditKind.DESCRIPTION:
            return None if wo["description"] == edit.value else "description differs"
        case EditKind.PLANNING:
            ok = _same_value(wo["planning"].get(edit.key), edit.value)
            return None if ok else f"planning.{edit.key} differs"
        case EditKind.ASSIGNED:
            return None if seen.state["technician"] == edit.value else "assigned to someone else"
        case EditKind.CREW:
            return None if wo["planning"].get("crew") == edit.value else "crew differs"
    return f"unknown kind {edit.kind}"  # pragma: no cover (the match is exhaustive)


def _sent(edit: Edit, seen: Observed, ledger: Ledger) -> str | None:
    """Accepted exactly once, with a valid signature, an SVG and every photo."""
    records = seen.records
    accepted = [r for r in records if r["accepted"]]
    if len(accepted) != 1 or len(records) != 1:
        return f"{len(accepted)} accepted of {len(records)} submission records, not 1 of 1"
    record = accepted[0]
    if record["key"] != edit.key:
        return "the accepted record has another key"
    if seen.state["sent_submission_id"] != record["submission_id"]:
        return "not marked sent under its record"
    snapshot = seen.details.get(int(record["id"]), {}).get("snapshot", {})
    signature = snapshot.get("signature") or {}
    if signature.get("content_hash") != record["content_hash"]:
        return "the signature does not match the recorded content"
    if "<svg" not in (seen.svgs.get(int(record["id"])) or ""):
        return "no signature SVG"
    shas = {a["sha256"] for a in snapshot.get("attachments", {}).values()}
    photos = {e.key for e in ledger.of(edit.workorder) if e.kind is EditKind.PHOTO}
    return None if photos <= shas else "photos missing from the record"


def check(ledger: Ledger, observed: dict[str, Observed], blobs: dict[str, bytes]) -> Verdict:
    """Compare ``ledger`` with ``observed`` (pure); see the module docstring."""
    verdict = Verdict()
    for ident in ledger.workorders:
        edits = ledger.of(ident)
        seen = observed.get(ident)
        if seen is None:
            verdict.missing.append(f"{ident}: the office API does not know this work order")
            continue
        lost = [(e, _present(e, seen, ledger, blobs)) for e in edits]
        lost = [(e, why) for e, why in lost if why is not None]
        verdict.missing += [f"{e.describe()}: {why}" for e, why in lost]
        verdict.rows.append(_row(ident, edits, seen, len(edits) - len(lost), not lost))
        verdict.notes += _contested(ident, edits, seen)
    return verdict


def _row(ident: str, edits: list[Edit], seen: Observed, found: int, ok: bool) -> Row:
    wo = seen.workorder
    planning = wo["planning"]
    team = [planning.get("technician") or "-", *(planning.get("crew") or [])]
    photos = sum(1 for a in wo["attachments"].values() if a["kind"] == "photo")
    signature = wo.get("signature")
    accepted = sum(1 for r in seen.records if r["accepted"])
    status = seen.state["status"] + (
        " (changed after)" if seen.state["changed_after_sending"] else ""
    )
    return Row(
        workorder=ident,
        team="+".join(team),
        found=found,
        expected=len(edits),
        photos=str(photos),
        signature=signature["signer_name"] if signature else "-",
        records=f"{accepted}/{len(seen.records)}" if seen.records else "-",
        status=status,
        ok=ok,
    )


def _contested(ident: str, edits: list[Edit], seen: Observed) -> list[str]:
    """Say which value won where several actors answered the same question."""
    notes: list[str] = []
    questions = sorted({e.key for e in edits if e.kind is EditKind.ANSWER})
    for question in questions:
        writers = [e for e in edits if e.kind is EditKind.ANSWER and e.key == question]
        if len({e.actor for e in writers}) > 1:
            final = seen.workorder["answers"].get(question)
            said = ", ".join(f"{e.actor} {e.value!r}" for e in writers)
            notes.append(f"{ident}: {question} answered by {said}: {final!r} kept on every replica")
    return notes
